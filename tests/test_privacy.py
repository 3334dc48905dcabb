"""Privacy (issue 10): searched photos stay off the disk, erasure leaves nothing, a gallery
exports and restores, every change is in the audit log.

"On disk" is checked the blunt way: every file under the data folder (SQLite databases,
Chroma's HNSW files, thumbnails, logs) is read as bytes and searched for the photo's
hash (hex, as face-id prefix and raw) and for the bytes of its vectors; file names are
searched too. Each test has its own data folder with the embedding cache inside it,
empty at the start, so whatever the code writes is found there.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT
from facesearch.access import ADMIN, VISITOR, cli_actor
from facesearch.settings import Settings

sys.path.insert(0, str(ROOT))  # the pages import the top-level ``components`` package

from streamlit.testing.v1 import AppTest  # noqa: E402

MATCH = str(ROOT / "pages" / "1_Match.py")
TIMEOUT = 180
VICTIM = "Zebulon_Quixote"  # a name no file would hold by chance


def _celeba(n_ids: int, photos: int, skip: int = 40) -> dict[str, list[Path]]:
    """``n_ids`` CelebA identities with ``photos`` photos each, past the ``skip`` largest
    (which other tests' galleries use)."""
    from facesearch.datasets.registry import load_images

    by_id: dict[str, list[Path]] = {}
    for im in load_images(DATA / "celeba", "celeba"):
        by_id.setdefault(im.identity, []).append(Path(im.path))
    ids = [i for i in sorted(by_id, key=lambda i: (-len(by_id[i]), i))[skip:] if len(by_id[i]) >= photos][:n_ids]
    return {i: sorted(by_id[i])[:photos] for i in ids}


def _folder(root: Path, people: dict[str, list[Path]]) -> Path:
    for ident, paths in people.items():
        (root / ident).mkdir(parents=True, exist_ok=True)
        for p in paths:
            (root / ident / p.name).symlink_to(p)
    return root


@pytest.fixture
def home(tmp_path):
    from store.gallery import close_client

    s = Settings(home=tmp_path / "home", cache_dir=tmp_path / "home" / "cache")
    yield s
    close_client(s)


def _needles_of_photo(data: bytes) -> dict[str, bytes]:
    sha = hashlib.sha1(data).hexdigest()
    return {"sha1": sha.encode(), "face id": sha[:20].encode(), "raw sha1": bytes.fromhex(sha)}


def _needles_of_vectors(tag: str, x: np.ndarray) -> dict[str, np.ndarray]:
    # 8 floats of a vector cannot turn up anywhere by chance.
    return {f"{tag} vector {i}": np.asarray(v[:8], np.float32) for i, v in enumerate(x)}


def _has_floats(data: bytes, v: np.ndarray) -> bool:
    """``v``'s floats in a row in ``data``, to within float32 rounding: Chroma's HNSW index
    stores each vector normalised again, which may change its last bits."""
    for start in range(4):
        n = (len(data) - start) // 4
        if n < len(v):
            continue
        a = np.frombuffer(data, np.float32, n, start)
        with np.errstate(invalid="ignore"):
            cand = np.flatnonzero(np.abs(a[: n - len(v) + 1] - v[0]) <= 1e-6)
        for c in cand:
            if np.allclose(a[c:c + len(v)], v, rtol=0, atol=1e-6):
                return True
    return False


def _grep(root: Path, needles: dict[str, bytes | np.ndarray]) -> dict[str, list[str]]:
    """needle name -> files under ``root`` whose bytes (or name) contain it; an array
    needle is searched for as float32 values."""
    hits: dict[str, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        data = p.read_bytes()
        rel = str(p.relative_to(root))
        for name, n in needles.items():
            found = _has_floats(data, n) if isinstance(n, np.ndarray) else n in data or n in rel.encode()
            if found:
                hits.setdefault(name, []).append(rel)
    return hits


def _unzeroed_hnsw_tails(chroma: Path) -> list[str]:
    """HNSW segment files with non-zero bytes past their last element: Chroma saves
    uninitialised memory there (freed bytes of the process, deleted faces' included)."""
    import struct

    bad = []
    for head in chroma.glob("*/header.bin"):
        _, _, max_el, cur, per_el, *_ = struct.unpack("<i6Qi I3QdQ", head.read_bytes())
        for name, width in (("data_level0.bin", per_el), ("length.bin", 4)):
            if (head.parent / name).read_bytes()[cur * width:].strip(b"\0"):
                bad.append(f"{head.parent.name}/{name}")
    return bad


# -- 1. photos searched with are not stored ----------------------------------------------------
@pytest.mark.timeout(600)
def test_match_verify_and_webcam_leave_nothing_on_disk(home, tmp_path, monkeypatch):
    from components.webcam import LiveRecognizer
    from facesearch.imaging.decode import load_image
    from facesearch.ingest.run import ingest
    from facesearch.embedding.pipeline import Pipeline
    from facesearch.search.identify import open_gallery

    s = home
    people = _celeba(4, 4)
    gallery_photos = {i: p[:2] for i, p in people.items()}
    ingest(_folder(tmp_path / "gallery", gallery_photos), "folders", settings=s)
    probes = [p[3] for p in people.values()]  # never ingested
    query, pair, frame = probes[0], (probes[1], people[list(people)[1]][2]), probes[2]

    # What those photos' faces are, computed here without any cache.
    pipe = Pipeline(s.model, s.detector, s, use_cache=False)
    needles = {}
    for p in (query, *pair, frame):
        data = p.read_bytes()
        needles.update({f"{p.name} {k}": v for k, v in _needles_of_photo(data).items()})
        needles.update(_needles_of_vectors(p.name, pipe.analyze(data, p.name, cache=False).embeddings))
    # The grep does see what is stored: a gallery photo's hash and vector are found.
    stored = gallery_photos[list(people)[0]][0]
    control = {**_needles_of_photo(stored.read_bytes()),
               **_needles_of_vectors("stored", pipe.analyze(stored.read_bytes(), cache=False).embeddings)}
    control.pop("raw sha1")  # nothing stores a binary digest; searched for in case something starts to
    assert set(_grep(s.home, control)) == set(control), _grep(s.home, control)

    # The Match page's own path: upload, then verify two photos, as a visitor would.
    monkeypatch.setenv("FACESEARCH_HOME", str(s.home))
    monkeypatch.setenv("FACESEARCH_CACHE", str(s.cache_path))
    at = AppTest.from_file(MATCH, default_timeout=TIMEOUT).run(timeout=TIMEOUT)
    at.file_uploader(key="match_upload").set_value((query.name, query.read_bytes(), "image/jpeg"))
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    from components.text import BEST_MATCH, md_unescape  # the page escapes every label

    best = [md_unescape(i) for i, _, _ in BEST_MATCH.findall("\n".join(m.value for m in at.markdown))]
    assert best and best[0] in people, best
    at.slider(key="match_k").set_value(3).run(timeout=TIMEOUT)  # a rerun searches the upload again, from memory
    assert not at.exception, [e.value for e in at.exception]
    at.radio(key="match_mode").set_value("Verify two photos").run(timeout=TIMEOUT)
    at.file_uploader(key="verify_a").set_value((pair[0].name, pair[0].read_bytes(), "image/jpeg"))
    at.file_uploader(key="verify_b").set_value((pair[1].name, pair[1].read_bytes(), "image/jpeg"))
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert [m.label for m in at.metric] == ["Distance", "Threshold", "Similarity"]

    # The live webcam's recognizer, on a frame's pixels.
    rec = LiveRecognizer(pipe, open_gallery(pipe), k=3)
    res = rec.recognise(load_image(frame.read_bytes()).rgb)
    assert res.error is None and res.faces

    # The command line's match and verify keep to the same rule.
    from facesearch.search.identify import match, verify

    assert match(str(query), settings=s).faces
    assert verify(str(pair[0]), str(pair[1]), settings=s).distance >= 0

    assert _grep(s.home, needles) == {}
    assert not (s.home / "uploads").exists()


# -- 2. right to erasure ------------------------------------------------------------------------
def _victim_gallery(s: Settings, tmp_path: Path):
    """A gallery with VICTIM (ingested from a folder and enrolled from uploads, one
    photo without a face among them), three other people, a second model's gallery
    holding VICTIM too, and enough filler faces that Chroma writes its HNSW files."""
    from PIL import Image

    from components.gallery_admin import save_enrollment
    from facesearch.ingest.run import ingest
    from store import FaceGallery

    people = _celeba(4, 5)
    ids = list(people)
    others = {i: people[i][:3] for i in ids[1:]}
    victim_folder = people[ids[0]][:3]
    enrolled = people[ids[0]][3:5]
    dataset = _folder(tmp_path / "dataset", {VICTIM: victim_folder, **others})
    rep = ingest(dataset, "folders", settings=s)
    assert rep.faces_added == 12, rep.summary()

    blank = io.BytesIO()
    Image.fromarray(np.full((120, 160, 3), 190, np.uint8)).save(blank, "JPEG")
    items = save_enrollment(VICTIM, [(p.name, p.read_bytes()) for p in enrolled] + [("blank.jpg", blank.getvalue())],
                            s.home)
    rep = ingest(items[0].path.parent, items=items, settings=s, action="enroll")
    assert rep.faces_added == 2 and len(rep.no_face) == 1, rep.summary()

    sface = FaceGallery(s.model, 128, s.detector, s)
    vids, vx, vmd = sface.all_embeddings(identities=[VICTIM])
    assert len(vids) == 5
    # The same person in another model's gallery (vectors made up: no second model to run).
    rng = np.random.default_rng(1)
    other = FaceGallery("dlib", 128, s.detector, s)
    dx = rng.normal(size=(len(vids), 128)).astype(np.float32)
    other.upsert(vids, dx, vmd)
    other.upsert(["dlib-other-0"], rng.normal(size=(1, 128)), [{"identity": ids[1]}])
    # Chroma writes its HNSW index to disk every 1,000 additions: past that, the
    # victim's vectors are in its data file, where a delete only marks them.
    fill = rng.normal(size=(1100, 128)).astype(np.float32)
    sface.upsert([f"filler{i:05d}-0" for i in range(len(fill))], fill,
                 [{"identity": f"filler{i % 40}"} for i in range(len(fill))])

    photos = victim_folder + enrolled
    shas = [hashlib.sha1(p.read_bytes()).hexdigest() for p in photos] + [hashlib.sha1(blank.getvalue()).hexdigest()]
    needles = {}
    for p in photos:
        needles.update({f"{p.name} {k}": v for k, v in _needles_of_photo(p.read_bytes()).items()})
    needles.update({f"blank {k}": v for k, v in _needles_of_photo(blank.getvalue()).items()})
    needles.update(_needles_of_vectors("sface", vx))
    needles.update(_needles_of_vectors("dlib", dx))
    needles.update({f"id {i}": i.encode() for i in vids})
    needles["name"] = VICTIM.encode()
    return dataset, needles, shas, ids


@pytest.mark.timeout(600)
@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_erasure_leaves_nothing_on_disk(home, tmp_path, server):
    """Embedded, this process writes Chroma's files; with the data folder's server (as
    ``make run`` runs it), that process does."""
    s = home
    if server:
        from store.server import start_server

        with start_server(s):
            _erase_and_check(s, tmp_path)
    else:
        _erase_and_check(s, tmp_path)


def _erase_and_check(s: Settings, tmp_path: Path) -> None:
    from facesearch.audit import read_audit
    from facesearch.ingest.run import ingest
    from facesearch.admin.privacy import erase_identity
    from store import FaceGallery

    dataset, needles, shas, ids = _victim_gallery(s, tmp_path)
    before = _grep(s.home, needles)
    # Every kind of trace is there to begin with: the test would see one left behind.
    assert set(before) == {k for k in needles if "raw sha1" not in k}, sorted(set(needles) - set(before))
    assert any("data_level0.bin" in f for k, fs in before.items() if k.startswith("sface vector") for f in fs)
    sface = FaceGallery(s.model, 128, s.detector, s)
    n_before = sface.count()

    rep = erase_identity(VICTIM, s, ADMIN)
    assert rep.faces == 10 and len(rep.galleries) == 2 and rep.uploads == 3, rep.summary()
    assert rep.not_scrubbed == [], rep.not_scrubbed
    assert "Deleted 10 faces of " + VICTIM in rep.summary()

    assert _grep(s.home, needles) == {}
    assert _unzeroed_hnsw_tails(s.chroma_path) == []
    assert not (s.home / "uploads" / "enroll" / VICTIM).exists()
    # The others are intact and searchable; the rebuilt gallery answers queries.
    sface = FaceGallery(s.model, 128, s.detector, s)
    assert sface.count() == n_before - 5
    assert VICTIM not in sface.identities() and {f"{i}" for i in ids[1:]} <= set(sface.identities())
    ids_left, x_left, _ = sface.all_embeddings(identities=[ids[1]])
    assert sface.query(x_left[:1], k=1)[0][0].id == ids_left[0]
    assert all(sface.thumb_path(i).is_file() for i in ids_left)
    assert FaceGallery("dlib", 128, s.detector, s).count() == 1
    # One audit line, naming nobody.
    last = read_audit(s)[0]
    assert last["action"] == "delete" and last["faces"] == 10 and last["actor"] == "admin"
    assert VICTIM not in json.dumps(read_audit(s))

    # The ledger forgot the photos: an ingest of the same folder adds them again.
    rep = ingest(dataset, "folders", settings=s)
    assert rep.faces_added == 3 and rep.skipped == 9, rep.summary()
    assert set(FaceGallery(s.model, 128, s.detector, s).identities()) >= {VICTIM}
    with pytest.raises(Exception, match="admin"):
        erase_identity(VICTIM, s, VISITOR)


@pytest.mark.timeout(600)
def test_cli_delete_erases_and_logs_the_cli_user(home, tmp_path):
    import os
    import subprocess

    from facesearch.ingest.run import ingest
    from store import FaceGallery
    from store.gallery import close_client

    s = home
    people = _celeba(2, 2)
    ingest(_folder(tmp_path / "d", people), "folders", settings=s)
    close_client(s)  # the CLI process owns the folder next
    who = list(people)[0]
    env = {**os.environ, "FACESEARCH_HOME": str(s.home), "FACESEARCH_CACHE": str(s.cache_path)}
    r = subprocess.run([sys.executable, "-m", "facesearch", "delete", "--identity", who], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"Deleted 2 faces of {who}" in r.stdout, r.stdout + r.stderr
    from facesearch.audit import read_audit

    e = read_audit(s)[0]
    assert e["action"] == "delete" and e["faces"] == 2 and e["actor"].startswith("cli:")
    assert set(FaceGallery(s.model, 128, s.detector, s).identities()) == {list(people)[1]}


# -- 3. export and restore ---------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_export_restore_round_trip(home, tmp_path):
    from facesearch.ingest.run import ingest
    from store import FaceGallery
    from facesearch.admin.archive import export_gallery, read_manifest, restore_gallery
    from store.gallery import close_client

    s = home
    ingest(_folder(tmp_path / "d", _celeba(3, 3)), "folders", settings=s)
    src = FaceGallery(s.model, 128, s.detector, s)
    ids, x, mds = src.all_embeddings()
    thumbs = {i: src.thumb_path(i).read_bytes() for i in ids}
    archive = tmp_path / "gallery.zip"
    m = export_gallery(src, archive)
    assert m["faces"] == len(ids) == 9 and m["thumbnails"] == 9
    assert read_manifest(archive)["model"] == s.model
    # Into memory too (the Home page's download button): the same content.
    buf = io.BytesIO()
    export_gallery(src, buf)
    assert read_manifest(buf.getvalue())["faces"] == 9

    other = Settings(home=tmp_path / "elsewhere")
    try:
        with pytest.raises(Exception, match="admin"):
            restore_gallery(archive, other, VISITOR)
        assert not other.home.exists()
        rep = restore_gallery(archive, other, ADMIN)
        assert rep.faces == 9 and rep.thumbnails == 9 and rep.collection == src.name
        dst = FaceGallery(s.model, 128, s.detector, other, create=False)
        ids2, x2, mds2 = dst.all_embeddings()
        order = {i: k for k, i in enumerate(ids2)}
        assert sorted(ids2) == sorted(ids)
        assert np.allclose(x2[[order[i] for i in ids]], x, atol=1e-6)
        assert [mds2[order[i]] for i in ids] == mds
        assert all(dst.thumb_path(i).read_bytes() == thumbs[i] for i in ids)
        assert (dst.col.metadata["model"], dst.col.metadata["dim"], dst.col.metadata["detector"]) == \
            (s.model, 128, s.detector)
        # A second restore into a gallery that has faces: refused unless merged.
        with pytest.raises(Exception, match="already has 9 faces"):
            restore_gallery(archive, other, ADMIN)
        assert restore_gallery(archive, other, ADMIN, merge=True).merged
        assert dst.count() == 9
        from facesearch.audit import read_audit

        assert [(e["action"], e["faces"], e["actor"]) for e in read_audit(other)] == \
            [("restore", 9, "admin"), ("restore", 9, "admin")]
    finally:
        close_client(other)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.timeout(300)
def test_bad_or_foreign_archive_is_refused_and_writes_nothing(tmp_path):
    from facesearch.errors import ArchiveError
    from store import FaceGallery
    from facesearch.admin.archive import export_gallery, restore_gallery
    from store.gallery import close_client

    # A good archive, made from made-up vectors (nothing to detect here).
    src = Settings(home=tmp_path / "src")
    g = FaceGallery("sface", 128, "yunet", src)
    x = np.random.default_rng(0).normal(size=(3, 128)).astype(np.float32)
    g.upsert(["aaa-0", "bbb-0", "ccc-0"], x, [{"identity": n} for n in "abc"])
    for i in ("aaa-0", "bbb-0", "ccc-0"):
        g.save_thumb(i, b"\xff\xd8 a jpeg")
    good = tmp_path / "good.zip"
    export_gallery(g, good)
    close_client(src)
    m = _members(good)
    manifest = json.loads(m["manifest.json"])

    def with_(**changes) -> bytes:
        return _zip({**m, **changes})

    def manifest_with(**changes) -> bytes:
        return with_(**{"manifest.json": json.dumps({**manifest, **changes}).encode()})

    bad_vectors = io.BytesIO()
    np.save(bad_vectors, x[:, :64])
    cases = {
        "not a zip": (b"PK\x03\x04 this is not really a zip", "not a zip"),
        "empty": (b"", "not a zip"),
        "truncated": (good.read_bytes()[: len(good.read_bytes()) // 2], "not a zip"),
        "photos, no manifest": (_zip({"alice/1.jpg": b"\xff\xd8"}), "no manifest.json"),
        "other format": (manifest_with(format="something-else"), "not a facesearch gallery archive"),
        "newer version": (manifest_with(version=99), "newer facesearch"),
        "unknown model": (manifest_with(model="no-such-model"), "cannot use"),
        "wrong dimension": (manifest_with(dim=512), "512 dimensions"),
        "too few faces": (manifest_with(faces=2), "counts 2 faces"),
        "vectors of another shape": (with_(**{"vectors.npy": bad_vectors.getvalue()}), "vectors.npy|checksum"),
        "tampered metadata": (with_(**{"faces.jsonl": m["faces.jsonl"].replace(b'"a"', b'"z"')}), "checksum"),
        "path in an id": (_zip({**m, "faces.jsonl": m["faces.jsonl"].replace(b"aaa-0", b"../../x"),
                                "manifest.json": json.dumps({**manifest, "sha256": {}}).encode()}),
                          "no valid face id"),
        "stray member": (with_(**{"thumbs/../../evil.jpg": b"\xff\xd8"}), "unexpected member"),
        "thumbnail not a jpeg": (with_(**{"thumbs/aaa-0.jpg": b"GIF89a"}), "not a JPEG"),
    }
    dst = Settings(home=tmp_path / "dst")
    for name, (data, message) in cases.items():
        with pytest.raises(ArchiveError, match=message):
            restore_gallery(data, dst, ADMIN)
        assert not dst.home.exists(), f"{name}: something was written"
    with pytest.raises(ArchiveError, match="no such file"):
        restore_gallery(tmp_path / "missing.zip", dst, ADMIN)
    # Into a gallery of the same name with another dimension: refused, nothing changed.
    from store.gallery import collection_name, get_client

    try:
        get_client(dst).create_collection(collection_name("sface", "yunet"), metadata={"model": "sface", "dim": 64,
                                          "detector": "yunet", "metric": "cosine"}, embedding_function=None)
        with pytest.raises(ArchiveError, match="64-d"):
            restore_gallery(good, dst, ADMIN)
        assert not (dst.home / "thumbs").exists()
    finally:
        close_client(dst)


# -- 4. the audit log ---------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_every_gallery_change_leaves_one_audit_line(home, tmp_path):
    from components.gallery_admin import save_enrollment
    from facesearch.access import LOCAL_USER
    from facesearch.audit import read_audit
    from facesearch.ingest.run import ingest
    from facesearch.admin.privacy import erase_identity
    from facesearch.search.thresholds import set_target_fpir, set_threshold
    from store import FaceGallery
    from facesearch.admin.archive import export_gallery, restore_gallery

    s = home
    people = _celeba(3, 2)
    ids = list(people)
    dataset = _folder(tmp_path / "d", {i: people[i] for i in ids[:2]})
    rep = ingest(dataset, "folders", settings=s, actor=ADMIN)
    assert rep.faces_added == 4
    ingest(dataset, "folders", settings=s, actor=ADMIN)  # nothing new: no change, no line
    items = save_enrollment("New Person", [(p.name, p.read_bytes()) for p in people[ids[2]]], s.home)
    ingest(items[0].path.parent, items=items, settings=s, actor=LOCAL_USER, action="enroll")
    g = FaceGallery(s.model, 128, s.detector, s, actor=ADMIN)
    g.upsert(["made-up-0"], np.ones((1, 128), np.float32), [{"identity": "x"}])  # a direct write
    g.delete(ids=["made-up-0"])
    erase_identity(ids[0], s, ADMIN)
    set_threshold(s.model, 0.4, "test", s, actor=ADMIN)
    set_target_fpir(s.model, 0.02, "test", s)
    archive = tmp_path / "a.zip"
    export_gallery(g, archive)
    other = s.with_(home=tmp_path / "other")
    try:
        restore_gallery(archive, other, ADMIN)
    finally:
        from store.gallery import close_client

        close_client(other)

    got = [(e["action"], e["faces"], e["actor"]) for e in reversed(read_audit(s))]
    assert got == [("ingest", 4, "admin"), ("enroll", 2, "local user"), ("add", 1, "admin"), ("delete", 1, "admin"),
                   ("delete", 2, "admin"), ("threshold", None, "admin"), ("threshold", None, cli_actor().name),
                   ("export", 4, "admin")], got
    first = read_audit(s)[-1]
    assert first["source"] == str(dataset) and first["galleries"] == [g.name] and first["at"].endswith("Z")
    assert [(e["action"], e["faces"]) for e in read_audit(other)] == [("restore", 4)]
    assert read_audit(s, limit=2)[0]["action"] == "export"
    # Nothing of an enrolled person's name: an erasure must be able to make them vanish.
    assert "New Person" not in audit_text(s)
    # A visitor's refused change writes nothing.
    with pytest.raises(Exception, match="admin"):
        set_threshold(s.model, 0.3, "forged", s, actor=VISITOR)
    assert len(read_audit(s)) == 8


def audit_text(s: Settings) -> str:
    from facesearch.audit import audit_path

    return audit_path(s).read_text()


# -- the Home page's widgets (app.py places them for admins) -----------------------------------
# A script file, not AppTest.from_function: that one leaves its temporary script as the
# process's __main__, and every later spawn-started process (ingest workers, tests with
# multiprocessing) then fails to start.
@pytest.mark.timeout(300)
def test_export_restore_and_audit_widgets_render(tmp_path, monkeypatch, session_home):
    from facesearch.access import LOCAL_USER
    from store import FaceGallery
    from store.gallery import close_client

    s = Settings(home=tmp_path / "home")
    g = FaceGallery(s.model, 128, s.detector, s, actor=LOCAL_USER)
    g.upsert(["aaa-0", "bbb-0"], np.eye(2, 128, dtype=np.float32), [{"identity": "a"}, {"identity": "b"}])
    g.delete(ids=["bbb-0"])
    close_client(s)
    monkeypatch.setenv("FACESEARCH_HOME", str(s.home))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    monkeypatch.delenv("FACESEARCH_ADMIN_PASSWORD", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()  # single-user: the admin's tabs
    try:
        assert not at.exception, [e.value for e in at.exception]
        assert at.button(key="restore_go").disabled  # nothing uploaded yet
        assert any("1 faces of the" in c.value for c in at.caption)
        table = at.dataframe[0].value
        assert list(table["what"]) == ["delete", "add"] and list(table["who"]) == ["local user"] * 2
    finally:
        close_client(s)


@pytest.mark.timeout(300)
def test_rebuild_cut_off_is_finished_and_old_handles_follow(tmp_path):
    from store import FaceGallery
    from store.gallery import REBUILD_PREFIX, close_client, get_client

    s = Settings(home=tmp_path / "home")
    try:
        g = FaceGallery("sface", 128, "yunet", s)
        x = np.random.default_rng(0).normal(size=(30, 128)).astype(np.float32)
        ids = [f"f{i:03d}-0" for i in range(30)]
        g.upsert(ids, x, [{"identity": f"p{i % 3}"} for i in range(30)])
        reader = FaceGallery("sface", 128, "yunet", s)  # opened before the rebuild
        g.delete(identity="p0")
        assert g.rebuild() == 20
        # The old handle's collection id is gone; it re-opens the rebuilt one.
        assert reader.count() == 20 and reader.query(x[1:2], k=1)[0][0].id == ids[1]

        # A rebuild killed after dropping the original: the complete copy is all there is.
        client = get_client(s)
        r = g.get(embeddings=True)
        copy = client.create_collection(REBUILD_PREFIX + g.name, metadata=dict(g.col.metadata),
                                        embedding_function=None)
        copy.add(ids=r["ids"], embeddings=r["embeddings"], metadatas=r["metadatas"])
        client.delete_collection(g.name)
        again = FaceGallery("sface", 128, "yunet", s, create=False)
        assert again.count() == 20 and sorted(again.identities()) == ["p1", "p2"]
        names = {c.name for c in client.list_collections()}
        assert names == {g.name}
    finally:
        close_client(s)
