"""Open-set identification (facesearch.evaluation.openset, ``facesearch evaluate --open-set``, the
Evaluate page's open-set box).

The unit tests use synthetic embeddings whose answer is known; the slow ones embed real
CelebA photos with sface in their own empty data folder (nothing from the session cache).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys

import numpy as np
import pytest

from conftest import DATA, ROOT

sys.path.insert(0, str(ROOT))

# Before anything loads a model: see tests/test_evaluate.py (pylibsrtp vs TensorFlow).
import components.common  # noqa: E402,F401
from facesearch.evaluation import openset as OS  # noqa: E402
from facesearch.errors import ConfigError, DatasetError  # noqa: E402

CELEBA_IDS = 16  # identities of the real run: 8 enrolled, 8 not (~330 photos)


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clusters(n_ids: int, per: int, dim: int = 64, noise: float = 0.05, seed: int = 0):
    """``n_ids`` well separated identities (random directions in ``dim`` dimensions),
    ``per`` photos each: (embeddings (n_ids*per, dim), identities)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n_ids, dim)))
    x = _unit(np.repeat(centres, per, axis=0) + noise * rng.normal(size=(n_ids * per, dim)) / math.sqrt(dim))
    return x, [f"id{i:03d}" for i in range(n_ids) for _ in range(per)]


# --------------------------------------------------------------------------- split


def test_split_is_seeded_disjoint_and_respects_k():
    counts = {"a": 1, "b": 2, "c": 3, "d": 5, "e": 1, "f": 4, "g": 2, "h": 6, "i": 3, "j": 1}
    ids = [k for k, n in counts.items() for _ in range(n)]
    for k in (1, 2, 3):
        sp = OS.split_identities(ids, enroll=k, seed=7)
        again = OS.split_identities(ids, enroll=k, seed=7)
        assert all(np.array_equal(getattr(sp, f), getattr(again, f)) for f in ("gallery", "mated", "nonmated"))
        assert sp.enrolled == again.enrolled
        g, m, n = set(sp.gallery.tolist()), set(sp.mated.tolist()), set(sp.nonmated.tolist())
        assert not (g & m) and not (g & n) and not (m & n), "disjoint"
        assert g | m | n == set(range(len(ids))), "every photo is used"
        eligible = [i for i, c in counts.items() if c >= k + 1]
        assert sp.n_eligible == len(eligible)
        assert len(sp.enrolled) == (len(eligible) + 1) // 2
        assert set(sp.enrolled) <= set(eligible), "only identities with K+1 photos are enrolled"
        assert set(sp.enrolled).isdisjoint(sp.not_enrolled)
        assert set(sp.enrolled) | set(sp.not_enrolled) == set(counts)
        for ident in sp.enrolled:
            assert sum(ids[i] == ident for i in g) == k, "K gallery photos per enrolled identity"
            assert sum(ids[i] == ident for i in m) == counts[ident] - k
        assert {ids[i] for i in m} <= set(sp.enrolled), "mated probes are enrolled people"
        assert {ids[i] for i in n} == set(sp.not_enrolled), "non-mated: every photo of the others"
    # Another seed gives another split (of the same sizes).
    splits = {tuple(OS.split_identities(ids, 1, s).enrolled) for s in range(10)}
    assert len(splits) > 1
    with pytest.raises(ConfigError):
        OS.split_identities(ids, enroll=0)


def test_split_does_not_depend_on_identity_spelling_order():
    ids = [f"p{i % 9}" for i in range(45)]
    a = OS.split_identities(ids, 1, 3)
    b = OS.split_identities(list(ids), 1, 3)
    assert a.enrolled == b.enrolled and np.array_equal(a.gallery, b.gallery)


# --------------------------------------------------------------------------- metrics


