"""Model comparison (facesearch.evaluation.pairs, ``facesearch evaluate``, the Evaluate page).

Small slices only: LFW 60 pairs, FIW 8 pairs per task with 2 photos per member. The
module has its own data folder with an empty embedding cache (``eval_home``): the first
LFW run and the FIW run detect and embed every photo they score, and say so. The limited
pair sets are prefixes of one seeded permutation, so the later, smaller runs (a second
run, --apply, the page, the kinship check) are served from what those two computed:
they test what is done with the vectors, not the embedding.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))

# Before anything loads TensorFlow: components.common imports pylibsrtp, which segfaults
# when first imported after TensorFlow (see there), and the page test imports it.
import components.common  # noqa: E402,F401
from facesearch.cli import main as cli
from facesearch.evaluation import metrics  # noqa: E402
from facesearch.evaluation.pairs import _limit_indices, _limit_matched, evaluate  # noqa: E402

LFW_LIMIT = 60


@pytest.fixture(scope="module")
def eval_home(tmp_path_factory):
    """This module's data folder; its embedding cache starts empty."""
    from facesearch.settings import Settings

    home = tmp_path_factory.mktemp("evalhome")
    assert not Settings(home=home).cache_path.exists()
    return home


@pytest.fixture(scope="module")
def eval_settings(eval_home):
    from facesearch.settings import Settings

    return Settings(home=eval_home)


def _cli(*args) -> tuple[int, str]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(list(args))
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def lfw_out(tmp_path_factory, eval_home):
    """The CLI run every LFW test reads: (rc, stdout, parsed JSON, output prefix)."""
    prefix = tmp_path_factory.mktemp("eval") / "lfw"
    rc, out = _cli("evaluate", "--dataset", "lfw", "--models", "dlib", "--limit", str(LFW_LIMIT),
                   "--out", str(prefix), "--quiet", "--home", str(eval_home))
    return rc, out, json.loads(prefix.with_name("lfw.json").read_text()), prefix


@pytest.fixture(scope="module")
def fiw_out(tmp_path_factory, eval_home):
    """The FIW CLI run, both tasks, with dlib's HOG detector, which finds no face in two of
    these crops (YuNet finds one in all of them), so the whole-crop fallback is used:
    (rc, stdout, parsed JSON)."""
    prefix = tmp_path_factory.mktemp("eval") / "fiw"
    rc, out = _cli("evaluate", "--dataset", "fiw", "--models", "dlib", "--detector", "dlib", "--limit", "8",
                   "--max-photos", "2", "--quiet", "--out", str(prefix), "--home", str(eval_home))
    return rc, out, json.loads(prefix.with_name("fiw.json").read_text()) if rc == 0 else None


def test_cli_lfw_table_and_files(lfw_out):
    rc, out, data, prefix = lfw_out
    assert rc == 0
    assert "dlib" in out and "AUC" in out and "threshold was chosen on the test pairs" in out
    assert prefix.with_name("lfw.csv").is_file() and prefix.with_name("lfw.pairs.csv").is_file()
    (r,) = data["results"]
    assert r["model"] == "dlib" and r["task"] == "verification" and not r["error"]
    assert r["n_pairs_total"] == LFW_LIMIT
    assert r["pairs"] + r["skipped_pairs"] == LFW_LIMIT
    assert len(r["scored_pairs"]) == r["pairs"] == r["pos"] + r["neg"]
    assert abs(r["pos"] - r["neg"]) <= r["skipped_pairs"]  # balanced before photos without a face
    # The module's cache was empty: every photo was detected and embedded in this run.
    assert r["n_images"] == 115 and r["computed"] == 115 and r["cached"] == 0
    # Measured: YuNet finds a face in each of these 115 LFW photos, so no pair is left out.
    assert r["n_no_face"] == 0 and r["skipped_pairs"] == 0 and r["pos"] == r["neg"] == LFW_LIMIT // 2
    assert r["ms_per_face"] > 0


