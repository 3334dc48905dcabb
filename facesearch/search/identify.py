"""The one path from a photo or a video frame to its faces' identities and verdicts.

:func:`match`: detect -> align -> embed (:meth:`Pipeline.analyze`) -> :func:`search_faces`
against the gallery -> a verdict per face by the rule for the gallery's current size
(:mod:`facesearch.search.verdicts`, the only module that decides or shows a verdict).
Upload, camera snapshot, live webcam, the CLI's ``match`` and the Explore page's query
all call :func:`match`, which gives one identity to at most one face of the photo
(:func:`assign_jointly`); open-set evaluation, whose photos are embedded already, calls
:func:`search_faces` with an in-memory gallery (:class:`store.ArrayGallery`). Verify
(1:1) compares the largest face of two photos by the model's verify rule.

The photos searched with are not the gallery's: :func:`match` and :func:`verify` keep
their faces and vectors off the disk (no embedding cache, no file; a per-process memory
cache only, and not even that for video frames), on the dashboard and on the command
line alike. Only an ingest or an enrollment, an admin's act, stores a photo.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence, TypeVar

import numpy as np

from store import FaceGallery, Hit

from facesearch.errors import NoFaceError
from facesearch.imaging.align import thumbnail
from facesearch.imaging.decode import ImageSource
from facesearch.embedding.pipeline import Analysis, FaceResult, Pipeline, get_pipeline
from facesearch.search import verdicts as V
from facesearch.search.verdicts import Rule
from facesearch.settings import Settings, get_settings

T = TypeVar("T")


@dataclass
class IdentityScore:
    identity: str
    distance: float  # best (smallest) distance among this identity's faces in the top hits
    mean_distance: float
    n_hits: int  # how many of the top hits are this identity
    verdict: str  # by distance alone; the face's verdict also passes the quality gate

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


@dataclass
class FaceMatches:
    face: FaceResult
    hits: list[Hit]  # top-k gallery faces, nearest first
    identities: list[IdentityScore]  # hits grouped by identity, best first
    rule: Rule

    @property
    def best(self) -> IdentityScore | None:
        return self.identities[0] if self.identities else None

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    @property
    def possible(self) -> float:
        return self.rule.possible

    @property
    def quality_reason(self) -> str | None:
        """Why the face cannot be judged, when it cannot."""
        q = self.face.quality
        return None if q is None or q.ok else q.reason

    @property
    def verdict(self) -> str:
        return self.rule.decide(self.best.distance if self.best else float("inf"), self.face.quality)

    @property
    def sentence(self) -> str:
        """Why this face got its verdict, in one plain sentence."""
        return V.explain(self.verdict, self.best.distance if self.best else None, self.rule, self.quality_reason,
                         self.best.identity if self.best else None)


@dataclass
class MatchResult:
    analysis: Analysis
    faces: list[FaceMatches]
    model: str
    detector: str
    rule: Rule

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    @property
    def possible(self) -> float:
        return self.rule.possible

    @property
    def gallery_size(self) -> int:
        """Faces in the gallery when searched."""
        return int(self.rule.gallery_size or 0)

    @property
    def target_fpir(self) -> float | None:
        return self.rule.target_fpir

    @property
    def predicted_fpir(self) -> float | None:
        """The share of strangers the calibration expects to be called a match here."""
        return self.rule.predicted_fpir

    @property
    def meaning(self) -> str:
        """What "match" means for this gallery, in words."""
        return self.rule.meaning


def aggregate(hits: list[Hit], rule: Rule) -> list[IdentityScore]:
    """Group hits by identity: an identity with several close gallery faces ranks by its
    best face, and ``n_hits`` tells how many agree."""
    groups: dict[str, list[float]] = {}
    for h in hits:
        if not h.identity:
            continue  # an unnamed face of a photo library (facesearch.people) names nobody
        groups.setdefault(h.identity, []).append(h.distance)
    scores = [IdentityScore(i, min(d), float(np.mean(d)), len(d), rule.decide(min(d)))
              for i, d in groups.items()]
    return sorted(scores, key=lambda s: (s.distance, -s.n_hits))


def assign_jointly(faces: list[FaceMatches]) -> None:
    """One identity per photo: no two faces of one photo are a "match" to the same
    identity. The identities each face matches are assigned to the photo's faces jointly
    (``scipy.optimize.linear_sum_assignment``, smallest total distance; every face may
    also get no identity); a face loses the identities given to another face of the
    photo, so its next candidate (or none) decides its verdict. In place."""
    if len(faces) < 2:
        return
    names = sorted({s.identity for fm in faces if fm.quality_reason is None for s in fm.identities
                    if s.verdict == V.MATCH})
    claims = Counter(s.identity for fm in faces if fm.quality_reason is None for s in fm.identities
                     if s.verdict == V.MATCH)
    if not names or max(claims.values()) < 2:
        return  # no identity is a match for two faces: nothing to assign (and no scipy to import)
    from scipy.optimize import linear_sum_assignment

    col = {n: j for j, n in enumerate(names)}
    m = len(faces)
    # Columns: the identities, then one "no identity" per face (costlier than any match).
    cost = np.full((m, len(names) + m), 1e9)
    cost[np.arange(m), len(names) + np.arange(m)] = 1e3
    for i, fm in enumerate(faces):
        if fm.quality_reason is not None:
            continue  # a face the quality gate stops is never a match: it claims nothing
        for s in fm.identities:
            if s.verdict == V.MATCH:
                cost[i, col[s.identity]] = s.distance
    rows, cols = linear_sum_assignment(cost)
    given = {int(r): (names[c] if c < len(names) else None) for r, c in zip(rows, cols)}
    for i, fm in enumerate(faces):
        taken = {n for j, n in given.items() if j != i and n is not None}
        if taken & {s.identity for s in fm.identities}:
            fm.identities = [s for s in fm.identities if s.identity not in taken]


def open_gallery(pipeline: Pipeline, create: bool = True, actor=None, memory_index: bool = False) -> FaceGallery:
    """The pipeline's gallery; ``memory_index`` for a long-lived reader (store/memindex.py)."""
    return FaceGallery(pipeline.model.name, pipeline.model.dim, pipeline.detector.name, pipeline.settings,
                       create=create, actor=actor, memory_index=memory_index)


