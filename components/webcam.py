"""Live webcam recognition with streamlit-webrtc.

The browser streams the camera to this server over WebRTC; ``LiveRecognizer`` is the
video-frame callback. It runs in streamlit-webrtc's worker thread, so it never calls
``st.*``: each sampled frame goes through the same search as an upload
(:func:`facesearch.search.identify.match`), its faces are tracked from frame to frame
(:class:`facesearch.search.tracking.FaceTracker`) and each box shows the verdict its
recent frames agree on, drawn on the frame it sends back; the results go on a
``queue.Queue`` that the page drains to show them as text.

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

from facesearch.errors import FaceSearchError
from facesearch.imaging.annotate import draw_faces
from facesearch.search import verdicts as V
from facesearch.search.identify import match
from facesearch.search.tracking import FaceTracker

from . import common


@dataclass
class LiveFace:
    face: int  # 1-based, largest face first
    box: tuple[int, int, int, int]
    identity: str | None  # set only when the face's recent frames agree on a match
    similarity: float | None  # the latest frame's best similarity
    verdict: str  # over the face's recent frames

    @property
    def label(self) -> str:
        return V.box_label(self.face, self.identity, self.verdict)


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
        self.tracker = FaceTracker()
        self._lock = threading.Lock()
        self._last_run = 0.0
        self._shown: list[LiveFace] = []
        self.frames = 0

    def configure(self, pipeline, gallery, k: int) -> None:
        """Swap model/gallery when the sidebar changes, without a new queue."""
        with self._lock:
            self.pipeline, self.gallery, self.k = pipeline, gallery, k
            self._shown = []
            self.tracker.reset()

    def recognise(self, rgb: np.ndarray) -> LiveResult:
        """One search of an ``(h, w, 3)`` uint8 RGB frame, its faces' tracks updated."""
        t0 = time.perf_counter()
        try:
            # The upload's path: detect -> align -> embed -> search -> verdict. Frames are
            # neither cached nor stored, not even in memory.
            res = match(rgb, "webcam frame", pipeline=self.pipeline, gallery=self.gallery, k=self.k,
                        settings=self.pipeline.settings, require_face=False, thumbs=False, remember=False)
            tracks = self.tracker.update(res.faces)
            out = [LiveFace(i + 1, t.box, t.identity, t.similarity, t.verdict) for i, t in enumerate(tracks)]
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
                self._shown = res.faces
            self._publish(res)
        with self._lock:
            shown = list(self._shown)
        if shown:
            rgb = draw_faces(rgb, [f.box for f in shown], [f.label for f in shown],
                             [V.rgb(f.verdict) for f in shown], copy=False)
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
    """The status line: each face as its box reads (a name only for an agreed match)."""
    if res.error:
        return f"Error: {res.error}"
    if not res.faces:
        return "No face in view."
    parts = []
    for f in res.faces:
        sim = f" similarity {f.similarity:.3f}" if f.similarity is not None else ""
        who = f"{f.identity} " if f.identity else ""
        parts.append(f"Face {f.face}: {who}({f.verdict}{',' if sim else ''}{sim})")
    return "Recognised — " + " · ".join(parts) + f"\n{res.seconds * 1000:.0f} ms per pass"


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
        status.text(_describe(res))