def test_separated_clusters_give_no_errors():
    x, ids = _clusters(30, 4, noise=0.05)
    # Within an identity the distance is ~0.001, between identities ~1: any threshold in
    # between separates them perfectly.
    r = OS.score_open_set(x, ids, enroll=1, seed=0, threshold=0.5)
    assert r.gallery_identities == 15 and r.gallery_faces == 15 and r.nonenrolled_identities == 15
    assert r.n_mated == 15 * 3 and r.n_nonmated == 15 * 4
    assert r.fpir == 0.0 and r.fnir == 0.0
    assert r.rank1 == 1.0 and r.rank5 == 1.0
    assert r.fnir_at_fpir["1pct"]["fnir"] == 0.0 and r.fnir_at_fpir["01pct"]["fnir"] == 0.0
    assert r.predicted_fpir is None  # no calibration given
    # A threshold below every genuine distance misses everyone, one above every impostor
    # distance calls every stranger a match.
    assert r.at(0.0) == (0.0, 1.0)
    assert r.at(2.0) == (1.0, 0.0)
    det = r.det
    assert np.all(np.diff(det["fpir"]) >= 0) and np.all(np.diff(det["fnir"]) <= 0)
    assert det["fpir"][0] == 0.0 and det["fnir"][-1] == 0.0


def test_impostor_close_and_wrong_identity():
    """Hand-built search: a stranger almost on an enrolled face, and a mated probe whose
    nearest gallery face is somebody else's (a miss even though it is within the threshold)."""
    e = np.eye(4)
    gallery = np.stack([e[0], e[1], e[2]])
    gids = ["A", "C", "D"]
    a_probe = _unit(e[0] + 0.05 * e[3])  # A, distance ~0.0012 to A
    c_probe = _unit(0.6 * e[1] + 0.8 * e[2])  # C, but nearer D (0.2) than C (0.4)
    b = _unit(e[0] + 0.2 * e[3])  # stranger, ~0.019 from A
    far = _unit(e[3])  # stranger, 1.0 from everyone
    sc = OS.search(gallery, gids, np.stack([a_probe, c_probe]), ["A", "C"], np.stack([b, far]))
    assert sc.mated_rank.tolist() == [1, 2]
    assert sc.mated_distance[1] == pytest.approx(0.2)
    assert sc.nonmated_distance == pytest.approx([1 - 1 / math.sqrt(1.04), 1.0])
    assert OS.fpir_at(sc, 0.1) == 0.5  # the look-alike is called a match
    assert OS.fnir_at(sc, 0.1) == 0.5  # C is missed: wrong identity, though 0.2 > 0.1 anyway
    assert OS.fnir_at(sc, 0.5) == 0.5  # within the threshold, still the wrong identity
    assert OS.fnir_at(sc, 0.0) == 1.0
    assert sc.rank(1) == 0.5 and sc.rank(5) == 1.0
    # With 2 strangers, FPIR 1% allows none: the threshold sits just below the look-alike.
    p = OS.fnir_at_fpir(sc, 0.01)
    assert p["fpir"] == 0.0 and not p["resolved"]
    assert p["threshold"] < sc.nonmated_distance[0]
    assert p["fnir"] == 0.5  # A is still found (0.0012 < 0.019)
    # An identity in the gallery several times ranks by its nearest face (Match page).
    sc2 = OS.search(np.stack([e[1], e[0], _unit(e[0] + e[1])]), ["X", "A", "X"], a_probe[None], ["A"], far[None])
    assert sc2.mated_rank.tolist() == [1]


def test_matches_a_brute_force_search():
    """Rates against a plain loop over every probe and gallery face, with several faces
    per identity (K=2) and overlapping identities."""
    x, ids = _clusters(24, 5, dim=8, noise=2.5, seed=3)  # heavy noise: many errors
    r = OS.score_open_set(x, ids, enroll=2, seed=5, threshold=0.35)
    sp = OS.split_identities(ids, 2, 5)
    g = x[sp.gallery]
    gid = [ids[i] for i in sp.gallery]

    def nearest(v):
        d = 1.0 - g @ v
        j = int(np.argmin(d))
        return gid[j], max(float(d[j]), 0.0)

    mated = [(ids[i], *nearest(x[i])) for i in sp.mated]
    nonmated = [nearest(x[i])[1] for i in sp.nonmated]
    t = 0.35
    assert r.fpir == pytest.approx(np.mean([d <= t for d in nonmated]))
    assert r.fnir == pytest.approx(np.mean([not (who == me and d <= t) for me, who, d in mated]))
    assert r.rank1 == pytest.approx(np.mean([who == me for me, who, _ in mated]))
    assert 0 < r.fnir < 1 and 0 < r.fpir < 1
    for key, target in OS.FPIR_TARGETS.items():
        p = r.fnir_at_fpir[key]
        assert p["fpir"] <= target
        # The largest such threshold: the next non-mated distance would exceed the target.
        nxt = min(d for d in nonmated if d > p["threshold"])
        assert np.mean([d <= nxt for d in nonmated]) > target
        assert p["fnir"] == pytest.approx(np.mean([not (who == me and d <= p["threshold"]) for me, who, d in mated]))


