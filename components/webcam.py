"""Live webcam recognition with streamlit-webrtc.

The browser streams the camera to this server over WebRTC; ``LiveRecognizer`` is the
video-frame callback. It runs in streamlit-webrtc's worker thread, so it never calls
``st.*``: it detects, embeds and queries the gallery, draws boxes with names on the frame
it sends back, and puts the recognised faces on a ``queue.Queue`` that the page drains
to show them as text.

Recognition is throttled by time (at most one detection pass every ``interval`` s); the
frames in between reuse the last boxes and names, so the video stays fluid on a laptop
CPU while names update a few times a second. With ``async_processing`` streamlit-webrtc
drops frames that arrive while a slow pass is running, so the delay never builds up.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from facesearch.imaging.annotate import draw_faces
from facesearch.errors import FaceSearchError
from facesearch.search.identify import search_gallery

from . import common

@dataclass
class LiveFace:
    face: int  # 1-based, largest face first
    box: tuple[int, int, int, int]
    identity: str | None
    similarity: float | None
    verdict: str


@dataclass
class LiveResult:
    faces: list[LiveFace] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0  # how long the recognition pass took
    at: float = field(default_factory=time.time)


class LiveRecognizer:
    """Callable ``av.VideoFrame -> av.VideoFrame`` for ``webrtc_streamer``.

    Results go to ``self.results`` (a bounded queue; the oldest result is dropped when
    the page is not reading).
    """

    def __init__(self, pipeline, gallery, k: int = 5, interval: float = 0.4):
        self.pipeline, self.gallery, self.k = pipeline, gallery, k
        self.interval = interval
        self.results: "queue.Queue[LiveResult]" = queue.Queue(maxsize=8)
        self._lock = threading.Lock()
        self._last_run = 0.0
        self._boxes: list[tuple[int, int, int, int]] = []
        self._labels: list[str] = []
        self._verdicts: list[str] = []
        self.frames = 0

    def configure(self, pipeline, gallery, k: int) -> None:
        """Swap model/gallery when the sidebar changes, without a new queue."""
        with self._lock:
            self.pipeline, self.gallery, self.k = pipeline, gallery, k
            self._boxes, self._labels, self._verdicts = [], [], []

    def recognise(self, rgb: np.ndarray) -> LiveResult:
        """One detection + embedding + gallery pass on an ``(h, w, 3)`` uint8 RGB frame."""
        t0 = time.perf_counter()
        try:
            # The same detect -> align -> embed path as uploads; frames are neither
            # cached nor stored.
            an = self.pipeline.analyze(rgb, "webcam", thumbs=False, cache=False)
            if not an.faces:
                return LiveResult([], None, time.perf_counter() - t0)
            # Thresholds follow the gallery's size, as for uploads.
            fms, _ = search_gallery(an, self.gallery, self.pipeline.model.name, self.k, self.pipeline.settings)
            out = [LiveFace(i + 1, tuple(int(v) for v in fm.face.face.box),
                            fm.best.identity if fm.best else None,
                            float(fm.best.similarity) if fm.best else None, fm.verdict)
                   for i, fm in enumerate(fms)]
            return LiveResult(out, None, time.perf_counter() - t0)
        except FaceSearchError as exc:
            return LiveResult([], str(exc), time.perf_counter() - t0)
        except Exception as exc:  # a model hiccup on one frame must not kill the stream
            return LiveResult([], f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)

    def _publish(self, res: LiveResult) -> None:
        while True:
            try:
                self.results.put_nowait(res)
                return
            except queue.Full:
                try:
                    self.results.get_nowait()
                except queue.Empty:
                    pass

    def __call__(self, frame):
        import av

        rgb = frame.to_ndarray(format="rgb24")
        self.frames += 1
        now = time.monotonic()
        with self._lock:
            due = now - self._last_run >= self.interval
        if due:
            res = self.recognise(rgb)
            with self._lock:
                self._last_run = time.monotonic()
                self._boxes = [f.box for f in res.faces]
                self._labels = [f"{f.face} {f.identity}" if f.identity and f.verdict != "no match" else f"{f.face} ?"
                                for f in res.faces]
                self._verdicts = [f.verdict for f in res.faces]
            self._publish(res)
        with self._lock:
            boxes, labels, verdicts = list(self._boxes), list(self._labels), list(self._verdicts)
        if boxes:
            rgb = draw_faces(rgb, boxes, labels, verdicts, copy=False)
        out = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        out.pts, out.time_base = frame.pts, frame.time_base
        return out


def _recognizer(k: int) -> LiveRecognizer:
    """The session's recognizer (one queue per browser session), pointed at the active gallery."""
    pipe, gal = common.pipeline(), common.gallery()
    rec = st.session_state.get("_live_recognizer")
    if rec is None:
        rec = st.session_state["_live_recognizer"] = LiveRecognizer(pipe, gal, k)
    elif rec.pipeline is not pipe or rec.k != k:
        rec.configure(pipe, gal, k)
    return rec