def test_results_match_metrics_module(lfw_out):
    _, _, data, prefix = lfw_out
    (r,) = data["results"]
    d = np.array([p["distance"] for p in r["scored_pairs"]])
    y = np.array([p["same"] for p in r["scored_pairs"]])
    assert r["roc_auc"] == pytest.approx(metrics.roc_auc(d, y), abs=1e-9)
    assert r["ap"] == pytest.approx(metrics.average_precision(d, y), abs=1e-9)
    bf = metrics.best_f1(d, y)
    assert r["f1_threshold"] == pytest.approx(bf.threshold, abs=1e-6)
    assert r["f1"] == pytest.approx(bf.f1)
    p = metrics.threshold_for_precision(d, y, 0.95)
    assert (r["at_precision"] is None) == (p is None)
    if p:
        assert r["p_recall"] == pytest.approx(p.recall)
    assert r["lfw_acc"] == pytest.approx(metrics.kfold_accuracy(d, y, np.zeros(len(d), int))["mean"])
    # The pairs CSV carries the same distances.
    rows = prefix.with_name("lfw.pairs.csv").read_text().splitlines()[1:]
    assert len(rows) == len(d)
    assert float(rows[0].split(",")[-1]) == pytest.approx(d[0], abs=1e-6)


def test_second_run_computes_nothing(lfw_out, eval_settings):
    _, _, data, _ = lfw_out
    cmp = evaluate("lfw", None, ["dlib"], eval_settings, limit=LFW_LIMIT)
    (r,) = cmp.results
    assert cmp.n_computed == 0 and r.n_computed == 0
    assert r.n_cached == r.n_images > 0
    assert np.allclose(r.distances, [p["distance"] for p in data["results"][0]["scored_pairs"]], atol=1e-6)
    # Time per face comes from the seconds stored with the cached embeddings.
    assert r.ms_per_face == pytest.approx(data["results"][0]["ms_per_face"], rel=1e-6)


def _figures(data: dict) -> dict:
    """A comparison's JSON without what a run measures in seconds."""
    for r in data["results"]:
        r.pop("seconds", None)
        r.pop("ms_per_face", None)
    return data


def test_workers_give_the_one_process_figures(tmp_path):
    """sface on 40 LFW pairs, each way from its own empty data folder and cache: the CLI
    with two worker processes and the one-process path compute every photo and give the
    same JSON figures (every distance, threshold and rate; only the seconds differ)."""
    from facesearch.settings import Settings

    one = evaluate("lfw", None, ["sface"], Settings(home=tmp_path / "one"), limit=40, workers=1)
    prefix = tmp_path / "out" / "lfw"
    rc, out = _cli("evaluate", "--dataset", "lfw", "--models", "sface", "--limit", "40", "--workers", "2",
                   "--out", str(prefix), "--quiet", "--home", str(tmp_path / "two"))
    assert rc == 0, out
    two = json.loads(prefix.with_name("lfw.json").read_text())
    (r,) = two["results"]
    assert r["computed"] == r["n_images"] == one.results[0].n_computed > 40 and r["cached"] == 0
    assert _figures(two) == _figures(json.loads(one.to_json()))


def test_apply_previews_and_refuses_a_rate_too_few_pairs_tell(lfw_out, tmp_path, monkeypatch, eval_settings,
                                                                capsys):
    """About --apply: the vectors come from the module's cache. Its best-F1 threshold lets
    through 1 of the 30 different-person pairs: a rate anywhere from 0.6% to 17%, so it is
    shown and refused, with --yes or without. (Saving after the preview and the
    confirmation: tests/test_thresholds.py.)"""
    from facesearch.settings import Settings
    from facesearch.search.thresholds import verify_threshold

    _, _, data, _ = lfw_out
    home = tmp_path / "home"
    monkeypatch.setenv("FACESEARCH_CACHE", str(eval_settings.cache_path))
    s = Settings(home=home)
    thr = data["results"][0]["f1_threshold"]
    pairs = data["results"][0]["scored_pairs"]
    fp = sum(1 for p in pairs if not p["same"] and p["distance"] <= thr)
    argv = ["evaluate", "--dataset", "lfw", "--models", "dlib", "--limit", str(LFW_LIMIT), "--quiet",
            "--home", str(home), "--apply", "dlib"]
    for yes in ([], ["--yes"]):
        rc = cli.main(argv + yes)
        out, err = capsys.readouterr()
        assert rc == 2
        assert f"dlib verify threshold: {verify_threshold('dlib', s):.3f} today, {thr:.3f} proposed" in out
        assert "On its impostor calibration" in out and f"{fp} of 30 different-person pairs" in out
        assert err.count("\n") == 1 and "too few to know the false match rate" in err
        assert not s.thresholds_file.exists()


