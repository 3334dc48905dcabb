"""Verification and identification metrics for face pairs, on top of scikit-learn.

Convention used everywhere in this module: a pair has a ``distance`` (cosine distance,
lower = more similar) and a boolean label ``same``. A threshold ``t`` predicts "same"
when ``distance <= t``. scikit-learn ranks by score (higher = more similar), so it is
called with ``score = -distance`` and thresholds are negated back to distances.

Curves and areas (:func:`roc_curve`, :func:`pr_curve`, :func:`roc_auc`,
:func:`average_precision`, :func:`confusion_at`) are scikit-learn's. What it lacks is
here: operating points (:func:`best_f1`, :func:`best_accuracy_threshold`,
:func:`threshold_for_precision`, :func:`threshold_for_fmr`, :func:`equal_error_rate`),
LFW's k-fold protocol and rank-k identification. Operating points use the *midpoint*
between consecutive distinct distances: any threshold in the gap between two observed
distances gives the same confusion matrix on this data, and the midpoint leaves the
largest margin on both sides for unseen pairs.

All array arguments are 1-d: ``distances`` is ``(n,)`` float, ``labels`` is ``(n,)``
bool (``0/1`` integers are accepted). Bad input raises :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from facesearch.errors import ConfigError

__all__ = ["ThresholdPoint", "confusion_at", "roc_curve", "roc_auc", "pr_curve", "average_precision", "best_f1",
           "best_accuracy_threshold", "threshold_for_precision", "threshold_for_fmr", "equal_error_rate",
           "kfold_accuracy", "rank_k", "summary"]


@dataclass(frozen=True)
class ThresholdPoint:
    """The confusion matrix and derived rates at one distance threshold.

    ``precision`` is 0.0 when nothing is predicted "same" (scikit-learn's
    ``zero_division=0``); ``fpr`` is the false match rate (FMR); ``recall`` is the true
    positive rate (TPR, also called TAR or TMR).
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    fpr: float
    accuracy: float
    tp: int
    fp: int
    tn: int
    fn: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain-Python dict, JSON-serialisable."""
        return asdict(self)


def _point(threshold: float, tp: int, fp: int, tn: int, fn: int) -> ThresholdPoint:
    def ratio(a, b):
        return float(a / b) if b else 0.0

    return ThresholdPoint(float(threshold), ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn),
                          ratio(fp, fp + tn), ratio(tp + tn, tp + fp + tn + fn), int(tp), int(fp), int(tn), int(fn))


def _as_arrays(distances: Any, labels: Any, need_both: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(n,)`` float64 distances and ``(n,)`` bool labels; ``need_both``: the caller's
    name, when it needs same and different pairs."""
    try:
        d = np.asarray(distances, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"distances must be numbers: {exc}") from None
    y = np.asarray(labels)
    if d.ndim != 1 or y.ndim != 1 or d.shape != y.shape:
        raise ConfigError(f"distances and labels must be 1-d arrays of one length, got shapes {d.shape} and {y.shape}")
    if d.size == 0:
        raise ConfigError("no pairs: distances and labels are empty")
    if not np.all(np.isfinite(d)):
        raise ConfigError("distances contain NaN or infinite values")
    if y.dtype != np.bool_:
        # 0/1 is fine; a label of 2 or "yes" is much more likely a bug upstream.
        if y.dtype.kind not in "iuf" or not np.all(np.isin(y, (0, 1))):
            raise ConfigError("labels must be booleans or 0/1")
        y = y.astype(bool)
    if need_both and (y.all() or not y.any()):
        kind = "different-person (negative)" if y.all() else "same-person (positive)"
        raise ConfigError(f"{need_both} needs both classes, but there is no {kind} pair")
    return d, y