def gallery_rule(gallery, model: str, settings: Settings, wait: bool = False, model_key: str = "") -> Rule:
    """The rule a search of ``gallery`` is decided by now: thresholds from the gallery's own
    impostor scores when it can be calibrated on (:mod:`facesearch.search.gallery_calibration`:
    kept per gallery version; ``wait``: measure a changed gallery now rather than in the
    background), else from the model's shipped calibration at the gallery's size."""
    from facesearch.search import gallery_calibration as GC
    from facesearch.search.thresholds import target_fpir

    name = model
    version = gallery.version() if hasattr(gallery, "version") else None
    n = GC.version_count(version) if version else None
    n = gallery.count() if n is None else n
    gcal = None
    if version is not None and GC.too_small(n, target_fpir(name, settings)) is None:
        gcal = GC.for_gallery(gallery, settings, model_key, wait=wait, version=version)
    return V.search_rule(name, settings, n, gcal)


def search_faces(faces: Sequence[FaceResult], gallery, k: int, rule: Rule, hits: int | None = None) -> list[FaceMatches]:
    """Top-k hits, identities and verdicts for each face. ``gallery``: anything with
    ``query((m, dim) unit rows, k) -> m lists of Hit`` (a :class:`FaceGallery`, or an
    :class:`store.ArrayGallery` in evaluation). ``hits``: how many gallery faces to group
    into identities (default ``3 * k``, so aggregation sees several faces per person)."""
    if not faces:
        return []
    found = gallery.query(np.stack([f.embedding for f in faces]), k=max(hits or k * 3, k))
    # A photo library's unnamed faces (identity "") are nobody's: neither shown nor counted.
    found = [[x for x in h if x.identity] for h in found]
    return [FaceMatches(f, h[:k], aggregate(h, rule), rule) for f, h in zip(faces, found)]


