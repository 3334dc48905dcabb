"""Long gallery work that runs outside the caller: :class:`BackgroundJob`, a daemon thread
with its result or its error (a sentence), so a dashboard session stays responsive. The
mechanism of the page's background work: ``facesearch.ingest.jobs.IngestJob`` (a folder
ingested, with progress and a stop switch) and ``facesearch.people.service.RegroupJob``
(a photo library regrouped). No UI here; the pages poll them
(``components.gallery_admin``, ``components.people_view``)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from facesearch.errors import FaceSearchError

log = logging.getLogger(__name__)


@dataclass
class BackgroundJob:
    """One piece of work in a daemon thread: ``job.start()``, then ``running``; afterwards
    ``report`` (what :meth:`_work` returned) or ``error`` (a sentence: a FaceSearchError's
    message, or an unexpected error's type and message, its traceback in the log).
    Subclasses implement :meth:`_work`."""

    what: str
    report: Any = field(default=None, kw_only=True)
    error: str | None = field(default=None, kw_only=True)
    started: float = field(default_factory=time.time, kw_only=True)
    _thread: threading.Thread | None = field(default=None, repr=False, kw_only=True)

    kind = "job"  # how the thread and the log call it

    def start(self) -> "BackgroundJob":
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}: {self.what}", daemon=True)
        self._thread.start()
        return self

    def _work(self) -> Any:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self.report = self._work()
        except FaceSearchError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug: logged with its traceback, told to the user in one line
            log.exception("%s %s failed", self.kind, self.what)
            self.error = f"the {self.kind} stopped on an unexpected error ({type(exc).__name__}: {exc})"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running
