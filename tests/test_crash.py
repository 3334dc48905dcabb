"""An ingest killed with SIGKILL halfway, then run again: nothing doubled, nothing lost.

Real ``facesearch ingest`` processes, each data folder with its own empty embedding
cache (so the runs really detect and embed), the embedded database (no server: the
killed process owned the folder, and the kernel drops its lock).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT
from facesearch.settings import Settings

N_PHOTOS = 150


def _env(s: Settings) -> dict:
    # Small batches: the ledger and the gallery grow in many steps, so the kill lands
    # between two of them rather than before the first or after the last.
    return {**os.environ, "FACESEARCH_HOME": str(s.home), "FACESEARCH_CACHE": str(s.cache_path),
            "FACESEARCH_BATCH_SIZE": "8"}


def _ingest_cmd() -> list[str]:
    return [sys.executable, "-m", "facesearch", "ingest", str(DATA / "celeba"), "--format", "celeba",
            "--limit", str(N_PHOTOS), "--quiet"]


def _ledger_rows(s: Settings) -> int:
    try:
        con = sqlite3.connect(f"file:{s.home / 'ingest.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0  # not created yet


def _ledger(s: Settings) -> dict[str, tuple[str, str]]:
    con = sqlite3.connect(str(s.home / "ingest.sqlite"))
    try:
        return {p: (st, h) for p, st, h in con.execute("SELECT path, status, sha1 FROM files")}
    finally:
        con.close()


def _state(s: Settings) -> tuple[dict, list[str], np.ndarray, list[dict]]:
    from store import FaceGallery
    from store.gallery import close_client

    try:
        g = FaceGallery(s.model, 128, s.detector, s, create=False)
        ids, x, mds = g.all_embeddings()
        missing_thumbs = [i for i in ids if not g.thumb_path(i).is_file()]
        assert not missing_thumbs, f"faces without a thumbnail: {missing_thumbs[:5]}"
        # The index answers for every face it holds: each vector finds itself first.
        for i in range(0, len(ids), 50):
            hits = g.query(x[i:i + 50], k=1)
            assert [h[0].id for h in hits] == ids[i:i + 50]
    finally:
        close_client(s)
    return _ledger(s), ids, x, mds


@pytest.mark.timeout(900)
def test_sigkilled_ingest_resumes_without_loss_or_duplicates(tmp_path):
    from facesearch.audit import read_audit
    from facesearch.datasets.registry import load_images
    from facesearch.ingest.run import face_id

    s = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    proc = subprocess.Popen(_ingest_cmd(), cwd=ROOT, env=_env(s), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while _ledger_rows(s) < 40 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the ingest finished before it could be killed: " + proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = _ledger_rows(s)
    assert 40 <= killed_at < N_PHOTOS, killed_at

    again = subprocess.run(_ingest_cmd(), cwd=ROOT, env=_env(s), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    m = re.search(r"(\d+) photos processed \((\d+) already done\), (\d+) faces added", again.stdout)
    assert m, again.stdout
    processed, skipped, added = map(int, m.groups())
    # What the killed run recorded is done; the rest (and any photo whose faces were
    # written but not yet recorded) is done now.
    assert skipped == killed_at and processed + skipped == N_PHOTOS, again.stdout

    ledger, ids, x, mds = _state(s)
    photos = [str(im.path) for im in load_images(DATA / "celeba", "celeba", limit=N_PHOTOS)]
    assert sorted(ledger) == sorted(photos), "a photo has no ledger row"
    ok = {h for st, h in ledger.values() if st == "ok"}
    for p in photos:
        st, h = ledger[p]
        if st != "failed":
            assert h == hashlib.sha1(Path(p).read_bytes()).hexdigest()
    # One face per photo with a face, under its content id, none twice.
    assert len(ids) == len(set(ids)) == len(ok)
    assert all(i == face_id(m["image_sha1"], 0, m["identity"]) for i, m in zip(ids, mds))
    assert sorted(m["image_sha1"] for m in mds) == sorted(ok)
    assert all(m["path"] in photos for m in mds)

    # The same photos ingested in one go, into another data folder: the same gallery.
    ref = Settings(home=tmp_path / "ref", cache_dir=tmp_path / "ref-cache")
    r = subprocess.run(_ingest_cmd(), cwd=ROOT, env=_env(ref), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    ref_ledger, ref_ids, ref_x, _ = _state(ref)
    assert {p: st for p, (st, _) in ref_ledger.items()} == {p: st for p, (st, _) in ledger.items()}
    assert sorted(ref_ids) == sorted(ids)
    order = {i: k for k, i in enumerate(ref_ids)}
    assert np.allclose(ref_x[[order[i] for i in ids]], x, atol=1e-5)

    # The killed run left its "started" line (written before its first batch), shown as
    # incomplete with no count; the second run's line counts what it added.
    assert [(e["action"], e["faces"], e.get("incomplete")) for e in read_audit(s)] == \
        [("ingest", added, None), ("ingest", None, True)]
    # The room the killed run kept for its completed line was given back by the next run.
    assert not list(s.home.glob(".audit-reserve-*"))
