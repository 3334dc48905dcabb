"""Verification and identification metrics for face pairs, in plain numpy.

Convention used everywhere in this module: a pair has a ``distance`` (cosine distance,
lower = more similar) and a boolean label ``same``. A threshold ``t`` predicts "same"
when ``distance <= t``.

Two kinds of thresholds appear here and they are deliberately different:

* Curves (:func:`roc_curve`, :func:`pr_curve`) use the observed distances themselves as
  thresholds, exactly like scikit-learn does with ``score = -distance``, so that the
  curves and the areas under them (:func:`roc_auc`, :func:`average_precision`) match
  ``sklearn.metrics`` to the last bit.
* Operating points (:func:`sweep`, :func:`best_f1`, :func:`best_accuracy_threshold`,
  :func:`threshold_for_precision`, :func:`threshold_for_fmr`, :func:`kfold_accuracy`)
  use the *midpoint* between consecutive distinct distances. Any threshold in the open
  gap between two observed distances gives the same confusion matrix on this data, but
  a threshold sitting exactly on an observed distance is the most fragile choice for
  unseen pairs: the midpoint leaves the largest margin on both sides, which is why
  thresholds chosen on one set of pairs transfer better to another.

All array arguments are 1-d: ``distances`` is ``(n,)`` float, ``labels`` is ``(n,)``
bool (``0/1`` integers are accepted). Bad input raises :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = [
    "ThresholdPoint",
    "confusion_at",
    "sweep",
    "roc_auc",
    "average_precision",
    "pr_curve",
    "roc_curve",
    "best_f1",
    "best_accuracy_threshold",
    "threshold_for_precision",
    "threshold_for_fmr",
    "equal_error_rate",
    "kfold_accuracy",
    "rank_k",
    "summary",
]


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


# --------------------------------------------------------------------------- validation


def _as_arrays(distances: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to ``(n,)`` float64 distances and ``(n,)`` bool labels."""
    try:
        d = np.asarray(distances, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"distances must be numbers: {exc}") from None
    y_raw = np.asarray(labels)
    if d.ndim != 1:
        raise ConfigError(f"distances must be a 1-d array, got shape {d.shape}")
    if y_raw.ndim != 1:
        raise ConfigError(f"labels must be a 1-d array, got shape {y_raw.shape}")
    if d.shape[0] != y_raw.shape[0]:
        raise ConfigError(
            f"distances and labels must have the same length, got {d.shape[0]} and {y_raw.shape[0]}"
        )
    if d.shape[0] == 0:
        raise ConfigError("no pairs: distances and labels are empty")
    if not np.all(np.isfinite(d)):
        raise ConfigError("distances contain NaN or infinite values")
    if y_raw.dtype == np.bool_:
        y = y_raw
    else:
        # Accept 0/1 (ints or floats) but refuse anything else: a label of 2 or "yes"
        # is much more likely a bug upstream than a deliberate encoding.
        if y_raw.dtype.kind not in "iuf" or not np.all(np.isin(y_raw, (0, 1))):
            raise ConfigError("labels must be booleans or 0/1")
        y = y_raw.astype(bool)
    return d, y


