"""One answer per face, whichever way the face comes in.

The same photos and video frames go through every way into a search: an upload and a
camera snapshot on the Match page (AppTest, the page's own widgets), the live webcam's frame callback (the
real ``LiveRecognizer``, several frames of the same picture, its tracked verdicts), the
CLI's ``match --json`` (a real process), and open-set evaluation's search (its probe
search over the same gallery's vectors). Each must find the same faces and give them
the same identities and verdicts. A camera snapshot (the page's camera widget, a JPEG)
is checked on the JPEG photos.

The gallery: photos/people (Obama, Biden) and 10 CelebA identities; the photos: the group
photo with Obama, Biden and a girl who is nobody in the gallery, the same photo as a
640x480 webcam frame (letterboxed, PNG so every way gets the same pixels) and a CelebA
probe.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA, ROOT, celeba_split

sys.path.insert(0, str(ROOT))  # the pages and the webcam import the top-level ``components``

pytestmark = pytest.mark.slow


def _letterbox(rgb: np.ndarray, size=(640, 480)) -> np.ndarray:
    """``rgb`` ``(h, w, 3)`` scaled into a ``size`` (w, h) black frame, as a camera frames it."""
    import cv2

    W, H = size
    h, w = rgb.shape[:2]
    s = min(W / w, H / h)
    nw, nh = int(w * s), int(h * s)
    out = np.zeros((H, W, 3), np.uint8)
    x0, y0 = (W - nw) // 2, (H - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(settings, {name: (bytes, rgb)}) over a gallery built here, in its own data folder
    and empty cache: every photo is detected and embedded in this module. Its database is
    served by a real ``chroma run``, so the CLI's process reads the same gallery."""
    from facesearch.imaging.decode import load_image
    from facesearch.ingest.run import ingest
    from facesearch.settings import Settings
    from store.server import start_server

    home = tmp_path_factory.mktemp("one_answer") / "home"
    s = Settings(home=home)
    with start_server(s):
        gallery, probes = celeba_split(n_identities=10, n_gallery=3, n_probe=1)
        assert not ingest(DATA / "celeba", items=gallery, settings=s).failed
        assert not ingest(DATA / "photos/people", settings=s).failed
        group = (DATA / "photos/group/obama_and_biden.jpg").read_bytes()
        frame = _letterbox(load_image(group).rgb)
        photos = {"group.jpg": group, "frame.png": _png(frame), "probe.jpg": probes[0].path.read_bytes()}
        yield s, {name: (data, load_image(data, name).rgb) for name, data in photos.items()}


def _answers_of(result) -> list[tuple[tuple, str | None, str]]:
    """(box, the identity it is named as (None unless a match), verdict) per face."""
    return [(tuple(int(v) for v in fm.face.face.box), fm.best.identity if fm.verdict == "match" else None,
             fm.verdict) for fm in result.faces]


def _page_answers(at) -> list[tuple[str | None, str]]:
    """(the identity a face is named as (None unless a match), its verdict) per face block,
    as the Match page writes them."""
    from components.text import BEST_MATCH, md_unescape

    shown = BEST_MATCH.findall("\n".join(m.value for m in at.markdown))
    return [(md_unescape(i) if v == "match" else None, v) for i, _, v in shown]


def test_every_way_in_gives_the_same_answer(world, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from components.webcam import LiveRecognizer
    from facesearch.embedding.pipeline import get_pipeline
    from facesearch.evaluation.openset import search_probes
    from facesearch.search.identify import match, open_gallery
    from facesearch.search.verdicts import search_rule
    from store import ArrayGallery

    s, photos = world
    pipe = get_pipeline(settings=s)
    gallery = open_gallery(pipe)
    stored = gallery.get(embeddings=True)
    index = ArrayGallery(stored["embeddings"], [m["identity"] for m in stored["metadatas"]], stored["ids"])
    # The page and the CLI read the data folder from the environment, as `make run` sets it.
    monkeypatch.setenv("FACESEARCH_HOME", str(s.home))
    monkeypatch.delenv("FACESEARCH_CACHE", raising=False)
    env = dict(os.environ)
    seen_verdicts = set()
    for name, (data, rgb) in photos.items():
        # The reference: the core's search of the upload's bytes.
        ref = match(data, name, settings=s, gallery=gallery, remember=False)
        want = _answers_of(ref)
        assert want, name
        seen_verdicts |= {v for _, _, v in want}

        # Upload on the Match page: the page shows each face's best identity and verdict.
        at = AppTest.from_file(str(ROOT / "pages" / "1_Match.py"), default_timeout=180)
        at.run(timeout=180)
        at.file_uploader(key="match_upload").set_value([(name, data, "image/png")])
        at.run(timeout=180)
        assert not at.exception, [e.value for e in at.exception]
        assert _page_answers(at) == [(i, v) for _, i, v in want], name

        # A camera snapshot (a JPEG, as the browser sends it) on the same page.
        if name.endswith(".jpg"):
            at.radio(key="match_mode").set_value("Camera snapshot")
            at.run(timeout=180)
            at.camera_input(key="match_camera").set_value((name, data, "image/jpeg"))
            at.run(timeout=180)
            assert not at.exception, [e.value for e in at.exception]
            assert _page_answers(at) == [(i, v) for _, i, v in want], name

        # The live webcam: the same picture as several frames; each box's tracked verdict.
        rec = LiveRecognizer(pipe, gallery, k=s.top_k)
        for _ in range(4):
            live = rec.recognise(rgb)
        assert live.error is None, live.error
        assert [(f.box, f.identity, f.verdict) for f in live.faces] == want, name

        # The CLI, a real process on the same data folder.
        path = tmp_path / name
        path.write_bytes(data)
        out = subprocess.run([sys.executable, "-m", "facesearch", "match", str(path), "--json"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        cli = [(tuple(f["box"]), f["best"] if f["verdict"] == "match" else None, f["verdict"])
               for f in json.loads(out.stdout)]
        assert cli == want, name

        # Open-set evaluation's search, over the same gallery's vectors, by the same rule.
        rule = search_rule(pipe.model.name, s, index.count())
        ev = search_probes(index, ref.analysis.embeddings, rule, hits=3 * s.top_k)
        for fm, got in zip(ev, ref.faces):
            fm.face.quality = got.face.quality  # evaluation keeps vectors; the gate is the photo's
        assert [(fm.best.identity if fm.verdict == "match" else None, fm.verdict) for fm in ev] == \
               [(i, v) for _, i, v in want], name
    assert {"match", "no match"} <= seen_verdicts, seen_verdicts


def test_the_girl_is_never_named_and_the_men_are(world):
    """The group photo's three faces: Obama and Biden are matches (named), the girl is
    not named, on the upload and on every pass of the webcam over the frame."""
    from components.webcam import LiveRecognizer
    from facesearch.embedding.pipeline import get_pipeline
    from facesearch.search.identify import match, open_gallery

    s, photos = world
    pipe = get_pipeline(settings=s)
    gallery = open_gallery(pipe)
    up = match(photos["group.jpg"][0], "group.jpg", settings=s, gallery=gallery, remember=False)
    assert sorted(i for _, i, _ in _answers_of(up) if i) == ["biden", "obama"]
    rec = LiveRecognizer(pipe, gallery, k=s.top_k)
    named = []
    for _ in range(5):
        named.append(sorted(f.identity for f in rec.recognise(photos["frame.png"][1]).faces if f.identity))
    # The first pass names nobody (one frame is not agreement), later passes both men.
    assert named[0] == [] and all(n == ["biden", "obama"] for n in named[1:]), named
