"""The verdict rule and its display (facesearch/search/verdicts.py) and the webcam's face
tracking (facesearch/search/tracking.py), on hand-made inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from facesearch.search import verdicts as V
from facesearch.search.tracking import FaceTracker, iou


def test_rule_decides_by_threshold_band_and_quality_gate():
    rule = V.Rule(0.4, 0.5)
    assert [rule.decide(d) for d in (0.1, 0.4, 0.45, 0.5, 0.51)] == ["match"] * 2 + ["possible"] * 2 + ["no match"]
    small = SimpleNamespace(ok=False, kind="too small", reason="face too small")
    blurred = SimpleNamespace(ok=False, kind="blurred", reason="face too blurred")
    assert rule.decide(0.0, small) == V.TOO_SMALL and rule.decide(0.0, blurred) == V.LOW_QUALITY
    assert rule.decide(0.0, SimpleNamespace(ok=True)) == V.MATCH
    # Verify's band: 25% past its threshold.
    assert V.decide(0.6, 0.5) == V.POSSIBLE and V.decide(0.63, 0.5) == V.NO_MATCH


def test_only_a_match_is_named_and_every_verdict_has_one_colour():
    assert V.box_label(2, "obama", V.MATCH) == "2 obama"
    assert V.box_label(2, "obama", V.POSSIBLE) == "2 ?"
    assert all(V.box_label(3, "x", v) == "3" for v in (V.NO_MATCH, V.TOO_SMALL, V.LOW_QUALITY))
    assert set(V.RGB) == set(V.COLOR_NAME) == set(V.VERDICTS)
    assert len({V.RGB[v] for v in (V.MATCH, V.POSSIBLE, V.NO_MATCH)}) == 3


def test_over_time_names_only_an_agreed_match():
    m, p, n = V.MATCH, V.POSSIBLE, V.NO_MATCH
    assert V.over_time([(m, "a")]) == (p, None)  # one frame is no agreement
    assert V.over_time([(m, "a"), (m, "a")]) == (m, "a")
    assert V.over_time([(n, "b"), (m, "b"), (n, "b")]) == (n, None)  # one lucky frame
    assert V.over_time([(m, "a"), (m, "b"), (m, "a"), (m, "b")]) == (p, None)  # two names, a tie
    assert V.over_time([(m, "a"), (p, "a"), (m, "a"), (n, None), (m, "a")]) == (m, "a")
    assert V.over_time([(p, "a"), (n, None)]) == (n, None)  # ties go to the weaker claim
    assert V.over_time([]) == (n, None)


def _frame(*faces):
    """FaceMatches stand-ins: (box, verdict, identity) per face."""
    return [SimpleNamespace(face=SimpleNamespace(face=SimpleNamespace(box=box)), verdict=v,
                            best=SimpleNamespace(identity=who, similarity=0.5) if who else None)
            for box, v, who in faces]


def test_tracker_follows_moving_faces_and_agrees_over_frames():
    t = FaceTracker(window=5, min_iou=0.3, max_misses=1)
    a, b = (100, 100, 50, 50), (300, 100, 50, 50)
    first = t.update(_frame((a, "match", "obama"), (b, "match", "stranger_lookalike")))
    assert [tr.identity for tr in first] == [None, None]
    # Next frame: faces moved a little and come in the other order; the stranger's match was a fluke.
    a2, b2 = (104, 102, 50, 50), (296, 98, 50, 50)
    second = t.update(_frame((b2, "no match", "stranger_lookalike"), (a2, "match", "obama")))
    assert second[1].id == first[0].id and second[0].id == first[1].id
    assert second[1].identity == "obama" and second[0].identity is None
    third = t.update(_frame((a2, "match", "obama"), (b2, "possible", "stranger_lookalike")))
    assert [tr.identity for tr in third] == ["obama", None]
    # A face missing from more frames than max_misses starts afresh when it comes back.
    t.update(_frame())
    t.update(_frame())
    back = t.update(_frame((a2, "match", "obama")))
    assert back[0].id not in {first[0].id, first[1].id} and back[0].identity is None


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
