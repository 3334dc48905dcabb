"""Match every face of a photo against the gallery; verify two photos.

A search verdict compares the best identity's cosine distance with the model's search
thresholds at the gallery's current size (:func:`facesearch.search.thresholds.search_thresholds`):
``match`` at or below the one that calls about 1% of people not in the gallery a match,
``possible`` up to the one for 10% (worth a human's look), ``no match`` beyond. A face
the model cannot judge (too small, blurred, turned: :mod:`facesearch.imaging.quality`) gets
``too small to judge`` or ``low quality`` instead, never ``match``. Verify (1:1) uses the
model's verify threshold.

The photos searched with are not the gallery's: :func:`match` and :func:`verify` keep
their faces and vectors off the disk (no embedding cache, no file; a per-process memory
cache only), on the dashboard and on the command line alike. Only an ingest or an
enrollment, an admin's act, stores a photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from store import FaceGallery, Hit

from facesearch.errors import NoFaceError
from facesearch.imaging.align import thumbnail
from facesearch.imaging.decode import ImageSource
from facesearch.embedding.pipeline import Analysis, FaceResult, Pipeline, get_pipeline
from facesearch.settings import Settings, get_settings
from facesearch.search.thresholds import describe_fpir, search_thresholds, verify_threshold

# The 1:1 "possible" band reaches 25% past the verify threshold: on the LFW slice this
# band holds most same-person pairs the threshold misses and few impostors.
POSSIBLE_BAND = 1.25

MATCH, POSSIBLE, NO_MATCH = "match", "possible", "no match"
TOO_SMALL, LOW_QUALITY = "too small to judge", "low quality"
UNJUDGED = (TOO_SMALL, LOW_QUALITY)


def verdict(distance: float, threshold: float, possible: float | None = None) -> str:
    """``match`` at or below ``threshold``, ``possible`` up to ``possible`` (default
    25% past the threshold), else ``no match``."""
    if distance <= threshold:
        return MATCH
    if distance <= (possible if possible is not None else threshold * POSSIBLE_BAND):
        return POSSIBLE
    return NO_MATCH


@dataclass
class IdentityScore:
    identity: str
    distance: float  # best (smallest) distance among this identity's faces in the top hits
    mean_distance: float
    n_hits: int  # how many of the top hits are this identity
    verdict: str

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


@dataclass
class FaceMatches:
    face: FaceResult
    hits: list[Hit]  # top-k gallery faces, nearest first
    identities: list[IdentityScore]  # hits grouped by identity, best first
    threshold: float
    possible: float | None = None  # upper end of the "possible" band
    quality_reason: str | None = None  # why the face cannot be judged, when it cannot

    @property
    def best(self) -> IdentityScore | None:
        return self.identities[0] if self.identities else None

    @property
    def verdict(self) -> str:
        if self.quality_reason is not None:
            q = self.face.quality
            return TOO_SMALL if q is not None and q.kind == "too small" else LOW_QUALITY
        return self.best.verdict if self.best else NO_MATCH


@dataclass
class MatchResult:
    analysis: Analysis
    faces: list[FaceMatches]
    model: str
    detector: str
    threshold: float
    possible: float | None = None
    gallery_size: int = 0  # faces in the gallery when searched
    target_fpir: float | None = None
    predicted_fpir: float | None = None  # from the calibration, at ``threshold``

    @property
    def meaning(self) -> str:
        """What "match" means for this gallery, in words."""
        if self.predicted_fpir is None:
            return (f"match means a cosine distance at or below {self.threshold:.3f} (this model has no "
                    "impostor calibration, so the share of strangers called a match is not known)")
        return describe_fpir(self.predicted_fpir, self.gallery_size)


def aggregate(hits: list[Hit], threshold: float, possible: float | None = None) -> list[IdentityScore]:
    """Group hits by identity: an identity with several close gallery faces ranks by its
    best face, and ``n_hits`` tells how many agree."""
    groups: dict[str, list[float]] = {}
    for h in hits:
        groups.setdefault(h.identity, []).append(h.distance)
    scores = [IdentityScore(i, min(d), float(np.mean(d)), len(d), verdict(min(d), threshold, possible))
              for i, d in groups.items()]
    return sorted(scores, key=lambda s: (s.distance, -s.n_hits))


def open_gallery(pipeline: Pipeline, create: bool = True, actor=None, memory_index: bool = False) -> FaceGallery:
    """The pipeline's gallery; ``memory_index`` for a long-lived reader (store/memindex.py)."""
    return FaceGallery(pipeline.model.name, pipeline.model.dim, pipeline.detector.name, pipeline.settings,
                       create=create, actor=actor, memory_index=memory_index)


def match_faces(analysis: Analysis, gallery: FaceGallery, k: int, threshold: float,
                possible: float | None = None) -> list[FaceMatches]:
    """Top-k hits and identity verdicts for every face of ``analysis``."""
    if not analysis.faces:
        return []
    # Ask for more than k so identity aggregation sees several faces per person.
    all_hits = gallery.query(analysis.embeddings, k=max(k * 3, k))
    out = []
    for fr, hits in zip(analysis.faces, all_hits):
        q = fr.quality
        out.append(FaceMatches(fr, hits[:k], aggregate(hits, threshold, possible), threshold, possible,
                               None if q is None or q.ok else q.reason))
    return out


def search_gallery(analysis: Analysis, gallery: FaceGallery, model: str, k: int,
                   settings: Settings) -> tuple[list[FaceMatches], dict]:
    """Thresholds for the gallery's current size, then :func:`match_faces`. Returns the
    matches and the fields :class:`MatchResult` takes besides them."""
    from facesearch.search import calibration

    n = gallery.count()
    thr, possible = search_thresholds(model, settings, n)
    cal = calibration.load(model, settings)
    info = {"threshold": thr, "possible": possible, "gallery_size": n,
            "target_fpir": None, "predicted_fpir": None}
    if cal is not None:
        from facesearch.search.thresholds import target_fpir

        info["target_fpir"] = target_fpir(model, settings)
        info["predicted_fpir"] = cal.fpir(thr, n)
    return match_faces(analysis, gallery, k, thr, possible), info


def match(src: ImageSource, name: str | None = None, *, model: str | None = None, detector: str | None = None,
          k: int | None = None, settings: Settings | None = None, require_face: bool = True,
          gallery: FaceGallery | None = None) -> MatchResult:
    """Every face in the photo with its top-k gallery matches and a verdict. ``gallery``:
    a handle the caller already holds (default: open the model's gallery)."""
    settings = settings or get_settings()
    pipe = get_pipeline(model, detector, settings)
    gallery = gallery if gallery is not None else open_gallery(pipe)
    analysis = pipe.analyze(src, name, cache=False, memory=True)
    if not analysis.faces and require_face:
        raise NoFaceError(analysis.source)
    faces, info = search_gallery(analysis, gallery, pipe.model.name, k or settings.top_k, settings)
    return MatchResult(analysis, faces, pipe.model.name, pipe.detector.name, **info)


@dataclass
class VerifyResult:
    same: bool
    distance: float
    threshold: float
    verdict: str
    model: str
    a: Analysis = field(repr=False)
    b: Analysis = field(repr=False)

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
    thr = verify_threshold(pipe.model.name, settings)
    return VerifyResult(d <= thr, d, thr, verdict(d, thr), pipe.model.name, a, b)
