"""An ingest that runs outside the caller: a background thread (a
:class:`facesearch.jobs.BackgroundJob`) with progress and a stop switch, so a dashboard
session stays responsive while a folder is ingested. No UI here;
``components.gallery_admin`` polls it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from facesearch.ingest.run import IngestReport, ingest
from facesearch.jobs import BackgroundJob


@dataclass
class IngestJob(BackgroundJob):
    """``IngestJob(what, path, **ingest_kwargs).start()``; read ``done``/``total``/
    ``current`` while ``running``; afterwards ``report`` (or ``error``, a sentence)."""

    path: Any = None
    kwargs: dict = field(default_factory=dict)
    done: int = 0
    total: int = 0
    current: str = ""
    waiting: str = ""  # why it has not started: another ingest of the gallery runs (a sentence)
    report: IngestReport | None = field(default=None, kw_only=True)
    # When the first photo was counted (monotonic) and the count then (photos done in an
    # earlier run included): the rate and time left are measured from there.
    first_at: float | None = None
    first_done: int = 0
    last_at: float = 0.0  # when the count last moved
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    kind = "ingest"

    def _progress(self, done: int, total: int, current: str) -> None:
        self.last_at = time.monotonic()
        if self.first_at is None:
            self.first_at, self.first_done = self.last_at, done
        self.done, self.total, self.current, self.waiting = done, total, current, ""

    @property
    def rate(self) -> float | None:
        """Photos per second from the first photo to the latest (None until there is a second)."""
        if self.first_at is None or self.done <= self.first_done:
            return None
        return (self.done - self.first_done) / max(self.last_at - self.first_at, 1e-6)

    @property
    def seconds_left(self) -> float | None:
        """At :attr:`rate`, how long the rest takes (None while unknown)."""
        r = self.rate
        return None if not r else max(0, self.total - self.done) / r

    def _waiting(self, message: str) -> None:
        self.waiting = message  # another ingest writes the gallery: shown until this one starts

    def _work(self) -> IngestReport:
        return ingest(self.path, progress=self._progress, stop=self._stop, waiting=self._waiting, **self.kwargs)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the ingest to stop after the photo in hand; what is done stays done."""
        self._stop.set()
