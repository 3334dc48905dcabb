"""The Evaluate page run twice, in one session and in another (Streamlit AppTest, real
widgets, sface on real CelebA photos).

Its own data folder and empty embedding cache; the dataset is a folder of symlinks to
12 CelebA photos (4 people x 3) in tmp_path. After the first runs that folder is
removed: a second Run that computed anything would have to read it again and end in
"no such file", so showing the same table proves the result was kept, not recomputed.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from conftest import DATA, ROOT

sys.path.insert(0, str(ROOT))  # the page imports the top-level ``components`` package

import components.common  # noqa: E402,F401  (before TensorFlow: see tests/test_evaluate.py)
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGE = str(ROOT / "pages" / "3_Evaluate.py")


@pytest.fixture
def people(tmp_path):
    """4 CelebA people x 3 photos as NAME/*.jpg symlinks."""
    from facesearch.datasets.registry import load_images

    by_id: dict[str, list] = {}
    for im in load_images(DATA / "celeba"):
        by_id.setdefault(im.identity, []).append(im.path)
    folder = tmp_path / "people"
    for ident in sorted(by_id, key=lambda i: (-len(by_id[i]), i))[:4]:
        (folder / ident).mkdir(parents=True)
        for p in by_id[ident][:3]:
            (folder / ident / p.name).symlink_to(p)
    return folder


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _session(folder, open_set: bool = False) -> AppTest:
    """A new session with the settings every run of this test uses, Run not yet pressed."""
    at = _run(AppTest.from_file(PAGE, default_timeout=180))
    at.selectbox(key="eval_dataset").set_value("folder")
    _run(at)
    at.text_input(key="eval_path_folder").set_value(str(folder))
    at.number_input(key="eval_limit").set_value(10)
    if open_set:
        at.checkbox(key="eval_open_set").check()
    return _run(at)


def _captions(at: AppTest) -> str:
    """The page's captions (not the sidebar's), one a line."""
    return "\n".join(c.value for c in at.main.caption)


def _colours(at: AppTest) -> list[dict[str, set]]:
    """Per chart: each trace's name up to " (", " at " or ":" (a model's, or a threshold's)
    -> its colours."""
    out = []
    for chart in at.get("plotly_chart"):
        seen: dict[str, set] = {}
        for t in json.loads(chart.proto.spec)["data"]:
            c = (t.get("line") or {}).get("color") or (t.get("marker") or {}).get("color")
            seen.setdefault(re.split(r" \(| at |:", t["name"])[0], set()).add(c)
        out.append(seen)
    return out


def _press_run(at: AppTest):
    """Run, and the tables it shows (the first is the main result)."""
    at.button(key="run_eval").click()
    _run(at)
    assert at.dataframe, "Run shows a table"
    return [d.value for d in at.dataframe]


def test_second_run_shows_the_kept_result(people, tmp_path, monkeypatch):
    from facesearch.settings import Settings

    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESEARCH_CACHE", raising=False)
    model = Settings.from_env().model

    at = _session(people)
    # The default model is compared unless the user picks others, as on the command line.
    assert at.multiselect(key="eval_models").value == [model]
    first = _press_run(at)
    table = first[0]
    assert list(table["model"]) == [model] and table.loc[0, "pairs"] == 10
    # The empty cache: every photo was embedded in this run.
    assert re.search(r"embedded for this result: [1-9]\d*; read from the embedding cache: 0\.", _captions(at))

    ats = _session(people, open_set=True)
    first_os = _press_run(ats)
    assert list(first_os[0]["model"]) == [model]

    # From here on, a computation would need the photos: they are gone.
    people.rename(tmp_path / "gone")

    again = _press_run(at)
    assert len(again) == len(first) and all(a.equals(b) for a, b in zip(again, first))
    assert at.slider(key=f"eval_thr_{model}_verification"), "the threshold panel is back too"

    other = _session(people)
    assert all(a.equals(b) for a, b in zip(_press_run(other), first))

    other_os = _session(people, open_set=True)
    assert all(a.equals(b) for a, b in zip(_press_run(other_os), first_os))
    assert _press_run(other_os)[0].equals(first_os[0])

    # Other settings are a new run: it needs the photos, and says they are missing.
    at.number_input(key="eval_limit").set_value(8)
    at.button(key="run_eval").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error and "no such file" in at.error[0].value


def test_each_model_one_colour_in_every_chart(people, tmp_path, monkeypatch):
    """Two models on the pairs (precision-recall, ROC) and the open set (DET, FPIR against
    gallery size); every caption is plain text (no Markdown characters left in it)."""
    from facesearch.settings import Settings

    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESEARCH_CACHE", raising=False)
    models = list(dict.fromkeys([Settings.from_env().model, "dlib", "sface"]))[:2]
    at = _session(people)
    at.multiselect(key="eval_models").set_value(models)
    _press_run(at)
    captions = [_captions(at)]
    charts = _colours(at)
    at.checkbox(key="eval_open_set").check()
    _press_run(at)
    captions.append(_captions(at))
    charts += _colours(at)
    assert len(charts) == 4, "precision-recall, ROC, DET, FPIR against gallery size"
    colour = {}
    for seen in charts[:3]:
        assert set(models) <= set(seen)
        for m in models:
            assert len(seen[m]) == 1, seen
            assert colour.setdefault(m, seen[m]) == seen[m], "a model keeps its colour"
    assert len({c for cs in colour.values() for c in cs}) == len(models), "each model its own colour"
    # FPIR against gallery size is the first model's: its search threshold in its colour.
    assert charts[3]["search"] == colour[models[0]]
    assert not (charts[3].keys() - {"search"}) & set(models)
    others = {c for name, cs in charts[3].items() if name != "search" for c in cs}
    assert not others & {c for cs in colour.values() for c in cs}, "other thresholds in no model's colour"
    for text in captions:
        assert text and not re.search(r"[*_`\\]", text), text