def match(src: ImageSource, name: str | None = None, *, model: str | None = None, detector: str | None = None,
          k: int | None = None, settings: Settings | None = None, require_face: bool = True,
          gallery: FaceGallery | None = None, pipeline: Pipeline | None = None, thumbs: bool = True,
          remember: bool = True, wait_calibration: bool = False) -> MatchResult:
    """Every face in the photo or video frame ``src`` (a path, bytes, an upload or an
    ``(h, w, 3)`` uint8 RGB array) with its top-k gallery matches and a verdict.

    ``gallery``/``pipeline``: handles the caller already holds (default: the model's
    gallery and the shared pipeline). ``thumbs``: cut a thumbnail per face (not for video
    frames). ``remember``: keep the photo's faces and vectors in this process's memory for
    the page's reruns (never the disk); video frames pass False. ``wait_calibration``:
    measure a gallery changed since its last calibration before answering (the command
    line) instead of in the background (:func:`gallery_rule`)."""
    settings = settings or get_settings()
    pipe = pipeline or get_pipeline(model, detector, settings)
    if gallery is None and "chromadb" not in sys.modules:  # a new process's first open (a cold CLI match)
        gallery, analysis = _opened_while(lambda: open_gallery(pipe), lambda: pipe.analyze(
            src, name, cache=False, memory=remember, thumbs=thumbs))
    else:
        gallery = gallery if gallery is not None else open_gallery(pipe)
        analysis = pipe.analyze(src, name, cache=False, memory=remember, thumbs=thumbs)
    if not analysis.faces and require_face:
        raise NoFaceError(analysis.source)
    rule = gallery_rule(gallery, pipe.model.name, settings, wait=wait_calibration, model_key=pipe.model.key)
    faces = search_faces(analysis.faces, gallery, k or settings.top_k, rule)
    assign_jointly(faces)
    return MatchResult(analysis, faces, pipe.model.name, pipe.detector.name, rule)


def _opened_while(open_: Callable[[], FaceGallery], work: Callable[[], T]) -> tuple[FaceGallery, T]:
    """``open_()`` in a thread while ``work()`` runs here: a new process's first open
    imports chromadb (0.5-0.8 s of CPU, all Python) and the photo's decoding, detection
    and embedding run in native code that lets it run meanwhile (a cold ``facesearch
    match`` on an idle machine: about 0.15 s less, docs/BENCHMARKS.md). The open's error comes
    first, as when it ran before the work.
    The modules either side imports are disjoint but for a few standard-library leaves
    (no circular import between them, so the two import locks cannot deadlock)."""
    box: list = []

    def run() -> None:
        try:
            box.append((open_(), None))
        except BaseException as exc:  # re-raised in the caller's thread
            box.append((None, exc))

    t = threading.Thread(target=run, name="facesearch-open-gallery", daemon=True)
    t.start()
    try:
        out = work()
    except Exception:
        t.join()
        if box[0][1] is not None:
            raise box[0][1] from None
        raise
    t.join()
    gallery, exc = box[0]
    if exc is not None:
        raise exc
    return gallery, out


@dataclass
class VerifyResult:
    same: bool
    distance: float
    threshold: float
    verdict: str
    model: str
    a: Analysis = field(repr=False)
    b: Analysis = field(repr=False)
    rule: Rule | None = None  # the verify rule the verdict was decided by

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


def verify(src_a: ImageSource, src_b: ImageSource, *, name_a: str | None = None, name_b: str | None = None,
           model: str | None = None, detector: str | None = None, settings: Settings | None = None) -> VerifyResult:
    """Same person or not: the largest face of each photo, distance against the threshold."""
    settings = settings or get_settings()
    pipe = get_pipeline(model, detector, settings)
    a = pipe.analyze(src_a, name_a, cache=False, memory=True, thumbs=False)
    b = pipe.analyze(src_b, name_b, cache=False, memory=True, thumbs=False)
    for x in (a, b):
        if not x.faces:
            raise NoFaceError(x.source)
        # Only the largest face is compared, so only it is shown.
        x.faces[0].thumb = thumbnail(x.image.rgb, x.faces[0].face, settings.thumb_size)
    d = float(1.0 - np.clip(a.faces[0].embedding @ b.faces[0].embedding, -1.0, 1.0))
    rule = V.verify_rule(pipe.model.name, settings)
    v = rule.decide(d)
    return VerifyResult(v == V.MATCH, d, rule.threshold, v, pipe.model.name, a, b, rule)