def test_needs_someone_enrolled_and_someone_not():
    x, ids = _clusters(3, 1)
    with pytest.raises(DatasetError, match="enrol"):
        OS.score_open_set(x, ids, threshold=0.5)  # one photo each: nobody can be enrolled
    x, ids = _clusters(1, 3)
    with pytest.raises(DatasetError, match="non-mated"):
        OS.score_open_set(x, ids, threshold=0.5)  # one person: enrolled, nobody left out


# --------------------------------------------------------------------------- FPIR against gallery size


def test_fpir_grows_with_gallery_size_as_the_independence_model_predicts():
    """Independent random faces: every comparison is an independent impostor draw, so
    FPIR(N) = 1 - (1 - FMR(t))^N must hold, with FMR from the data or from a calibration
    fitted on other draws of the same distribution."""
    from facesearch.search.calibration import fit, impostor_distances

    rng = np.random.default_rng(0)
    dim = 16
    n_pairs_ids, n_single = 128, 2000
    x = _unit(rng.normal(size=(2 * n_pairs_ids + n_single, dim)))
    ids = [f"p{i // 2}" for i in range(2 * n_pairs_ids)] + [f"s{i}" for i in range(n_single)]
    other = _unit(rng.normal(size=(1500, dim)))
    cal = fit("synthetic", "k", "d", "random", impostor_distances(other, [str(i) for i in range(1500)]), 1500)
    t = cal.threshold_for_fmr(0.002)
    r = OS.score_open_set(x, ids, enroll=1, seed=1, threshold=t, calibration=cal, verify_threshold=t * 1.05)
    assert r.gallery_identities == 64 and r.n_nonmated == 64 * 2 + n_single
    assert r.predicted_fpir == pytest.approx(cal.fpir(t, 64))
    rows = [row for row in r.fpir_vs_size if row["threshold_name"] == "search"]
    sizes = [row["identities"] for row in rows]
    assert sizes[0] == 1 and sizes[-1] == 64 and sizes == sorted(sizes)
    assert rows[-1]["subsets"] == 1 and rows[0]["subsets"] == OS.SIZE_REPEATS
    meas = np.array([row["measured_fpir"] for row in rows])
    assert np.all(np.diff(meas) >= 0), "nested galleries: FPIR can only grow"
    assert meas[-1] > 5 * meas[0] > 0
    assert meas[-1] == pytest.approx(r.fpir)
    n = r.n_nonmated
    for row in rows:
        for key in ("predicted_fpir_data", "predicted_fpir_calibration"):
            p = row[key]
            # Binomial noise of the measured rate (the small sizes average 50 subsets,
            # but they share probes), plus a little for the FMR estimate itself.
            sigma = math.sqrt(p * (1 - p) / n)
            assert abs(row["measured_fpir"] - p) <= 4 * sigma + 0.15 * p, (row, key)
    # The verify threshold is a little looser: a little more FPIR at every size.
    ver = [row["measured_fpir"] for row in r.fpir_vs_size if row["threshold_name"] == "verify"]
    assert len(ver) == len(rows) and all(v >= m for v, m in zip(ver, meas))