def test_cli_compares_the_default_model(lfw_out, eval_home, tmp_path):
    """Without --models: the default model ($FACESEARCH_MODEL or sface; embedded here, into
    the module's cache), and --model's when given (dlib, from the first LFW run's cache)."""
    from facesearch.settings import Settings

    default = Settings(home=eval_home).model
    for args, model in (((), default), (("--model", "dlib"), "dlib")):
        prefix = tmp_path / model
        rc, out = _cli("evaluate", "--dataset", "lfw", "--limit", "6", "--quiet", "--home", str(eval_home),
                       "--out", str(prefix), *args)
        assert rc == 0, out
        (r,) = json.loads(prefix.with_name(model + ".json").read_text())["results"]
        assert r["model"] == model and r["pairs"] == 6
    assert r["computed"] == 0


def test_progress_names_model_and_task(lfw_out, eval_home, eval_settings, capsys):
    """One stage per model and task, announced at 0 and counted to its photos; the CLI
    draws each as a tqdm bar named after it, with the time left. About progress: the
    vectors come from the module's cache (the runs above)."""
    import re

    default = eval_settings.model
    calls = []
    cmp = evaluate("lfw", None, ["dlib", default], eval_settings, limit=6, progress=lambda *a: calls.append(a))
    n = cmp.results[0].n_images
    assert calls == [(i, n, f"{m}, verification") for m in dict.fromkeys(["dlib", default]) for i in range(n + 1)]
    capsys.readouterr()
    rc, _ = _cli("evaluate", "--dataset", "lfw", "--models", "dlib", "--limit", "6", "--home", str(eval_home))
    assert rc == 0
    err = capsys.readouterr().err
    assert re.search(rf"dlib, verification: 100%.* {n}/{n} \[\d\d:\d\d<00:00", err), err