def _describe(res: LiveResult) -> str:
    if res.error:
        return f"Error: {res.error}"
    if not res.faces:
        return "No face in view."
    parts = []
    for f in res.faces:
        if f.identity is None:
            parts.append(f"Face {f.face}: unknown")
        else:
            parts.append(f"Face {f.face}: **{f.identity}** ({f.verdict}, similarity {f.similarity:.3f})")
    return "Recognised — " + " · ".join(parts) + f"  \n_{res.seconds * 1000:.0f} ms per pass_"


# The server cannot see the visitor's camera: this script asks the browser what stands in
# the way before START is pressed, and again every 1.5 s (the visitor may plug a camera in
# or change the site's permission), and reports one word back to Python.
_PROBE_JS = """
export default function({ setStateValue }) {
  let last = null;
  async function probe() {
    let s = "ok";
    if (!window.isSecureContext || !navigator.mediaDevices) {
      s = "insecure";
    } else {
      try {
        const p = await navigator.permissions.query({ name: "camera" });
        if (p.state === "denied") s = "denied";
      } catch (e) {}
      if (s === "ok") {
        try {
          const d = await navigator.mediaDevices.enumerateDevices();
          if (!d.some((x) => x.kind === "videoinput")) s = "none";
        } catch (e) {}
      }
    }
    if (s !== last) { last = s; setStateValue("camera", s); }
  }
  probe();
  const timer = setInterval(probe, 1500);
  return () => clearInterval(timer);
}
"""

# What is wrong and what to do, for each answer of the probe.
CAMERA_PROBLEMS = {
    "insecure": "No camera for this page: browsers give the camera only to pages served over HTTPS or from this "
                "very machine (localhost). Open the dashboard at its https:// address (see the README's Hosting "
                "section), or upload a photo instead.",
    "denied": "The camera is blocked for this site in your browser. Allow it (click the camera or padlock icon "
              "in the address bar, then Camera: Allow), reload the page and press START, or upload a photo "
              "instead.",
    "none": "No camera found: none is connected, or the browser cannot see it. Connect one (or close the app "
            "that is using it), reload the page and press START, or upload a photo instead.",
}

# What the browser does not tell the page: shown under the widget until it plays.
TROUBLESHOOTING = (
    "Stuck on *connecting*? The browser cannot reach this server's media port: ask the admin for a TURN "
    "server (`FACESEARCH_ICE_SERVERS`).")


@st.cache_resource
def _camera_probe():
    return st.components.v2.component("facesearch.camera_probe", js=_PROBE_JS)


def camera_problem() -> str | None:
    """What keeps this browser from giving the page a camera, in words, or None (yet)."""
    res = _camera_probe()(key="camera_probe", default={"camera": None}, height=0,
                          on_camera_change=lambda: None)
    return CAMERA_PROBLEMS.get(getattr(res, "camera", None) or "")


def live_webcam(k: int = 5) -> None:
    """The webcam widget and a status line that follows the recognised faces."""
    import sys

    if "pylibsrtp" not in sys.modules and "tensorflow" in sys.modules:
        # Importing aiortc now would crash the server process (see components/common.py).
        st.error("The live webcam cannot start in this server process; restart the dashboard.")
        return
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    with common.user_errors():
        from facesearch.settings import parse_ice_servers

        ice = {"iceServers": list(parse_ice_servers(common.settings().ice_servers))}
    problem = camera_problem()
    if problem:
        st.warning(problem)
    rec = _recognizer(k)
    ctx = webrtc_streamer(
        key="live_webcam",
        mode=WebRtcMode.SENDRECV,
        video_frame_callback=rec,
        frontend_rtc_configuration=ice,
        server_rtc_configuration=ice,
        media_stream_constraints={"video": True, "audio": False},
        async_processing=True,
        video_html_attrs={"style": {"width": "100%", "maxWidth": "720px"}, "autoPlay": True, "muted": True},
    )
    status = st.empty()
    if not ctx.state.playing:
        status.info("Press START and allow the camera: faces are boxed and named live.")
        st.caption(TROUBLESHOOTING)
        return
    status.caption("Waiting for the first frame…")
    # Drain the queue while the stream plays; a click on STOP (or any widget) reruns the
    # script, which ends this loop. The deadline only bounds a forgotten tab's script run.
    deadline = time.monotonic() + 3600
    while ctx.state.playing and time.monotonic() < deadline:
        try:
            res = rec.results.get(timeout=1.0)
        except queue.Empty:
            continue
        st.session_state["live_last"] = [f.__dict__ for f in res.faces]
        status.markdown(_describe(res))