def _need_both(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        kind = "same-person (positive)" if n_pos == 0 else "different-person (negative)"
        raise ConfigError(f"{what} needs both classes, but there is no {kind} pair")


def _point(threshold: float, tp: int, fp: int, tn: int, fn: int) -> ThresholdPoint:
    n = tp + fp + tn + fn
    return ThresholdPoint(
        threshold=float(threshold),
        precision=float(tp / (tp + fp)) if tp + fp else 0.0,
        recall=float(tp / (tp + fn)) if tp + fn else 0.0,
        f1=float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0,
        fpr=float(fp / (fp + tn)) if fp + tn else 0.0,
        accuracy=float((tp + tn) / n) if n else 0.0,
        tp=int(tp),
        fp=int(fp),
        tn=int(tn),
        fn=int(fn),
    )


# --------------------------------------------------------------------------- confusion / sweep


def confusion_at(distances: Any, labels: Any, threshold: float) -> ThresholdPoint:
    """Confusion matrix when predicting "same" for ``distance <= threshold``.

    ``distances``: ``(n,)``; ``labels``: ``(n,)`` bool.
    """
    d, y = _as_arrays(distances, labels)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number, got {threshold!r}") from None
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    pred = d <= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    return _point(threshold, tp, fp, tn, fn)


def _cumulative(d: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct sorted distances ``(k,)`` with cumulative tp ``(k,)`` and fp ``(k,)``.

    ``tp[i]``/``fp[i]`` count pairs with ``distance <= values[i]``.
    """
    order = np.argsort(d, kind="mergesort")
    ds, ys = d[order], y[order]
    tp_all = np.cumsum(ys, dtype=np.int64)
    fp_all = np.arange(1, ds.shape[0] + 1, dtype=np.int64) - tp_all
    # The last index of each run of equal distances: ties must be accepted together.
    last = np.r_[np.nonzero(np.diff(ds))[0], ds.shape[0] - 1]
    return ds[last], tp_all[last], fp_all[last]


def _sweep_counts(d: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Midpoint thresholds ``(k+1,)`` with tp and fp ``(k+1,)`` at each.

    Index 0 rejects every pair (threshold just below the smallest distance); index i>=1
    accepts exactly the i smallest distinct distances, with the threshold halfway to the
    next distinct distance (the largest one for the last point).
    """
    values, tp, fp = _cumulative(d, y)
    upper = np.r_[values[1:], values[-1]]
    mid = (values + upper) / 2.0
    # Two distances one ulp apart have no representable midpoint strictly between them;
    # the lower value itself still separates them under ``<=``.
    mid = np.where(mid < upper, mid, values)
    thresholds = np.r_[np.nextafter(values[0], -np.inf), mid]
    return thresholds, np.r_[0, tp], np.r_[0, fp]


def sweep(distances: Any, labels: Any) -> dict[str, np.ndarray]:
    """Every distinct operating point, vectorised (one sort, one cumsum).

    ``distances``: ``(n,)``; ``labels``: ``(n,)`` bool. Returns a dict of ``(k+1,)``
    arrays, where ``k`` is the number of distinct distances, ordered by increasing
    threshold: ``thresholds``, ``precision``, ``recall``, ``tpr`` (same as recall),
    ``fpr``, ``f1``, ``accuracy``, ``tp``, ``fp``, ``tn``, ``fn``. The first point
    rejects every pair; the others use midpoints between consecutive distinct distances
    (see the module docstring), the last one accepts every pair.
    """
    d, y = _as_arrays(distances, labels)
    thresholds, tp, fp = _sweep_counts(d, y)
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    fn = n_pos - tp
    tn = n_neg - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = tp / n_pos if n_pos else np.zeros(tp.shape)
        fpr = fp / n_neg if n_neg else np.zeros(fp.shape)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    accuracy = (tp + tn) / y.shape[0]
    return {
        "thresholds": thresholds,
        "precision": precision.astype(np.float64),
        "recall": np.asarray(recall, dtype=np.float64),
        "tpr": np.asarray(recall, dtype=np.float64),
        "fpr": np.asarray(fpr, dtype=np.float64),
        "f1": f1.astype(np.float64),
        "accuracy": accuracy.astype(np.float64),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _point_from_sweep(s: dict[str, np.ndarray], i: int) -> ThresholdPoint:
    return _point(s["thresholds"][i], s["tp"][i], s["fp"][i], s["tn"][i], s["fn"][i])


# --------------------------------------------------------------------------- curves and areas


def roc_curve(distances: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: ``(fpr, tpr, thresholds)``, each ``(k+1,)``, ``k`` distinct distances.

    Equal to ``sklearn.metrics.roc_curve(labels, -distances, drop_intermediate=False)``
    with thresholds negated back to distances: increasing thresholds, the first point is
    ``(0, 0)`` with threshold ``-inf`` (nothing accepted), the others are the observed
    distinct distances.
    """
    d, y = _as_arrays(distances, labels)
    _need_both(y, "roc_curve")
    values, tp, fp = _cumulative(d, y)
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    return fpr, tpr, np.r_[-np.inf, values]


def roc_auc(distances: Any, labels: Any) -> float:
    """Area under the ROC curve; equals ``sklearn.metrics.roc_auc_score(labels, -distances)``.

    Ties between a positive and a negative count one half (the trapezoid over the
    distinct thresholds does this implicitly).
    """
    fpr, tpr, _ = roc_curve(distances, labels)
    return float(np.trapezoid(tpr, fpr))


def pr_curve(distances: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve: ``(precision (k+1,), recall (k+1,), thresholds (k,))``.

    Same arrays and order as ``sklearn.metrics.precision_recall_curve(labels,
    -distances)`` with thresholds negated back to distances: thresholds are the distinct
    distances in *decreasing* order (recall decreasing), and the final point
    ``precision=1, recall=0`` has no threshold.
    """
    d, y = _as_arrays(distances, labels)
    if not y.any():
        raise ConfigError("pr_curve needs at least one same-person (positive) pair")
    values, tp, fp = _cumulative(d, y)
    precision = tp / (tp + fp)  # tp + fp >= 1 at every observed distance
    recall = tp / tp[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], values[::-1].copy()


def average_precision(distances: Any, labels: Any) -> float:
    """Average precision; equals ``sklearn.metrics.average_precision_score(labels, -distances)``.

    The step-wise sum ``sum_n (R_n - R_{n-1}) P_n`` (no interpolation).
    """
    precision, recall, _ = pr_curve(distances, labels)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


# --------------------------------------------------------------------------- operating points


def best_f1(distances: Any, labels: Any) -> ThresholdPoint:
    """The operating point with the highest F1 (ties: the lowest, i.e. strictest, threshold).

    ``distances``: ``(n,)``; ``labels``: ``(n,)`` bool; both classes required.
    """
    d, y = _as_arrays(distances, labels)
    _need_both(y, "best_f1")
    s = sweep(d, y)
    return _point_from_sweep(s, int(np.argmax(s["f1"])))


def _best_accuracy_index(s: dict[str, np.ndarray]) -> int:
    # Compare integer counts, not float accuracies, so ties are exact.
    return int(np.argmax(s["tp"] + s["tn"]))


def best_accuracy_threshold(distances: Any, labels: Any) -> float:
    """Threshold with the highest accuracy (ties: the lowest, i.e. strictest, threshold).

    ``distances``: ``(n,)``; ``labels``: ``(n,)`` bool; both classes required.
    """
    d, y = _as_arrays(distances, labels)
    _need_both(y, "best_accuracy_threshold")
    s = sweep(d, y)
    return float(s["thresholds"][_best_accuracy_index(s)])


def _check_rate(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return v


def threshold_for_precision(distances: Any, labels: Any, target: float) -> ThresholdPoint | None:
    """The point with the largest recall whose precision is ``>= target``.

    Ties in recall go to the lowest threshold (fewest false matches for the same hits).
    Returns ``None`` when no threshold accepting at least one positive reaches the
    target precision.
    """
    target = _check_rate(target, "target precision")
    d, y = _as_arrays(distances, labels)
    _need_both(y, "threshold_for_precision")
    s = sweep(d, y)
    ok = np.nonzero((s["precision"] >= target) & (s["tp"] > 0))[0]
    if ok.size == 0:
        return None
    # tp is non-decreasing in the threshold, so the first index reaching the best tp
    # among the feasible points is the lowest threshold with the largest recall.
    best_tp = s["tp"][ok].max()
    return _point_from_sweep(s, int(ok[np.argmax(s["tp"][ok] == best_tp)]))


def threshold_for_fmr(distances: Any, labels: Any, target_fmr: float) -> ThresholdPoint | None:
    """The point with the largest recall (TMR) whose false match rate (fpr) is ``<= target_fmr``.

    Ties in recall go to the lowest threshold. Returns ``None`` when every threshold
    that accepts at least one positive already exceeds the target FMR (i.e. TMR at this
    FMR is 0 on these pairs). Note the resolution: with ``N`` negatives the smallest
    non-zero FMR is ``1/N``.
    """
    target_fmr = _check_rate(target_fmr, "target FMR")
    d, y = _as_arrays(distances, labels)
    _need_both(y, "threshold_for_fmr")
    s = sweep(d, y)
    # fpr is non-decreasing in the threshold, so the feasible points are a prefix.
    ok = np.nonzero((s["fpr"] <= target_fmr) & (s["tp"] > 0))[0]
    if ok.size == 0:
        return None
    best_tp = s["tp"][ok].max()
    return _point_from_sweep(s, int(ok[np.argmax(s["tp"][ok] == best_tp)]))


def equal_error_rate(distances: Any, labels: Any) -> tuple[float, float]:
    """``(eer, threshold)``: the point where false match and false non-match rates meet.

    On a finite set the two rates rarely cross exactly, so this takes the operating
    point where ``|fpr - fnr|`` is smallest and reports their mean.
    """
    d, y = _as_arrays(distances, labels)
    _need_both(y, "equal_error_rate")
    s = sweep(d, y)
    fnr = 1.0 - s["recall"]
    i = int(np.argmin(np.abs(s["fpr"] - fnr)))
    return float((s["fpr"][i] + fnr[i]) / 2.0), float(s["thresholds"][i])


# --------------------------------------------------------------------------- protocols


def kfold_accuracy(distances: Any, labels: Any, folds: Any) -> dict[str, Any]:
    """LFW-style k-fold verification accuracy.

    ``distances``: ``(n,)``; ``labels``: ``(n,)`` bool; ``folds``: ``(n,)`` int fold index
    of each pair (e.g. ``Pair.fold``). For each fold ``k`` the best-accuracy threshold
    is chosen on the pairs of all *other* folds, then accuracy is measured on fold
    ``k``; so no test pair ever influences its own threshold.

    With a single fold there is nothing to train on: the threshold is chosen on the fold
    itself, the result has ``threshold_on_test = True`` and its accuracy is optimistic.

    Returns a JSON-serialisable dict: ``mean``, ``std`` (population std over folds, as
    the LFW results tables report), ``per_fold`` (accuracies), ``thresholds`` (one per
    fold), ``folds`` (fold ids, sorted), ``n_pairs`` (per fold), ``threshold_on_test``.
    """
    d, y = _as_arrays(distances, labels)
    f = np.asarray(folds)
    if f.ndim != 1 or f.shape[0] != d.shape[0]:
        raise ConfigError(
            f"folds must be a 1-d array with one entry per pair ({d.shape[0]}), got shape {f.shape}"
        )
    if f.dtype.kind not in "iu":
        if f.dtype.kind == "f" and np.all(np.isfinite(f)) and np.all(f == np.round(f)):
            f = f.astype(np.int64)
        else:
            raise ConfigError("folds must be integer fold indices")
    fold_ids = np.unique(f)
    single = fold_ids.shape[0] == 1
    accs: list[float] = []
    thresholds: list[float] = []
    sizes: list[int] = []
    for k in fold_ids:
        test = f == k
        train = test if single else ~test
        ytr = y[train]
        if ytr.all() or not ytr.any():
            where = "fold" if single else f"the folds other than {int(k)}"
            raise ConfigError(f"kfold_accuracy: {where} must contain both same and different pairs")
        s = sweep(d[train], ytr)
        t = float(s["thresholds"][_best_accuracy_index(s)])
        correct = np.sum((d[test] <= t) == y[test])
        accs.append(float(correct / np.sum(test)))
        thresholds.append(t)
        sizes.append(int(np.sum(test)))
    acc = np.asarray(accs)
    return {
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "per_fold": accs,
        "thresholds": thresholds,
        "folds": [int(k) for k in fold_ids],
        "n_pairs": sizes,
        "threshold_on_test": bool(single),
    }


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
    d, y = _as_arrays(distances, labels)
    _need_both(y, "summary")
    s = sweep(d, y)
    acc_point = _point_from_sweep(s, _best_accuracy_index(s))
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