def test_per_size_threshold_keeps_the_target():
    """A threshold that follows the gallery size (the Match page's) holds FPIR near its
    target at every size, where a fixed one lets it grow."""
    from facesearch.search.calibration import fit, impostor_distances

    rng = np.random.default_rng(1)
    dim = 16
    x = _unit(rng.normal(size=(2 * 100 + 3000, dim)))
    ids = [f"p{i // 2}" for i in range(200)] + [f"s{i}" for i in range(3000)]
    other = _unit(rng.normal(size=(1500, dim)))
    cal = fit("synthetic", "k", "d", "random", impostor_distances(other, [str(i) for i in range(1500)]), 1500)
    r = OS.score_open_set(x, ids, threshold=lambda n: cal.threshold_for_fpir(0.05, n), calibration=cal)
    rows = [row for row in r.fpir_vs_size if row["threshold_name"] == "search_at_size"]
    assert [row["identities"] for row in rows][-1] == 50
    thr = [row["threshold"] for row in rows]
    assert all(a > b for a, b in zip(thr, thr[1:])), "the threshold tightens as the gallery grows"
    for row in rows:
        assert row["predicted_fpir_calibration"] == pytest.approx(0.05, rel=0.05)
        assert row["measured_fpir"] == pytest.approx(0.05, abs=0.02)


# --------------------------------------------------------------------------- real photos


@pytest.fixture(scope="module")
def celeba_run(tmp_path_factory):
    """One CLI run on a 16-identity CelebA subset with sface, in an empty data folder."""
    from facesearch.cli import main as cli

    tmp = tmp_path_factory.mktemp("openset")
    prefix = tmp / "os"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["evaluate", "--dataset", "folder", str(DATA / "celeba"), "--open-set", "--models", "sface",
                       "--max-identities", str(CELEBA_IDS), "--home", str(tmp / "home"), "--out", str(prefix),
                       "--quiet"])
    data = json.loads(prefix.with_name("os.json").read_text()) if rc == 0 else None
    return rc, buf.getvalue(), data, tmp


@pytest.mark.slow
def test_cli_open_set_celeba(celeba_run):
    from facesearch.settings import Settings
    from facesearch.search.verdicts import get_threshold

    rc, out, data, tmp = celeba_run
    assert rc == 0, out
    assert "FNIR@FPIR1%" in out and "rank1" in out and "FPIR against the number of enrolled identities" in out
    assert (tmp / "os.csv").is_file()
    assert data["dataset"] == "folder" and data["params"]["enroll"] == 1
    r = data["open_set"]["sface"]
    for key in ("fpir", "fnir", "fnir_at_fpir_1pct", "fnir_at_fpir_01pct", "threshold", "gallery_identities",
                "rank1", "rank5", "gallery_faces", "n_mated", "n_nonmated", "predicted_fpir", "det",
                "fpir_vs_size"):
        assert key in r, key
    assert not r["error"]
    assert r["gallery_identities"] == CELEBA_IDS // 2 == r["gallery_faces"]
    assert r["n_computed"] == r["n_images"] and r["n_cached"] == 0, "really computed, in its own data folder"
    assert r["gallery_faces"] + r["n_mated"] + r["n_nonmated"] == r["n_images"] - r["no_face"]
    # The Match page's threshold for a gallery of that many faces.
    assert r["threshold"] == pytest.approx(get_threshold("sface", Settings(home=tmp / "home"),
                                                         gallery_size=r["gallery_faces"]))
    assert r["predicted_fpir"] == pytest.approx(0.01, rel=0.05)  # the default target
    assert r["rank1"] > 0.8 and r["rank5"] >= r["rank1"]
    assert r["fnir_at_fpir_1pct"] < 0.3
    assert 0.0 <= r["fpir"] <= 0.05 and 0.0 <= r["fnir"] < 0.3
    # The DET curve holds the operating point.
    det = r["det"]
    i = int(np.searchsorted(det["threshold"], r["threshold"], side="right")) - 1
    assert det["fpir"][i] == pytest.approx(r["fpir"]) and det["fnir"][i] == pytest.approx(r["fnir"])


