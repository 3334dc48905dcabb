"""Loading a pipeline's model and detector before the first photo, in a background thread.

Models load lazily, once per process (:mod:`facesearch.models.registry`,
:func:`facesearch.embedding.pipeline.get_pipeline`), so without this the first search of a
new dashboard waits for them (2.5 s for a group photo on a quiet machine, 18 s median with
eight sessions at once, issue 19). ``facesearch serve`` starts the dashboard's process
through ``components/launch.py``, which calls :func:`warm_up` for the default model and
detector before Streamlit serves anything: the process that answers the pages is the one
that holds them. The Home page reads :func:`current` to say while they are loading.

Only what already lies on disk is loaded: a model or detector whose weights would be
downloaded is left to the first search (a hosted dashboard never downloads on its own).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from facesearch.instances import Registry
from facesearch.settings import Settings, get_settings


@dataclass
class WarmUp:
    """One pipeline's loading: running until :attr:`done`; then :attr:`seconds` it took,
    or :attr:`error` (the first search then loads it, and says what is wrong)."""

    model: str
    detector: str
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    error: str | None = None
    skipped: str | None = None  # why nothing was loaded (weights not on disk)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the loading has finished (tests); True when it has."""
        return self._finished.wait(timeout)

    def summary(self) -> str:
        """One line for the dashboard's log."""
        what = f"{self.model} / {self.detector}"
        if not self.done:
            return f"face models {what}: loading"
        if self.error:
            return f"face models {what} not loaded in advance ({self.error}); the first search loads them"
        if self.skipped:
            return f"face models {what} not loaded in advance: {self.skipped}"
        return f"face models {what} loaded in {self.seconds:.1f} s"


_warmups: Registry[tuple[str, str, str], WarmUp] = Registry()
_started: list[WarmUp] = []  # in the order they started, for the Home page


def warm_up(settings: Settings | None = None, model: str | None = None, detector: str | None = None,
            report: Callable[[WarmUp], None] | None = None) -> WarmUp:
    """Start loading the pipeline of ``model`` and ``detector`` (default: the settings')
    in a background thread, once per process; returns at once. ``report(w)`` is called
    from that thread when it has finished."""
    settings = settings or get_settings()
    model, detector = model or settings.model, detector or settings.detector
    started: list[WarmUp] = []

    def build() -> WarmUp:  # under the registry's lock: once per key
        w = WarmUp(model, detector)
        started.append(w)
        _started.append(w)
        return w

    w = _warmups.get((model, detector, str(settings.home)), build)
    if started:
        threading.Thread(target=_load, args=(w, settings, report), name="facesearch-warmup", daemon=True).start()
    return w


def current() -> list[WarmUp]:
    """Every warm-up started in this process, oldest first."""
    return list(_started)


def _load(w: WarmUp, settings: Settings, report: Callable[[WarmUp], None] | None) -> None:
    t0 = time.perf_counter()
    try:
        from facesearch.embedding.pipeline import get_pipeline
        from facesearch.imaging.detection import Face, detector_status
        from facesearch.models.registry import get_model

        ready, detail = get_model(w.model, settings).status()
        d_ready, d_detail = detector_status(w.detector, settings)
        if not (ready and d_ready):
            w.skipped = "weights not on disk: " + "; ".join(x for ok, x in ((ready, detail), (d_ready, d_detail))
                                                            if not ok)
            return
        pipe = get_pipeline(w.model, w.detector, settings)
        pipe.model.load()
        # A first pass through each network on a blank image: what a detector builds on
        # its first call (and a model's first forward pass allocates) is then done too.
        blank = np.zeros((128, 128, 3), np.uint8)
        pipe.detect(blank)
        pipe.embed(pipe.crops(blank, [Face((0, 0, 128, 128), 0.0)]))  # as a photo embedded whole
        w.seconds = time.perf_counter() - t0
    except Exception as exc:  # the first search loads it again and shows the error there
        w.error = f"{type(exc).__name__}: {exc}"
    finally:
        w._finished.set()
        if report is not None:
            report(w)
