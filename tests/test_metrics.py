"""facesearch.evaluation.metrics against scikit-learn, plus the protocols sklearn has no twin for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from facesearch.evaluation import metrics as M
from facesearch.errors import ConfigError


def _random_case(seed: int, n: int = 400, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    d = np.where(y, rng.normal(0.35, 0.15, n), rng.normal(0.7, 0.15, n))
    if ties:
        # Coarse rounding creates many ties, several of them across classes.
        d = np.round(d, 1)
    return d, y


CASES = [
    _random_case(0),
    _random_case(1, ties=True),
    _random_case(2, n=37, ties=True),
    # Hand-made: ties across classes, at both ends and in the middle.
    (
        np.array([0.1, 0.1, 0.2, 0.3, 0.3, 0.3, 0.5, 0.9, 0.9]),
        np.array([1, 0, 1, 1, 0, 1, 0, 0, 1], bool),
    ),
    # Perfect separation and perfect inversion.
    (np.array([0.1, 0.2, 0.8, 0.9]), np.array([True, True, False, False])),
    (np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])),
    # Everything tied.
    (np.full(6, 0.4), np.array([1, 0, 1, 0, 0, 1], bool)),
]


def _candidates(d):
    """Every threshold that gives a different prediction: below the smallest distance and
    each distinct distance."""
    return np.r_[d.min() - 1.0, np.unique(d)]


@pytest.mark.parametrize("d,y", CASES)
def test_curves_and_areas_are_sklearns_on_negated_distances(d, y):
    assert M.roc_auc(d, y) == pytest.approx(skm.roc_auc_score(y, -d), abs=1e-12)
    assert M.average_precision(d, y) == pytest.approx(skm.average_precision_score(y, -d), abs=1e-12)
    p, r, t = M.pr_curve(d, y)
    sp, sr, st = skm.precision_recall_curve(y, -d)
    np.testing.assert_allclose(p, sp)
    np.testing.assert_allclose(r, sr)
    np.testing.assert_allclose(t, -st)
    fpr, tpr, thr = M.roc_curve(d, y)
    # Thresholds are distances, increasing from "accept nothing".
    assert thr[0] == -np.inf and np.all(np.diff(thr) > 0)
    np.testing.assert_array_equal(thr[1:], np.unique(d))
    for f, t_, x in zip(fpr, tpr, thr):
        pred = d <= x
        assert f == pytest.approx(np.mean(pred[~y])) and t_ == pytest.approx(np.mean(pred[y]))


def test_areas_by_hand():
    d = np.array([0.1, 0.2, 0.8, 0.9])
    close, far = np.array([True, True, False, False]), np.array([False, False, True, True])
    assert M.roc_auc(d, close) == 1.0 and M.average_precision(d, close) == 1.0
    assert M.roc_auc(d, far) == 0.0
    assert M.roc_auc(np.full(6, 0.4), [1, 0, 1, 0, 0, 1]) == 0.5  # all tied: a coin toss


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.25, 0.3, 0.55, 2.0])
def test_confusion_at_by_hand(threshold):
    d, y = CASES[3]
    pt = M.confusion_at(d, y, threshold)
    pred = d <= threshold
    assert (pt.tp, pt.fp, pt.tn, pt.fn) == (np.sum(pred & y), np.sum(pred & ~y), np.sum(~pred & ~y), np.sum(~pred & y))
    assert pt.f1 == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert pt.precision == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert pt.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    assert pt.threshold == threshold


@pytest.mark.parametrize("d,y", CASES)
def test_best_points_beat_every_threshold(d, y):
    cands = _candidates(d)
    f1s = [skm.f1_score(y, d <= t, zero_division=0) for t in cands]
    accs = [skm.accuracy_score(y, d <= t) for t in cands]
    bf = M.best_f1(d, y)
    assert bf.f1 == pytest.approx(max(f1s))
    assert skm.f1_score(y, d <= bf.threshold, zero_division=0) == pytest.approx(max(f1s))
    assert M.confusion_at(d, y, bf.threshold) == bf
    t = M.best_accuracy_threshold(d, y)
    assert skm.accuracy_score(y, d <= t) == pytest.approx(max(accs))
    # Ties go to the strictest threshold: every threshold accepting fewer pairs does worse.
    for best, scores in ((bf.threshold, f1s), (t, accs)):
        fewer = [s for c, s in zip(cands, scores) if np.any((d > c) & (d <= best))]
        assert all(s < max(scores) - 1e-12 for s in fewer)
    # A midpoint between observed distances (or the largest one, accepting every pair).
    assert t not in set(d) or t == d.max()


def test_best_threshold_is_a_midpoint():
    d = np.array([0.2, 0.3, 0.6, 0.8])
    y = np.array([True, True, False, False])
    assert M.best_accuracy_threshold(d, y) == pytest.approx(0.45)
    assert M.best_f1(d, y).threshold == pytest.approx(0.45)


@pytest.mark.parametrize("d,y", CASES)
@pytest.mark.parametrize("target", [0.5, 0.8, 1.0])
def test_threshold_for_precision_has_the_most_recall_reaching_the_target(d, y, target):
    feasible = [(skm.recall_score(y, d <= t), t) for t in _candidates(d)
                if np.any((d <= t) & y) and skm.precision_score(y, d <= t, zero_division=0) >= target]
    p = M.threshold_for_precision(d, y, target)
    if not feasible:
        assert p is None
        return
    assert p.recall == pytest.approx(max(r for r, _ in feasible))
    assert p.precision >= target and skm.precision_score(y, d <= p.threshold) == pytest.approx(p.precision)


@pytest.mark.parametrize("d,y", CASES)
@pytest.mark.parametrize("target", [0.0, 0.1, 0.25])
def test_threshold_for_fmr_has_the_most_recall_within_the_target(d, y, target):
    feasible = [skm.recall_score(y, d <= t) for t in _candidates(d)
                if np.any((d <= t) & y) and np.mean((d <= t)[~y]) <= target]
    f = M.threshold_for_fmr(d, y, target)
    if not feasible:
        assert f is None
        return
    assert f.recall == pytest.approx(max(feasible))
    assert f.fpr <= target and np.mean((d <= f.threshold)[~y]) == pytest.approx(f.fpr)


def test_threshold_for_precision_and_fmr_by_hand():
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    y = np.array([1, 1, 0, 1, 1, 0, 0, 0], bool)
    p = M.threshold_for_precision(d, y, 1.0)
    assert (p.tp, p.fp) == (2, 0) and p.threshold == pytest.approx(0.25)
    p = M.threshold_for_precision(d, y, 0.8)
    assert (p.tp, p.fp) == (4, 1) and p.precision == pytest.approx(0.8) and p.recall == 1.0
    f = M.threshold_for_fmr(d, y, 0.0)
    assert (f.tp, f.fp) == (2, 0)
    f = M.threshold_for_fmr(d, y, 0.25)
    assert (f.tp, f.fp, f.fpr) == (4, 1, 0.25)
    # Unreachable: the closest pair is a negative.
    assert M.threshold_for_precision(np.array([0.1, 0.5]), np.array([False, True]), 1.0) is None
    assert M.threshold_for_fmr(np.array([0.1, 0.5]), np.array([False, True]), 0.0) is None


def test_equal_error_rate_by_hand():
    # Accepting the 4 closest: 3 of 4 positives (FNMR 1/4), 1 of 4 negatives (FMR 1/4).
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    y = np.array([1, 1, 0, 1, 1, 0, 0, 0], bool)
    eer, t = M.equal_error_rate(d, y)
    assert eer == pytest.approx(0.25) and t == pytest.approx(0.45)
    # Alternating labels never cross exactly: closest point is FMR 1/2, FNMR 1/2 at 0.25.
    assert M.equal_error_rate([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == pytest.approx((0.5, 0.25))
    # Perfect separation: no errors at the gap's midpoint.
    assert M.equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx((0.0, 0.5))


def test_kfold_thresholds_come_from_other_folds():
    # Fold 0's own best threshold is anywhere in (0.5, 0.9): its positives lie at 0.4-0.5
    # and its negatives at 0.9+. Folds 1 and 2 both separate at ~0.2. A threshold chosen
    # on fold 0 itself would give it 100 %; the protocol must use ~0.2 and score 50 %.
    d0, y0 = [0.40, 0.45, 0.50, 0.90, 0.95, 1.00], [1, 1, 1, 0, 0, 0]
    d1, y1 = [0.05, 0.10, 0.15, 0.25, 0.30, 0.95], [1, 1, 1, 0, 0, 0]
    d2, y2 = [0.08, 0.12, 0.18, 0.22, 0.60, 0.70], [1, 1, 1, 0, 0, 0]
    d = np.array(d0 + d1 + d2)
    y = np.array(y0 + y1 + y2, dtype=bool)
    folds = np.repeat([0, 1, 2], 6)
    res = M.kfold_accuracy(d, y, folds)
    assert res["threshold_on_test"] is False
    assert res["folds"] == [0, 1, 2]
    t0 = res["thresholds"][0]
    assert t0 == pytest.approx(M.best_accuracy_threshold(d[folds != 0], y[folds != 0]))
    assert 0.18 < t0 < 0.22
    assert res["per_fold"][0] == pytest.approx(0.5)
    assert M.best_accuracy_threshold(d0, np.array(y0, bool)) > 0.5  # its own would differ
    assert res["mean"] == pytest.approx(np.mean(res["per_fold"]))
    assert res["std"] == pytest.approx(np.std(res["per_fold"]))
    json.dumps(res)


def test_kfold_single_fold_says_so():
    d, y = CASES[0]
    res = M.kfold_accuracy(d, y, np.zeros(d.size, int))
    assert res["threshold_on_test"] is True
    assert res["thresholds"][0] == pytest.approx(M.best_accuracy_threshold(d, y))


def test_kfold_training_folds_need_both_classes():
    d = np.array([0.1, 0.2, 0.8, 0.9])
    y = np.array([True, True, False, False])
    with pytest.raises(ConfigError, match="both"):
        M.kfold_accuracy(d, y, [0, 0, 1, 1])


def test_rank_k_on_handmade_gallery():
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.8, 0.6, 0]], np.float32)
    glabels = ["ann", "bob", "cy", "bob"]
    probes = np.array(
        [
            [0.9, 0.1, 0.0],  # ann: nearest is ann -> rank 1
            [0.95, 0.25, 0.0],  # bob: ann is closer than bob#4 -> rank 2
            [0.0, 0.1, 1.0],  # cy -> rank 1
            [1.0, 0.0, 0.05],  # cy: ann, bob#4 ahead -> rank 3
            [0.0, 0.0, 1.0],  # dan: not enrolled, always a miss
        ],
        np.float32,
    )
    plabels = ["ann", "bob", "cy", "cy", "dan"]
    res = M.rank_k(gallery, glabels, probes, plabels, ks=(1, 2, 3, 5))
    assert res == pytest.approx({1: 2 / 5, 2: 3 / 5, 3: 4 / 5, 5: 4 / 5})
    # Chunking does not change the answer; scaling a row does not either.
    assert M.rank_k(gallery * 3, glabels, probes, plabels, ks=(1, 2, 3, 5), chunk=2) == res


def test_rank_k_ties_are_pessimistic():
    gallery = np.array([[1, 0], [1, 0]], np.float32)
    probe = np.array([[1, 0]], np.float32)
    assert M.rank_k(gallery, ["x", "y"], probe, ["y"], ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_summary_is_json_and_consistent():
    d, y = CASES[1]
    s = M.summary(d, y)
    json.dumps(s)
    assert s["n_pairs"] == d.size and s["n_pos"] == int(y.sum())
    assert s["roc_auc"] == pytest.approx(skm.roc_auc_score(y, -d))
    assert s["average_precision"] == pytest.approx(skm.average_precision_score(y, -d))
    assert s["best_f1"]["f1"] == pytest.approx(M.best_f1(d, y).f1)
    assert (s["eer"], s["eer_threshold"]) == M.equal_error_rate(d, y)


def test_summary_by_hand():
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    y = np.array([1, 1, 0, 1, 1, 0, 0, 0], bool)
    s = M.summary(d, y)
    assert (s["n_pairs"], s["n_pos"], s["n_neg"]) == (8, 4, 4)
    assert s["roc_auc"] == pytest.approx(14 / 16)  # 14 of the 16 (same, different) pairs ordered right
    assert s["eer"] == pytest.approx(0.25) and s["eer_threshold"] == pytest.approx(0.45)
    # Best accuracy accepts the 5 closest: 4 hits, 1 false match, 7 of 8 right.
    assert s["best_accuracy"]["accuracy"] == pytest.approx(7 / 8) and s["best_accuracy_threshold"] == pytest.approx(0.55)
    # No false match allowed below FMR 1/4: only the 2 closest positives are accepted.
    assert s["tar_at_fmr"] == {"0.1": 0.5, "0.01": 0.5, "0.001": 0.5}
    assert s["distance"]["same_min"] == 0.1 and s["distance"]["different_max"] == 0.8


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.roc_auc([0.1, 0.2], [True]),  # length mismatch
        lambda: M.roc_auc([[0.1, 0.2]], [[True, False]]),  # 2-d
        lambda: M.roc_auc([], []),  # empty
        lambda: M.roc_auc([0.1, np.nan], [True, False]),  # NaN
        lambda: M.roc_auc([0.1, 0.2], [True, True]),  # one class
        lambda: M.best_f1([0.1, 0.2], [False, False]),
        lambda: M.average_precision([0.1, 0.2], [False, False]),
        lambda: M.best_f1([0.1, 0.2], [2, 0]),  # not 0/1
        lambda: M.best_f1([0.1, 0.2], ["a", "b"]),
        lambda: M.pr_curve([0.1, 0.2], [False, False]),
        lambda: M.confusion_at([0.1], [True], float("nan")),
        lambda: M.threshold_for_precision([0.1, 0.2], [True, False], 1.5),
        lambda: M.threshold_for_fmr([0.1, 0.2], [True, False], -0.1),
        lambda: M.kfold_accuracy([0.1, 0.2], [True, False], [0]),
        lambda: M.kfold_accuracy([0.1, 0.2], [True, False], [0.5, 1.0]),
        lambda: M.rank_k(np.eye(2), ["a", "b"], np.eye(3), ["a", "b", "c"]),  # dims
        lambda: M.rank_k(np.eye(2), ["a"], np.eye(2), ["a", "b"]),  # labels
        lambda: M.rank_k(np.eye(2), ["a", "b"], np.zeros((1, 2)), ["a"]),  # zero norm
        lambda: M.rank_k(np.eye(2), ["a", "b"], np.eye(2), ["a", "b"], ks=(0,)),
    ],
)
def test_bad_input_raises_config_error(call):
    with pytest.raises(ConfigError):
        call()


def test_large_input_best_accuracy_is_the_maximum():
    d, y = _random_case(3, n=200_000)
    fpr, tpr, _ = skm.roc_curve(y, -d, drop_intermediate=False)
    best = np.max(tpr * y.sum() + (1 - fpr) * (~y).sum()) / y.size
    assert np.mean((d <= M.best_accuracy_threshold(d, y)) == y) == pytest.approx(best)
