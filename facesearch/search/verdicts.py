"""Verdicts: the one place that decides what a distance means and how that is shown.

**The rule.** A search ("who is this?") compares the best identity's cosine distance
with the model's search thresholds *for the gallery searched*
(:func:`search_thresholds`, from the saved target in :mod:`facesearch.search.thresholds`): ``match`` at or below the one
that calls about the target share (default 1%) of people who are not in the gallery a
match, ``possible`` up to the one for :data:`SEARCH_POSSIBLE_FACTOR` times that share
(worth a person's second look), ``no match`` beyond. Those thresholds come from the
gallery's own impostor scores when it has enough labelled people
(:mod:`facesearch.search.gallery_calibration`), else from the model's shipped impostor
calibration at the gallery's number of faces (:mod:`facesearch.search.calibration`); the
rule says which (:attr:`Rule.calibration`), and when a best match lies where the
gallery's relatives score (:func:`relatives_note`). Verify (1:1, "same person?") uses
the model's verify threshold, with ``possible`` up to :data:`VERIFY_POSSIBLE_BAND` times
it. A face the model cannot judge (too small, blurred, turned:
:mod:`facesearch.imaging.quality`) gets ``too small to judge`` or ``low quality``, never
a match. Over a video, a tracked face's verdict is the one its recent frames agree on
(:func:`over_time`), so a single lucky frame names nobody.

**How it is shown.** One label rule for boxes drawn on photos and video frames
(:func:`box_label`: a name only for ``match``), one colour per verdict (:data:`RGB` for
pixels, :data:`COLOR_NAME` for the pages), and the sentences that explain a verdict
(:func:`explain`, :func:`describe_fpir`). Pages, the webcam and the CLI use these and
nothing else.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from facesearch.models.registry import check_model_name
from facesearch.search import calibration
from facesearch.search import thresholds as _saved  # the saved settings the rule reads
from facesearch.search.gallery_calibration import too_small
from facesearch.settings import get_settings

MATCH, POSSIBLE, NO_MATCH = "match", "possible", "no match"
TOO_SMALL, LOW_QUALITY = "too small to judge", "low quality"
UNJUDGED = (TOO_SMALL, LOW_QUALITY)
VERDICTS = (MATCH, POSSIBLE, NO_MATCH, TOO_SMALL, LOW_QUALITY)

# Verify's "possible" band reaches 25% past the verify threshold: on the LFW slice this
# band holds most same-person pairs the threshold misses and few impostors.
VERIFY_POSSIBLE_BAND = 1.25
# Search's "possible" reaches the threshold for this many times the target FPIR: a
# stranger lands there about 10x as often as in "match".
SEARCH_POSSIBLE_FACTOR = 10.0


@dataclass(frozen=True)
class Rule:
    """The thresholds one verdict is decided with, and what they mean.

    ``threshold``/``possible``: cosine distances (``match`` at or below ``threshold``,
    ``possible`` up to ``possible``). For a search, ``gallery_size`` faces were searched
    and ``predicted_fpir`` is the share of strangers the calibration expects to be called
    a match there (None for an uncalibrated model); ``calibration`` says what that rests
    on, and ``gallery`` is the gallery's own measurement when the thresholds came from it
    (its relatives' scores feed :func:`relatives_note`)."""

    threshold: float
    possible: float
    kind: str = "search"  # "search" | "verify"
    gallery_size: int | None = None
    target_fpir: float | None = None
    predicted_fpir: float | None = None
    calibration: str = ""
    gallery: object | None = field(default=None, compare=False, repr=False)  # GalleryCalibration

    def decide(self, distance: float, quality=None) -> str:
        """The verdict for a best distance, after the quality gate (``quality``: a
        :class:`facesearch.imaging.quality.Quality` or None when not assessed)."""
        gated = unjudged(quality)
        if gated is not None:
            return gated
        return decide(distance, self.threshold, self.possible)

    @property
    def meaning(self) -> str:
        """What "match" means under this rule, in words."""
        if self.kind == "verify":
            return (f"a cosine distance at or below {self.threshold:.3f} means the same person; up to "
                    f"{self.possible:.3f} is reported as possible")
        if self.predicted_fpir is None:
            return (f"match means a cosine distance at or below {self.threshold:.3f} (this model has no "
                    "impostor calibration, so the share of strangers called a match is not known)")
        said = describe_fpir(self.predicted_fpir, self.gallery_size or 0)
        return f"{said} (calibrated on {self.calibration})" if self.calibration else said


def decide(distance: float, threshold: float, possible: float | None = None) -> str:
    """``match`` at or below ``threshold``, ``possible`` up to ``possible`` (default: the
    verify band past the threshold), else ``no match``."""
    if distance <= threshold:
        return MATCH
    if distance <= (possible if possible is not None else threshold * VERIFY_POSSIBLE_BAND):
        return POSSIBLE
    return NO_MATCH


def unjudged(quality) -> str | None:
    """``too small to judge`` / ``low quality`` for a face the quality gate stops, else None."""
    if quality is None or quality.ok:
        return None
    return TOO_SMALL if quality.kind == "too small" else LOW_QUALITY


def get_threshold(model: str, settings=None, gallery_size: int | None = None) -> float:
    """The cosine-distance threshold for "match" with ``model``: the 1:1 verify
    threshold when ``gallery_size`` is None, else the search threshold for a gallery of
    ``gallery_size`` faces at the model's target FPIR."""
    return search_thresholds(model, settings, gallery_size)[0] if gallery_size is not None else \
        _saved.verify_threshold(model, settings)


def _own(gallery_cal, model: str, target: float):
    """``gallery_cal`` when the gallery's own measurement decides this model's search at
    ``target``, else None."""
    if gallery_cal is None or gallery_cal.model not in ("", model) or not gallery_cal.usable(target):
        return None
    return gallery_cal


def search_thresholds(model: str, settings=None, gallery_size: int | None = None,
                      target: float | None = None, gallery_cal=None) -> tuple[float, float]:
    """(match, possible) distance thresholds for a search of a ``gallery_size``-face
    gallery at the model's target FPIR (or ``target``), the possible band at
    :data:`SEARCH_POSSIBLE_FACTOR` times that share: from the gallery's own measurement
    ``gallery_cal`` (a :class:`~facesearch.search.gallery_calibration.GalleryCalibration`)
    when it can answer for the target, else from the model's shipped impostor calibration
    at ``gallery_size`` faces; a model without a calibration (or no gallery size)
    searches with its verify threshold and verify's band."""
    settings = settings or get_settings()
    name = check_model_name(model)
    target = target if target is not None else _saved.target_fpir(name, settings)
    loose = min(0.5, target * SEARCH_POSSIBLE_FACTOR)
    own = _own(gallery_cal, name, target)
    if own is not None:
        return own.threshold_for_fpir(target), own.threshold_for_fpir(loose)
    cal = calibration.load(name, settings)
    if cal is None or gallery_size is None:
        t = _saved.verify_threshold(name, settings)
        return t, t * VERIFY_POSSIBLE_BAND
    n = max(1, int(gallery_size))
    return cal.threshold_for_fpir(target, n), cal.threshold_for_fpir(loose, n)


def search_rule(model: str, settings, gallery_size: int, gallery_cal=None) -> Rule:
    """The rule a search of a ``gallery_size``-face gallery with ``model`` is decided by;
    ``gallery_cal``: the gallery's own measurement, when there is one."""
    n = int(gallery_size)
    target = _saved.target_fpir(model, settings)
    thr, possible = search_thresholds(model, settings, n, gallery_cal=gallery_cal)
    own = _own(gallery_cal, check_model_name(model), target)
    if own is not None:
        return Rule(thr, possible, "search", n, target, own.fpir(thr), own.source, own)
    cal = calibration.load(model, settings)
    if cal is None:
        return Rule(thr, possible, "search", n)
    why = gallery_cal.why_not(target) if gallery_cal is not None else too_small(n, target)
    src = f"the shipped impostor scores of {cal.source.split(',')[0]}"
    src = f"{src} ({cal.n_pairs:,} pairs of {cal.n_identities:,} people){'; ' + why if why else ''}"
    return Rule(thr, possible, "search", n, target, cal.fpir(thr, n), src, gallery_cal)


def verify_rule(model: str, settings) -> Rule:
    """The 1:1 rule for ``model``: its verify threshold and the possible band past it."""
    t = _saved.verify_threshold(model, settings)
    return Rule(t, t * VERIFY_POSSIBLE_BAND, "verify")


# -- over time (video) ------------------------------------------------------------------
def over_time(history: Sequence[tuple[str, str | None]], min_agree: int = 2) -> tuple[str, str | None]:
    """One verdict for a face seen in several frames.

    ``history``: the face's recent ``(verdict, identity)`` pairs, oldest first (identity:
    the best identity, None when there is none). A face is a ``match`` with identity X
    only when X is the match of at least ``min_agree`` frames and of more frames than any
    other answer; otherwise the most frequent verdict of its frames stands, with the
    weaker one winning a tie (no match before possible before match), and it names nobody.
    So a stranger who scores a match in one frame is never named, and the label does not
    flicker when single frames disagree."""
    if not history:
        return NO_MATCH, None
    votes = Counter((v, i if v == MATCH else None) for v, i in history)
    (v, ident), n = max(votes.items(), key=lambda kv: (kv[1], -_STRENGTH[kv[0][0]]))
    if v == MATCH:
        # A tie with any other answer, or too few frames, is not agreement.
        rivals = [c for key, c in votes.items() if key != (v, ident)]
        if n >= min_agree and all(c < n for c in rivals):
            return MATCH, ident
        return POSSIBLE, None
    return v, None


# How strongly a verdict claims an identity: ties go to the weaker claim.
_STRENGTH = {NO_MATCH: 0, TOO_SMALL: 0, LOW_QUALITY: 0, POSSIBLE: 1, MATCH: 2}


# -- how a verdict is shown --------------------------------------------------------------
# RGB colours per verdict, the same meaning everywhere (photos, video, pages).
RGB: dict[str, tuple[int, int, int]] = {
    MATCH: (46, 204, 113),
    POSSIBLE: (241, 196, 15),
    NO_MATCH: (231, 76, 60),
    TOO_SMALL: (150, 150, 150),
    LOW_QUALITY: (150, 150, 150),
}
NEUTRAL_RGB = (79, 157, 255)  # a box with no verdict (detection only)
# Streamlit's named text colours for the same verdicts (``st.badge``'s ``color``).
COLOR_NAME: dict[str, str] = {MATCH: "green", POSSIBLE: "orange", NO_MATCH: "red", TOO_SMALL: "gray",
                              LOW_QUALITY: "gray"}


def rgb(verdict: str | None) -> tuple[int, int, int]:
    return RGB.get(verdict or "", NEUTRAL_RGB)


def names_identity(verdict: str) -> bool:
    """Whether a face with this verdict is shown with a name: only a match is."""
    return verdict == MATCH


# What a verify (two photos) verdict says, as a headline.
VERIFY_HEADLINE = {MATCH: "Same person", POSSIBLE: "Possibly the same person", NO_MATCH: "Different people"}


def box_label(number: int, identity: str | None, verdict: str) -> str:
    """The text drawn on a face's box: its number, and the identity for a match only; a
    ``possible`` face shows a question mark (look at the list below the photo)."""
    if identity and names_identity(verdict):
        return f"{number} {identity}"
    return f"{number} ?" if verdict == POSSIBLE else str(number)


def explain(verdict: str, distance: float | None, rule: Rule, quality_reason: str | None = None,
            identity: str | None = None) -> str:
    """Plain text saying why a face got ``verdict`` (``identity``: its best identity),
    and, for a match or a possible one, whether relatives score that close."""
    if verdict in UNJUDGED:
        return f"{verdict}: {quality_reason or 'the face cannot be judged'}; no verdict is given."
    if distance is None:
        return "no match: the gallery gave no candidate."
    d = f"distance {distance:.3f}"
    if verdict == MATCH:
        said = f"match: {d} is at or below the threshold {rule.threshold:.3f}."
    elif verdict == POSSIBLE:
        said = (f"possible: {d} is above the match threshold {rule.threshold:.3f} but within "
                f"{rule.possible:.3f}; worth a person's second look.")
    else:
        return f"no match: {d} is above {rule.possible:.3f}."
    kin = relatives_note(distance, rule, identity)
    return f"{said} {kin}" if kin else said


def relatives_note(distance: float | None, rule: Rule, identity: str | None = None) -> str | None:
    """A sentence when a best match at ``distance`` lies where the gallery's relatives
    score (at least :data:`~facesearch.search.gallery_calibration.RELATIVE_SHARE` of the
    scores between members of one family are as close), else None. Only galleries that
    know families (e.g. ingested from FIW's layout) can say it."""
    from facesearch.search.gallery_calibration import RELATIVE_SHARE

    g = rule.gallery
    if distance is None or g is None or rule.kind != "search":
        return None
    share = g.relative_share(distance)
    if share is None or share < RELATIVE_SHARE:
        return None
    who = f"a relative of {identity}" if identity else "a relative"
    return (f"Relatives score this close: {share:.0%} of the scores between members of one family in this "
            f"gallery are at or below {distance:.3f}, so this may be {who} rather than the same person.")


def describe_fpir(fpir: float, gallery_size: int) -> str:
    """What a "match" means, in words: "in a gallery of 1,234 faces, about 1 in 100
    people who are not in it would be called a match"."""
    one_in = max(1, round(1.0 / fpir)) if fpir > 0 else None
    odds = f"about 1 in {one_in:,}" if one_in else "almost no"
    return (f"in a gallery of {gallery_size:,} face{'s' if gallery_size != 1 else ''}, {odds} people who are "
            "not in it would be called a match")
