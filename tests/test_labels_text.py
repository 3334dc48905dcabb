"""Labels are data (issue 17): the Markdown and plotly escaping of components/text.py, and
the refusal of labels with invisible format characters in the dashboard's enroll form."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import DATA, ROOT

sys.path.insert(0, str(ROOT))
from components.text import HIDDEN_PATH, html_text, md_escape, md_unescape, without_paths  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HOSTILE = ["Jane` ![p](http://127.0.0.1:28999/pixel.png) `Doe", "[x](https://evil.example/)",
           ":red[**FAKE VERDICT: match**]", '<a href="https://evil.example/">x</a>', "$x^2$ :smile: www.evil.example",
           "O'Brien", "7201", "王小明", "a\\*b", "# heading", "- item", "1. item", "&lt;b&gt;"]


@pytest.mark.parametrize("label", HOSTILE)
def test_md_escape_leaves_no_markdown(label):
    out = md_escape(label)
    assert md_unescape(out) == label
    # Every ASCII punctuation is escaped: no link, image, emphasis, directive, tag or entity
    # can start (CommonMark treats a backslashed punctuation character as itself).
    i = 0
    while i < len(out):
        if out[i] == "\\":
            i += 2
            continue
        assert out[i].isalnum() or out[i] in " \u3000" or ord(out[i]) > 127, (label, out, i)
        i += 1


def test_messages_lose_server_paths():
    msg = ("VGG-Face: weights file 'vgg.h5' is missing and could not be downloaded. Put it in "
           "/srv/fs/data/models/.deepface/weights (see ~/notes/x and ../up/here; data/models/.deepface/weights)")
    out = without_paths(msg, "/srv/fs/data")
    assert "VGG-Face" in out and "vgg.h5" in out and HIDDEN_PATH in out
    for part in ("/srv", "deepface", "~/notes", "../up", "data/models"):
        assert part not in out, (part, out)
    assert without_paths("No face found in photo.jpg (sface / yunet)") == "No face found in photo.jpg (sface / yunet)"


def test_explore_map_escapes_labels_for_plotly():
    from components.explore_view import scatter

    labels = ['<a href="https://evil.example/">x</a>', "<b>bold</b>"]
    mds = [{"identity": labels[0], "path": "/p/<img src=x>.jpg"}, {"identity": labels[1], "path": "/p/2.jpg"}]
    fig = scatter(np.zeros((2, 2)), labels, mds, ["a", "b"], "t")
    assert sorted(t.name for t in fig.data) == sorted(html_text(g) for g in labels)
    for t in fig.data:
        assert "<a" not in t.name and "<b>" not in t.name
        assert "customdata[3]" in t.hovertemplate and "customdata[1]" not in t.hovertemplate
        for row in t.customdata:
            assert "<" not in row[3] + row[4] and row[1] in labels  # raw for the selection, escaped for hover


@pytest.mark.parametrize("name", ["ob\u200bama", "Ann\u00adSmith", "\ufeffobama", "Ann\u200fSmith"])
def test_enroll_refuses_a_name_with_an_invisible_character(name, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESEARCH_ADMIN_PASSWORD", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.text_input(key="enroll_name").set_value(name)
    photos = sorted((DATA / "photos/people/obama").iterdir())[:1]
    at.file_uploader(key="enroll_files").set_value([(p.name, p.read_bytes(), "image/jpeg") for p in photos])
    at.button(key="enroll_go").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [md_unescape(e.value) for e in at.error]
    assert any("invisible format character" in e for e in errors), errors
    assert "ingest_job" not in at.session_state and not (tmp_path / "home" / "uploads" / "enroll").exists()