def test_unknown_model_lists_valid_ones(capsys):
    rc = cli.main(["evaluate", "--dataset", "lfw", "--models", "dlib,NoSuchNet", "--limit", "6", "--quiet"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "NoSuchNet" in err and "dlib" in err and "facenet-casia" in err


def test_model_without_weights_is_an_error_row(lfw_out, eval_settings, tmp_path, monkeypatch, no_network):
    """ArcFace with an empty weights folder and its download refused (no_network, on any
    machine): an error row beside dlib's result, quickly. dlib's vectors come from the
    module's cache (the first LFW run's)."""
    from facesearch.settings import Settings

    s = Settings(home=tmp_path / "home", cache_dir=eval_settings.cache_path)
    # Loading a DeepFace model points DEEPFACE_HOME at its folder; give it back afterwards.
    monkeypatch.setenv("DEEPFACE_HOME", str(s.deepface_home))
    t0 = time.perf_counter()
    cmp = evaluate("lfw", None, ["ArcFace", "dlib"], s, limit=6)
    assert time.perf_counter() - t0 < 90
    assert no_network, "DeepFace never tried to download the weights"
    arc, dl = cmp.result("ArcFace"), cmp.result("dlib")
    assert arc.error and "arcface_weights.h5" in arc.error and not arc.ok
    assert dl.ok and dl.n_computed == 0
    table = cmp.to_table()
    assert list(table["model"]) == ["ArcFace", "dlib"]
    assert table.loc[0, "error"] and not table.loc[1, "error"]
    json.loads(cmp.to_json())


def test_fiw_both_tasks_cli(fiw_out):
    rc, out, data = fiw_out
    assert rc == 0, out
    assert "by relation" in out
    by_task = {r["task"]: r for r in data["results"]}
    assert set(by_task) == {"same-person", "kinship"}
    kin = by_task["kinship"]
    assert kin["pairs"] == 8 and kin["pos"] == 4
    rel = kin["by_relation"]
    assert sum(b["pos"] for b in rel) == kin["pos"] and sum(b["neg"] for b in rel) == kin["neg"]
    # Negatives carry the relation type of the positive they were matched to.
    assert {p["kind"] for p in kin["scored_pairs"] if p["same"]} == {b["relation"] for b in rel}
    # The module's cache held no FIW photo: both tasks detected and embedded theirs here.
    same = by_task["same-person"]
    assert (same["n_images"], same["computed"], same["cached"]) == (16, 16, 0)
    assert (kin["n_images"], kin["computed"], kin["cached"]) == (27, 27, 0)
    # Measured: dlib's HOG finds no face in two of the kinship task's crops. They are
    # embedded whole, so every photo has a vector and no pair is left out.
    assert (same["n_no_face"], kin["n_no_face"]) == (0, 2)
    for r in by_task.values():
        assert r["fallback"] == r["n_no_face"] and r["skipped_pairs"] == 0
        assert r["pairs"] == r["n_pairs_total"] == 8


def test_fiw_kinship_distance_is_mean_member_embedding(fiw_out, eval_settings):
    """Every kinship pair's distance, from its members' vectors, those embedded whole
    included; the vectors come from the module's cache (the FIW CLI run's)."""
    from facesearch.datasets.fiw import fiw_members
    from facesearch.evaluation.vectors import default_path
    from facesearch.embedding.pipeline import Pipeline

    s = eval_settings.with_(detector="dlib")
    cmp = evaluate("fiw", None, ["dlib"], s, task="kinship", limit=8, max_photos_per_member=2)
    (r,) = cmp.results
    assert r.n_computed == 0 and r.n_fallback == 2  # the CLI run embedded these photos
    pipe = Pipeline("dlib", s.detector, s)
    photos = fiw_members(default_path("fiw"))

    def member(m):
        vs = []
        for p in photos[m][:2]:
            # The same single path the evaluator takes, with the whole-crop fallback.
            e = pipe.embed_file(p, whole_frame_fallback=True)
            assert e.cached
            vs.append(e.embeddings[0])
        v = np.mean(vs, axis=0)
        return v / np.linalg.norm(v)

    assert len(r.distances) == 8
    for i, d in enumerate(r.distances):
        a, b = member(r.pair_a[i]), member(r.pair_b[i])
        assert d == pytest.approx(1.0 - float(a @ b), abs=1e-5)


def test_limit_keeps_both_classes_and_nests():
    same = np.array([True] * 300 + [False] * 300)
    small, big = _limit_indices(same, 10, 0), _limit_indices(same, 60, 0)
    assert same[small].sum() == 5 and (~same[small]).sum() == 5
    assert set(small) <= set(big)
    assert list(small) == sorted(small)
    # FIW kinship: the negatives follow the relation types of the chosen positives.
    kinds = ["fs", "md", "bb"] * 200
    same = np.array([True] * 300 + [False] * 300)
    kinds = kinds[:300] + kinds[:300]
    pick = _limit_matched(same, kinds, 30, 0)
    pos = sorted(kinds[i] for i in pick if same[i])
    assert len(pos) == 15 and pos == sorted(kinds[i] for i in pick if not same[i])
    assert set(pick) <= set(_limit_matched(same, kinds, 100, 0))


def test_bad_arguments(settings):
    from facesearch.errors import ConfigError, DatasetError

    with pytest.raises(ConfigError, match="task"):
        evaluate("fiw", None, ["dlib"], settings, task="cousins", limit=4)
    with pytest.raises(ConfigError, match="dataset"):
        evaluate("imagenet", None, ["dlib"], settings)
    with pytest.raises(DatasetError):
        evaluate("lfw", "/nonexistent/lfw", ["dlib"], settings)
    with pytest.raises(ConfigError, match="precision"):
        evaluate("lfw", None, ["dlib"], settings, target_precision=1.5)


def test_evaluate_page(lfw_out, tmp_path, monkeypatch, eval_settings):
    from streamlit.testing.v1 import AppTest

    from facesearch.settings import Settings
    from facesearch.search.thresholds import DEFAULT_TARGET_FPIR, history, target_fpir, verify_threshold

    # Its own home, so "Use this threshold" does not change the session's thresholds.
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    # About the page: the vectors come from the module's cache (the first LFW run's).
    monkeypatch.setenv("FACESEARCH_CACHE", str(eval_settings.cache_path))
    s = Settings(home=tmp_path / "home")
    default = verify_threshold("dlib", s)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Evaluate.py"), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.dataframe  # nothing computed before Run

    at.selectbox(key="eval_dataset").set_value("lfw")
    at.run()
    at.number_input(key="eval_limit").set_value(LFW_LIMIT)
    at.multiselect(key="eval_models").set_value(["dlib"])
    at.button(key="run_eval").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe, "the side-by-side table is shown"
    table = at.dataframe[0].value
    assert list(table["model"]) == ["dlib"] and table.loc[0, "pairs"] == LFW_LIMIT
    negatives = sorted(p["distance"] for p in lfw_out[2]["results"][0]["scored_pairs"] if not p["same"])

    from components.text import md_unescape  # the page escapes every message it shows

    def click(key):
        at.button(key=key).click()
        at.run()
        assert not at.exception, [e.value for e in at.exception]

    # 0.07: no different-person pair lies under it, which only bounds its false match rate.
    at.slider(key="eval_thr_dlib_verification").set_value(0.07)
    at.run()
    click("use_dlib_verification")
    assert any("0.070 proposed" in md_unescape(i.value) and "On its impostor calibration" in md_unescape(i.value) for i in at.info)
    assert any("too few to know the false match rate" in md_unescape(e.value) for e in at.error)
    assert not any(b.key == "save_dlib_verification" for b in at.button)
    # 0.16: 14 or so of the 30 pairs lie under it, enough to know its (high) rate. A click
    # only previews; the preview of 0.07 went with the slider.
    at.slider(key="eval_thr_dlib_verification").set_value(0.16)
    at.run()
    assert not any("0.070 proposed" in md_unescape(i.value) for i in at.info)
    click("use_dlib_verification")
    k = sum(d <= 0.16 for d in negatives)
    assert any(f"{default:.3f} today, 0.160 proposed" in md_unescape(i.value) and f"{k} of 30 different-person pairs" in md_unescape(i.value)
               for i in at.info)
    assert not at.error and not s.thresholds_file.exists()
    click("save_dlib_verification")
    assert at.success and "0.160" in md_unescape(at.success[0].value)
    assert verify_threshold("dlib", s) == pytest.approx(0.16)
    assert any(m.label == "in use now" and m.value == "0.160" for m in at.metric)

    # The search target: the same two steps.
    at.select_slider(key="fpir_dlib").set_value(0.05)
    at.run()
    click("use_fpir_dlib")
    assert any("gallery searches: 1% of strangers called a match today, 5% proposed" in md_unescape(i.value)
               for i in at.info)
    assert target_fpir("dlib", s) == DEFAULT_TARGET_FPIR
    click("save_fpir_dlib")
    assert target_fpir("dlib", s) == 0.05 and len(history("dlib", s)) == 2

    # Restore walks back one save at a time, and goes away with the history.
    click("restore_dlib")
    assert target_fpir("dlib", s) == DEFAULT_TARGET_FPIR and verify_threshold("dlib", s) == pytest.approx(0.16)
    assert any("undone" in md_unescape(m.value) for m in at.success)
    click("restore_dlib")
    assert verify_threshold("dlib", s) == pytest.approx(default) and history("dlib", s) == []
    assert not any(b.key == "restore_dlib" for b in at.button)
