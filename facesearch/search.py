"""Match every face of a photo against the gallery; verify two photos.

Verdicts compare the cosine distance with the model's threshold
(:func:`facesearch.thresholds.get_threshold`): ``match`` at or below it, ``possible``
within a band just above it (worth a human look), ``no match`` beyond.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from store import FaceGallery, Hit

from .errors import NoFaceError
from .images import ImageSource
from .pipeline import Analysis, FaceResult, Pipeline, get_pipeline
from .settings import Settings, get_settings
from .thresholds import get_threshold

# "possible" reaches 25% past the threshold: on the LFW slice this band holds most
# same-person pairs the threshold misses and few impostors.
POSSIBLE_BAND = 1.25

MATCH, POSSIBLE, NO_MATCH = "match", "possible", "no match"


def verdict(distance: float, threshold: float) -> str:
    if distance <= threshold:
        return MATCH
    if distance <= threshold * POSSIBLE_BAND:
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

    @property
    def best(self) -> IdentityScore | None:
        return self.identities[0] if self.identities else None

    @property
    def verdict(self) -> str:
        return self.best.verdict if self.best else NO_MATCH


@dataclass
class MatchResult:
    analysis: Analysis
    faces: list[FaceMatches]
    model: str
    detector: str
    threshold: float


def aggregate(hits: list[Hit], threshold: float) -> list[IdentityScore]:
    """Group hits by identity: an identity with several close gallery faces ranks by its
    best face, and ``n_hits`` tells how many agree."""
    groups: dict[str, list[float]] = {}
    for h in hits:
        groups.setdefault(h.identity, []).append(h.distance)
    scores = [IdentityScore(i, min(d), float(np.mean(d)), len(d), verdict(min(d), threshold)) for i, d in groups.items()]
    return sorted(scores, key=lambda s: (s.distance, -s.n_hits))


def open_gallery(pipeline: Pipeline, create: bool = True) -> FaceGallery:
    return FaceGallery(pipeline.model.name, pipeline.model.dim, pipeline.detector.name, pipeline.settings, create=create)


def match_faces(analysis: Analysis, gallery: FaceGallery, k: int, threshold: float) -> list[FaceMatches]:
    if not analysis.faces:
        return []
    # Ask for more than k so identity aggregation sees several faces per person.
    all_hits = gallery.query(analysis.embeddings, k=max(k * 3, k))
    out = []
    for fr, hits in zip(analysis.faces, all_hits):
        out.append(FaceMatches(fr, hits[:k], aggregate(hits, threshold), threshold))
    return out


def match(src: ImageSource, name: str | None = None, *, model: str | None = None, detector: str | None = None,
          k: int | None = None, settings: Settings | None = None, require_face: bool = True) -> MatchResult:
    """Every face in the photo with its top-k gallery matches and a verdict."""
    settings = settings or get_settings()
    pipe = get_pipeline(model, detector, settings)
    gallery = open_gallery(pipe)
    analysis = pipe.analyze(src, name)
    if not analysis.faces and require_face:
        raise NoFaceError(analysis.source)
    thr = get_threshold(pipe.model.name, settings)
    return MatchResult(analysis, match_faces(analysis, gallery, k or settings.top_k, thr),
                       pipe.model.name, pipe.detector.name, thr)


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
    a, b = pipe.analyze(src_a, name_a), pipe.analyze(src_b, name_b)
    for x in (a, b):
        if not x.faces:
            raise NoFaceError(x.source)
    d = float(1.0 - np.clip(a.faces[0].embedding @ b.faces[0].embedding, -1.0, 1.0))
    thr = get_threshold(pipe.model.name, settings)
    return VerifyResult(d <= thr, d, thr, verdict(d, thr), pipe.model.name, a, b)