def _check_rate(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return v


# --------------------------------------------------------------------------- scikit-learn's


def confusion_at(distances: Any, labels: Any, threshold: float) -> ThresholdPoint:
    """Confusion matrix when predicting "same" for ``distance <= threshold``."""
    d, y = _as_arrays(distances, labels)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number, got {threshold!r}") from None
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    tn, fp, fn, tp = skm.confusion_matrix(y, d <= threshold, labels=[False, True]).ravel()
    return _point(threshold, tp, fp, tn, fn)


def roc_curve(distances: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``, each ``(k+1,)`` for ``k`` distinct distances, thresholds
    increasing from ``-inf`` (nothing accepted): ``sklearn.metrics.roc_curve(labels,
    -distances, drop_intermediate=False)`` with thresholds as distances."""
    d, y = _as_arrays(distances, labels, "roc_curve")
    fpr, tpr, thr = skm.roc_curve(y, -d, drop_intermediate=False)
    return fpr, tpr, -thr


def roc_auc(distances: Any, labels: Any) -> float:
    """``sklearn.metrics.roc_auc_score(labels, -distances)``."""
    d, y = _as_arrays(distances, labels, "roc_auc")
    return float(skm.roc_auc_score(y, -d))


def pr_curve(distances: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision (k+1,), recall (k+1,), thresholds (k,))``:
    ``sklearn.metrics.precision_recall_curve(labels, -distances)`` with thresholds as
    distances (decreasing); the final point ``precision=1, recall=0`` has no threshold."""
    d, y = _as_arrays(distances, labels)
    if not y.any():
        raise ConfigError("pr_curve needs at least one same-person (positive) pair")
    precision, recall, thr = skm.precision_recall_curve(y, -d)
    return precision, recall, -thr


def average_precision(distances: Any, labels: Any) -> float:
    """``sklearn.metrics.average_precision_score(labels, -distances)``."""
    d, y = _as_arrays(distances, labels)
    if not y.any():
        raise ConfigError("average_precision needs at least one same-person (positive) pair")
    return float(skm.average_precision_score(y, -d))


# --------------------------------------------------------------------------- operating points


def _operating_points(d: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Midpoint thresholds ``(k+1,)`` with the true and false positives ``(k+1,)`` at each,
    from scikit-learn's ROC curve over the ``k`` distinct distances. Index 0 rejects every
    pair; index i accepts the i smallest distinct distances, with the threshold halfway to
    the next one (the largest distance itself for the last point)."""
    fpr, tpr, thr = skm.roc_curve(y, -d, drop_intermediate=False)
    values = -thr[1:]
    upper = np.r_[values[1:], values[-1]]
    mid = (values + upper) / 2.0
    # Two distances one ulp apart have no midpoint strictly between them; the lower value
    # itself still separates them under ``<=``.
    mid = np.where(mid < upper, mid, values)
    n_pos = int(y.sum())
    tp = np.rint(tpr * n_pos).astype(np.int64)
    fp = np.rint(fpr * (y.size - n_pos)).astype(np.int64)
    return np.r_[np.nextafter(values[0], -np.inf), mid], tp, fp


def _at(d: np.ndarray, y: np.ndarray, pick) -> ThresholdPoint | None:
    """The operating point ``pick(tp, fp, n_pos, n_neg) -> index or None`` chooses."""
    thresholds, tp, fp = _operating_points(d, y)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    i = pick(tp, fp, n_pos, n_neg)
    return None if i is None else _point(thresholds[i], tp[i], fp[i], n_neg - fp[i], n_pos - tp[i])


def best_f1(distances: Any, labels: Any) -> ThresholdPoint:
    """The operating point with the highest F1 (ties: the lowest, i.e. strictest, threshold)."""
    d, y = _as_arrays(distances, labels, "best_f1")
    # F1 = 2tp / (2tp + fp + fn) = 2tp / (tp + fp + n_pos); index 0 (tp = fp = 0) scores 0.
    return _at(d, y, lambda tp, fp, n_pos, n_neg: int(np.argmax(2 * tp / (tp + fp + n_pos))))


def _best_accuracy(tp, fp, n_pos, n_neg) -> int:
    return int(np.argmax(tp - fp))  # tp + tn = tp + n_neg - fp: integer counts, exact ties


def best_accuracy_threshold(distances: Any, labels: Any) -> float:
    """Threshold with the highest accuracy (ties: the lowest, i.e. strictest, threshold)."""
    d, y = _as_arrays(distances, labels, "best_accuracy_threshold")
    return _at(d, y, _best_accuracy).threshold


def _most_hits(ok: np.ndarray, tp: np.ndarray) -> int | None:
    """Among the feasible points ``ok`` that accept a positive, the first (lowest threshold)
    with the most true positives."""
    ok = np.nonzero(ok & (tp > 0))[0]
    return None if ok.size == 0 else int(ok[np.argmax(tp[ok] == tp[ok].max())])


def threshold_for_precision(distances: Any, labels: Any, target: float) -> ThresholdPoint | None:
    """The point with the largest recall whose precision is ``>= target`` (ties: the lowest
    threshold). None when no threshold accepting a positive reaches the target."""
    target = _check_rate(target, "target precision")
    d, y = _as_arrays(distances, labels, "threshold_for_precision")
    return _at(d, y, lambda tp, fp, n_pos, n_neg: _most_hits(tp / np.maximum(tp + fp, 1) >= target, tp))


def threshold_for_fmr(distances: Any, labels: Any, target_fmr: float) -> ThresholdPoint | None:
    """The point with the largest recall (TMR) whose false match rate is ``<= target_fmr``
    (ties: the lowest threshold). None when every threshold accepting a positive exceeds
    it. With ``N`` negatives the smallest non-zero FMR is ``1/N``."""
    target_fmr = _check_rate(target_fmr, "target FMR")
    d, y = _as_arrays(distances, labels, "threshold_for_fmr")
    return _at(d, y, lambda tp, fp, n_pos, n_neg: _most_hits(fp / n_neg <= target_fmr, tp))


def equal_error_rate(distances: Any, labels: Any) -> tuple[float, float]:
    """``(eer, threshold)``: where the false match and false non-match rates meet. On a
    finite set they rarely cross exactly: the point where ``|fpr - fnr|`` is smallest,
    reported as their mean."""
    d, y = _as_arrays(distances, labels, "equal_error_rate")
    thresholds, tp, fp = _operating_points(d, y)
    n_pos = int(y.sum())
    fpr, fnr = fp / (y.size - n_pos), 1.0 - tp / n_pos
    i = int(np.argmin(np.abs(fpr - fnr)))
    return float((fpr[i] + fnr[i]) / 2.0), float(thresholds[i])


# --------------------------------------------------------------------------- protocols


def kfold_accuracy(distances: Any, labels: Any, folds: Any) -> dict[str, Any]:
    """LFW-style k-fold verification accuracy.

    ``folds``: ``(n,)`` int fold index of each pair (e.g. ``Pair.fold``). For each fold
    ``k`` the best-accuracy threshold is chosen on the pairs of all *other* folds, then
    accuracy is measured on fold ``k``; so no test pair ever influences its own threshold.
    With a single fold the threshold is chosen on the fold itself: the result has
    ``threshold_on_test = True`` and its accuracy is optimistic.

    Returns a JSON-serialisable dict: ``mean``, ``std`` (population std over folds, as
    the LFW results tables report), ``per_fold`` (accuracies), ``thresholds`` (one per
    fold), ``folds`` (fold ids, sorted), ``n_pairs`` (per fold), ``threshold_on_test``.
    """
    d, y = _as_arrays(distances, labels)
    f = np.asarray(folds)
    if f.ndim != 1 or f.shape[0] != d.shape[0]:
        raise ConfigError(f"folds must be a 1-d array with one entry per pair ({d.shape[0]}), got shape {f.shape}")
    if f.dtype.kind not in "iu":
        if f.dtype.kind == "f" and np.all(np.isfinite(f)) and np.all(f == np.round(f)):
            f = f.astype(np.int64)
        else:
            raise ConfigError("folds must be integer fold indices")
    fold_ids = np.unique(f)
    single = fold_ids.shape[0] == 1
    accs, thresholds, sizes = [], [], []
    for k in fold_ids:
        test = f == k
        train = test if single else ~test
        if y[train].all() or not y[train].any():
            where = "fold" if single else f"the folds other than {int(k)}"
            raise ConfigError(f"kfold_accuracy: {where} must contain both same and different pairs")
        t = _at(d[train], y[train], _best_accuracy).threshold
        accs.append(float(np.mean((d[test] <= t) == y[test])))
        thresholds.append(t)
        sizes.append(int(np.sum(test)))
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "per_fold": accs, "thresholds": thresholds,
            "folds": [int(k) for k in fold_ids], "n_pairs": sizes, "threshold_on_test": bool(single)}


def rank_k(
    gallery: np.ndarray,
    gallery_labels: Sequence[Any],
    probes: np.ndarray,
    probe_labels: Sequence[Any],
    ks: Iterable[int] = (1, 5),
    *,
    chunk: int = 1024,
) -> dict[int, float]:
    """Identification rate at rank k (CMC points), by cosine similarity.

    ``gallery``: ``(n, d)`` float, unit rows; ``gallery_labels``: ``(n,)``;
    ``probes``: ``(m, d)``; ``probe_labels``: ``(m,)``. Rows are re-normalised here, so
    non-unit embeddings give the same answer instead of a silently wrong one.

    A probe's rank is the position of the first gallery item carrying its label in the
    gallery sorted by similarity. Other items of the same identity never push it down;
    an impostor with *exactly* the same similarity as the best genuine item counts as
    ahead of it (the pessimistic tie rule). A probe whose identity is not in the
    gallery never matches: it counts as a miss at every k.

    Returns ``{k: rate}`` with rates in [0, 1].
    """
    g = np.asarray(gallery, dtype=np.float32)
    p = np.asarray(probes, dtype=np.float32)
    if g.ndim != 2 or p.ndim != 2:
        raise ConfigError(f"gallery and probes must be 2-d (n, d), got {g.shape} and {p.shape}")
    if g.shape[0] == 0 or p.shape[0] == 0:
        raise ConfigError("gallery and probes must not be empty")
    if g.shape[1] != p.shape[1]:
        raise ConfigError(f"gallery dimension {g.shape[1]} != probe dimension {p.shape[1]}")
    gl = np.asarray(gallery_labels)
    pl = np.asarray(probe_labels)
    if gl.shape != (g.shape[0],) or pl.shape != (p.shape[0],):
        raise ConfigError(
            f"need one label per row: gallery {g.shape[0]} rows / {gl.shape} labels, "
            f"probes {p.shape[0]} rows / {pl.shape} labels"
        )
    if int(chunk) < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    chunk = int(chunk)
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"ks must be positive integers, got {ks}")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(p))):
        raise ConfigError("embeddings contain NaN or infinite values")
    gn = np.linalg.norm(g, axis=1, keepdims=True)
    pn = np.linalg.norm(p, axis=1, keepdims=True)
    if np.any(gn == 0) or np.any(pn == 0):
        raise ConfigError("an embedding has zero norm; cosine similarity is undefined")
    g = g / gn
    p = p / pn

    # Map labels to integer codes once, so the per-chunk comparisons are int compares.
    _, codes = np.unique(np.concatenate([gl.astype(str), pl.astype(str)]), return_inverse=True)
    gcode, pcode = codes[: gl.shape[0]], codes[gl.shape[0] :]

    ranks = np.empty(p.shape[0], dtype=np.int64)
    no_match = np.iinfo(np.int64).max
    for start in range(0, p.shape[0], chunk):
        sim = p[start : start + chunk] @ g.T  # (c, n)
        genuine = pcode[start : start + chunk, None] == gcode[None, :]
        best = np.where(genuine, sim, -np.inf).max(axis=1)  # (c,)
        ahead = np.sum(~genuine & (sim >= best[:, None]), axis=1)
        ranks[start : start + chunk] = np.where(np.isfinite(best), ahead + 1, no_match)
    return {k: float(np.mean(ranks <= k)) for k in ks}


def summary(distances: Any, labels: Any) -> dict[str, Any]:
    """A JSON-serialisable overview of a set of scored pairs (plain floats and ints).

    Keys: ``n_pairs``, ``n_pos``, ``n_neg``, ``roc_auc``, ``average_precision``,
    ``eer``, ``eer_threshold``, ``best_f1`` (a :class:`ThresholdPoint` as dict),
    ``best_accuracy`` (likewise), ``best_accuracy_threshold``, ``tar_at_fmr`` (dict
    from FMR target as string to TAR, or ``None`` where not reachable), ``distance``
    (min/max/mean distance per class).
    """
    d, y = _as_arrays(distances, labels, "summary")
    acc_point = _at(d, y, _best_accuracy)
    eer, eer_t = equal_error_rate(d, y)
    tar: dict[str, float | None] = {}
    for fmr in (1e-1, 1e-2, 1e-3):
        p = threshold_for_fmr(d, y, fmr)
        tar[repr(fmr)] = None if p is None else p.recall
    return {
        "n_pairs": int(y.shape[0]),
        "n_pos": int(y.sum()),
        "n_neg": int((~y).sum()),
        "roc_auc": roc_auc(d, y),
        "average_precision": average_precision(d, y),
        "eer": eer,
        "eer_threshold": eer_t,
        "best_f1": best_f1(d, y).to_dict(),
        "best_accuracy": acc_point.to_dict(),
        "best_accuracy_threshold": acc_point.threshold,
        "tar_at_fmr": tar,
        "distance": {
            "same_mean": float(d[y].mean()),
            "same_min": float(d[y].min()),
            "same_max": float(d[y].max()),
            "different_mean": float(d[~y].mean()),
            "different_min": float(d[~y].min()),
            "different_max": float(d[~y].max()),
        },
    }
