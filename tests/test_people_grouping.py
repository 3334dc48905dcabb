"""The grouping rule on arrays (facesearch.people.grouping): hand-made unit vectors whose
distances are known, so each rule is seen to act alone. The rule on real photos is
judged in tests/test_people.py (CelebA) and bench/."""

from __future__ import annotations

import numpy as np
import pytest

from facesearch.errors import UnknownDetectorError
from facesearch.imaging.detection import clear_score
from facesearch.people import grouping as G

DIM = 128
E = np.eye(DIM, dtype=np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def person(direction: np.ndarray, noise_axes: range, spread: float = 0.436) -> list[np.ndarray]:
    """Faces around ``direction``, each off it along its own axis: cosine ~0.9 to the
    direction, ~0.81 (distance 0.19) to each other."""
    return [unit(0.9 * direction + spread * E[k]) for k in noise_axes]


def lib(*groups: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    x = np.stack([f for g in groups for f in g])
    return x, [f"photo{i}" for i in range(len(x))]


# A waiting face at cosine 0.47 to e0: within reach (0.55) of person P's mean direction,
# beyond the average rule (mean distance to P's faces ~0.58 > 0.55) and beyond attach (0.5).
WAITING = unit(0.47 * E[0] + 0.883 * E[1])


def test_a_waiting_face_joins_its_one_clear_candidate():
    x, photos = lib(person(E[0], range(10, 14)), [WAITING])
    assert 1 - WAITING @ unit(x[:4].sum(0)) <= G.DEFAULT.reach
    assert 1 - WAITING @ unit(x[:4].sum(0)) > G.DEFAULT.attach
    labels = G.group(x, photos)
    assert len(set(labels[:4])) == 1 and labels[0] >= 0
    assert labels[4] == labels[0]
    # The same without the last step's rule: the face waits.
    strict = G.group(x, photos, params=G.Params(reach=G.DEFAULT.attach))
    assert strict[4] == -1


def test_a_waiting_face_between_two_people_waits():
    # A rival person Q whose mean direction is within the margin of P's for this face.
    q = unit(0.40 * E[1] + 0.917 * E[2])
    x, photos = lib(person(E[0], range(10, 14)), person(q, range(20, 24)), [WAITING])
    labels = G.group(x, photos)
    assert labels[0] >= 0 and labels[4] >= 0 and labels[0] != labels[4]
    assert labels[8] == -1


def test_new_faces_join_with_the_last_step_without_moving_anyone():
    x, photos = lib(person(E[0], range(10, 14)), person(E[3], range(20, 24)), [WAITING])
    old = G.group(x[:8], photos[:8])
    labels = G.place(x, photos, np.ones(9, bool), np.concatenate([old, [-1]]), np.array([8]))
    assert (labels[:8] == old).all()
    assert labels[8] == old[0]


def test_faces_that_fail_the_gate_never_found_a_person_but_join_one():
    junk = person(E[5], range(30, 36), spread=0.2)  # six nearly identical faces
    x, photos = lib(junk)
    assert (G.group(x, photos, ok=np.zeros(6, bool)) == -1).all()
    assert len(set(G.group(x, photos, ok=np.ones(6, bool)))) == 1
    # Next to a clear person, they join it.
    good = person(E[5], range(40, 44))
    x, photos = lib(good, junk)
    labels = G.group(x, photos, ok=np.array([True] * 4 + [False] * 6))
    assert (labels == labels[0]).all() and labels[0] >= 0


def test_two_faces_of_one_photo_never_share_a_person():
    faces = person(E[0], range(10, 16))
    x = np.stack(faces)
    photos = ["a", "a", "b", "c", "d", "e"]
    labels = G.group(x, photos)
    assert labels[0] != labels[1]
    assert labels[2] >= 0


def test_decisions_hold_in_the_grouping():
    x, photos = lib(person(E[0], range(10, 14)), [WAITING])
    init = np.array([7, 7, -1, -1, -1])
    # Face 2 was taken out of person 7: it never returns there, even though it is close.
    labels = G.group(x, photos, init=init, forbid={(2, 7)})
    assert labels[0] == labels[1] == 7
    assert labels[2] != 7
    assert labels[3] == 7


def test_the_detectors_clear_score_is_data():
    assert clear_score("yunet") == pytest.approx(0.89)
    assert clear_score("dlib") is None  # not measured: no gate
    with pytest.raises(UnknownDetectorError) as e:
        clear_score("nope")
    assert "yunet" in str(e.value)