@pytest.mark.slow
def test_celeba_fpir_against_gallery_size(celeba_run):
    rc, out, data, _ = celeba_run
    assert rc == 0, out
    r = data["open_set"]["sface"]
    rows = r["fpir_vs_size"]
    names = {row["threshold_name"] for row in rows}
    assert {"search", "search_at_size"} <= names
    for name in names:
        sel = [row for row in rows if row["threshold_name"] == name]
        sizes = [row["identities"] for row in sel]
        assert sizes[0] == 1 and sizes[-1] == r["gallery_identities"] and sizes == sorted(set(sizes))
        assert all(row["faces"] == row["identities"] for row in sel)  # --enroll 1
        if name == "search_at_size":
            # The calibration's own threshold at each size predicts its own target.
            assert all(row["predicted_fpir_calibration"] == pytest.approx(0.01, rel=0.05) for row in sel)
            continue
        meas = [row["measured_fpir"] for row in sel]
        pc = [row["predicted_fpir_calibration"] for row in sel]
        pdt = [row["predicted_fpir_data"] for row in sel]
        # A fixed threshold: nested galleries can only gain false matches, and the model
        # predicts growth too.
        assert all(b >= a for a, b in zip(meas, meas[1:]))
        assert all(b > a for a, b in zip(pc, pc[1:])) and all(b >= a for a, b in zip(pdt, pdt[1:]))
        assert meas[-1] == pytest.approx(r["fpir"]) if name == "search" else True
        if name == "search":
            assert pc[-1] == pytest.approx(r["predicted_fpir"])
    # The full-gallery threshold is tighter than the one for a single face.
    at_size = [row["threshold"] for row in rows if row["threshold_name"] == "search_at_size"]
    assert at_size[0] > at_size[-1] == pytest.approx(r["threshold"])


def test_bad_open_set_arguments(tmp_path, capsys):
    from facesearch.cli import main as cli
    from facesearch.evaluation.identification import evaluate_open_set
    from facesearch.settings import Settings

    s = Settings(home=tmp_path / "home")
    with pytest.raises(ConfigError, match="identity dataset"):
        evaluate_open_set("fiw", None, ["sface"], s)
    with pytest.raises(ConfigError, match="enrolled"):
        evaluate_open_set("folder", None, ["sface"], s, enroll=0)
    with pytest.raises(DatasetError):
        evaluate_open_set("folder", tmp_path / "nowhere", ["sface"], s)
    assert cli.main(["evaluate", "--dataset", "folder", "--open-set", "--models", "sface", "--limit", "10",
                     "--home", str(tmp_path / "home")]) == 2
    assert "--max-identities" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_page_open_set(tmp_path, monkeypatch):
    """The page's open-set box on a 4-person folder of symlinks (its own data folder)."""
    from streamlit.testing.v1 import AppTest

    from facesearch.datasets.registry import load_images

    by_id: dict[str, list] = {}
    for im in load_images(DATA / "celeba"):
        by_id.setdefault(im.identity, []).append(im.path)
    folder = tmp_path / "people"
    for ident in sorted(by_id, key=lambda i: (-len(by_id[i]), i))[:4]:
        (folder / ident).mkdir(parents=True)
        for p in by_id[ident][:4]:
            (folder / ident / p.name).symlink_to(p)
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESEARCH_CACHE", raising=False)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Evaluate.py"), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="eval_dataset").set_value("folder")
    at.run()
    at.text_input(key="eval_path_folder").set_value(str(folder))
    at.checkbox(key="eval_open_set").check()
    at.multiselect(key="eval_models").set_value(["sface"])
    at.run()
    at.button(key="run_eval").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["model"]) == ["sface"] and table.loc[0, "gallery_identities"] == 2
    assert len(at.get("plotly_chart")) == 2, "DET curve and FPIR against gallery size"
    # Moving the threshold slider re-renders from the stored result.
    slider = at.slider(key="eval_os_thr_sface")
    slider.set_value(slider.max)
    at.run()
    assert not at.exception
    assert any(m.value == "100.00%" for m in at.metric), "every stranger is a match at the largest distance"

    # An error is a message, not a traceback.
    at.text_input(key="eval_path_folder").set_value(str(tmp_path / "nowhere"))
    at.button(key="run_eval").click()
    at.run()
    assert not at.exception
    assert at.error and "no such file" in at.error[0].value
