"""Detectors on the real group photos (counts from the data README)."""

import pytest

from conftest import DATA

from facesearch.detection import DETECTORS, detector_status, get_detector
from facesearch.errors import UnknownDetectorError
from facesearch.images import load_image

GROUP = {"couple.jpg": 2, "two_people.jpg": 2, "kit_with_rose.jpg": 2, "obama_and_biden.jpg": 3}


@pytest.mark.parametrize("name", sorted(GROUP))
def test_mtcnn_finds_every_face(data_dir, name):
    faces = get_detector("mtcnn").detect(load_image(data_dir / "photos/group" / name).rgb)
    assert len(faces) == GROUP[name]
    for f in faces:
        assert {"left_eye", "right_eye", "nose"} <= set(f.landmarks)
        assert 0 < f.confidence <= 1
        # The subject's left eye is on the image's right.
        assert f.landmarks["left_eye"][0] > f.landmarks["right_eye"][0]


def test_selfie_at_least_five_of_seven(data_dir):
    faces = get_detector("mtcnn").detect(load_image(data_dir / "photos/group/selfie-many-people.jpg").rgb)
    assert 5 <= len(faces) <= 7
    # Largest face first.
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)


def test_dlib_detector_offline(data_dir):
    faces = get_detector("dlib").detect(load_image(data_dir / "photos/group/obama_and_biden.jpg").rgb)
    assert len(faces) == 3
    assert all("left_eye" in f.landmarks for f in faces)


def test_unknown_detector_lists_valid():
    with pytest.raises(UnknownDetectorError) as e:
        get_detector("nope")
    assert "yunet" in str(e.value) and "mtcnn" in str(e.value) and "dlib" in str(e.value)


def test_offline_detectors_report_ready():
    assert detector_status("yunet")[0] and detector_status("mtcnn")[0] and detector_status("dlib")[0]
    assert set(DETECTORS) >= {"yunet", "mtcnn", "dlib", "retinaface", "opencv"}


@pytest.mark.timeout(300)
def test_yunet_does_not_leak_memory_per_photo():
    """yuface's wrapper lost ~40 KB per call (its result buffer), ~350 MB per ingest
    worker over 4,000 photos; the detector calls libfacedetection with its own buffer."""
    import subprocess
    import sys

    code = r"""
import resource, numpy as np
from PIL import Image
from facesearch.detection import get_detector
from facesearch.settings import Settings
d = get_detector("yunet", Settings())
rgb = np.asarray(Image.open(%r).convert("RGB"))
for _ in range(50):
    d.detect(rgb)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(800):
    assert d.detect(rgb)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""" % str(DATA / "photos/people/biden" / sorted(p.name for p in (DATA / "photos/people/biden").iterdir())[0])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    grown_mb = int(r.stdout.strip().splitlines()[-1])
    assert grown_mb < 10, f"RSS grew {grown_mb} MB over 800 detections"
