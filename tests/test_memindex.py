"""The dashboard's in-memory exact search (store/memindex.py) stays in step with writers in
other processes: a real ``chroma run`` server, a reader gallery in this process, writers as
real subprocesses. Vectors are random unit vectors (no model needed): what is tested is
which faces come back, against numpy's exact top-k."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from facesearch.settings import Settings

DIM = 128

WRITER = r"""
import sys, numpy as np
from facesearch.settings import Settings
from store.gallery import FaceGallery
home, op, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
from pathlib import Path
g = FaceGallery("mem-test", 128, "none", Settings(home=Path(home)))
if op == "add":
    rng = np.random.default_rng(seed)
    x = np.load(sys.argv[4])
    g.upsert([f"new{seed}_{i}" for i in range(len(x))], x, [{"identity": f"newcomer{seed}"}] * len(x))
elif op == "delete":
    print(g.delete(identity=sys.argv[4]))
"""


def _unit(rng, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact(ids, x, q, k):
    d = 1.0 - x @ q
    order = np.argsort(d, kind="stable")[:k]
    return [ids[i] for i in order], d[order]


@pytest.fixture
def served(tmp_path):
    from store.gallery import close_client
    from store.server import start_server

    s = Settings(home=tmp_path / "home")
    with start_server(s):
        yield s
    close_client(s)


def _write(s: Settings, op: str, seed: int, arg: str) -> str:
    r = subprocess.run([sys.executable, "-c", WRITER, str(s.home), op, str(seed), arg], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_memory_search_is_exact_and_follows_other_processes_writes(served, tmp_path):
    from store.gallery import FaceGallery

    s = served
    rng = np.random.default_rng(0)
    x = _unit(rng, 3000)
    ids = [f"f{i}" for i in range(len(x))]
    FaceGallery("mem-test", DIM, "none", s).upsert(ids, x, [{"identity": f"p{i // 3}"} for i in range(len(x))])

    reader = FaceGallery("mem-test", DIM, "none", s, memory_index=True)
    probes = _unit(rng, 20)
    # The first query starts loading the copy and is answered by Chroma meanwhile.
    first = reader.query(probes[:1], k=10)
    assert [h.id for h in first[0]] == _exact(ids, x, probes[0], 10)[0]
    assert reader.memory.wait(60) and reader.memory.error is None
    col = reader.client.get_collection(reader.name)
    assert reader.memory.ready(str(col.id), (col.metadata or {}).get("generation"))
    for q, hits in zip(probes, reader.query(probes, k=10)):
        want_ids, want_d = _exact(ids, x, q, 10)
        assert [h.id for h in hits] == want_ids
        assert np.allclose([h.distance for h in hits], want_d, atol=1e-5)
        assert all(h.identity == f"p{int(h.id[1:]) // 3}" for h in hits)

    # Another process adds three faces close to probe 0: the reader's next query has them
    # first (its copy is out of date, so Chroma answers), and so has the reloaded copy.
    near = probes[0] + 0.05 * _unit(rng, 3)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    np.save(tmp_path / "near.npy", near)
    _write(s, "add", 7, str(tmp_path / "near.npy"))
    got = {h.id for h in reader.query(probes[:1], k=3)[0]}
    assert got == {"new7_0", "new7_1", "new7_2"}
    assert reader.memory.wait(60)
    col = reader.client.get_collection(reader.name)
    assert reader.memory.ready(str(col.id), (col.metadata or {}).get("generation"))
    assert {h.id for h in reader.query(probes[:1], k=3)[0]} == got

    # Another process erases that person: gone from the very next answer.
    assert _write(s, "delete", 0, "newcomer7").strip() == "3"
    for _ in range(2):
        hits = reader.query(probes[:1], k=10)[0]
        assert not any(h.id.startswith("new7_") for h in hits)
        assert [h.id for h in hits] == _exact(ids, x, probes[0], 10)[0]
        reader.memory.wait(60)


def test_a_write_that_skipped_the_generation_is_caught_by_the_count(served):
    """A writer killed between its faces and its generation mark (simulated by writing
    with Chroma's own client): the face count, compared every ``recheck`` s, reloads."""
    from store.gallery import FaceGallery

    s = served
    rng = np.random.default_rng(1)
    x = _unit(rng, 500)
    ids = [f"f{i}" for i in range(len(x))]
    FaceGallery("mem-test", DIM, "none", s).upsert(ids, x, [{"identity": "p"}] * len(x))
    reader = FaceGallery("mem-test", DIM, "none", s, memory_index=True)
    reader.query(x[:1], k=1)
    assert reader.memory.wait(60)
    reader.memory.recheck = 0.0
    q = _unit(rng, 1)
    reader.col.upsert(ids=["sneaked"], embeddings=q, metadatas=[{"identity": "sneaky"}])
    assert reader.query(q, k=1)[0][0].id == "sneaked"  # count differs: Chroma answers
    assert reader.memory.wait(60)
    assert reader.query(q, k=1)[0][0].id == "sneaked"  # and the reloaded copy has it


def test_empty_gallery_is_the_usual_clear_error(served):
    from facesearch.errors import EmptyGalleryError
    from store.gallery import FaceGallery

    reader = FaceGallery("mem-test", DIM, "none", served, memory_index=True)
    for _ in range(2):
        with pytest.raises(EmptyGalleryError):
            reader.query(_unit(np.random.default_rng(2), 1), k=5)
        reader.memory.wait(60)


def test_a_gallery_too_big_to_copy_is_searched_by_chroma(served, monkeypatch):
    import store.gallery as gallery_mod
    from store.gallery import FaceGallery

    monkeypatch.setattr(gallery_mod, "MAX_FACES", 100)
    rng = np.random.default_rng(3)
    x = _unit(rng, 300)
    ids = [f"f{i}" for i in range(len(x))]
    FaceGallery("mem-test", DIM, "none", served).upsert(ids, x, [{"identity": "p"}] * len(x))
    reader = FaceGallery("mem-test", DIM, "none", served, memory_index=True)
    q = _unit(rng, 1)
    for _ in range(2):
        assert [h.id for h in reader.query(q, k=5)[0]] == _exact(ids, x, q[0], 5)[0]
        reader.memory.wait(60)
    col = reader.client.get_collection(reader.name)
    gen = (col.metadata or {}).get("generation")
    assert reader.memory.too_many(str(col.id), gen) and not reader.memory.ready(str(col.id), gen)
