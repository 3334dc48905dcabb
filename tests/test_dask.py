"""Ingest on a Dask cluster: a LocalCluster, and a real scheduler with worker processes
(``dask scheduler`` / ``dask worker``) of which one is killed mid-run. Each ingest has
its own data folder and an empty embedding cache, so the workers really detect and
embed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from facesearch.settings import Settings

pytestmark = pytest.mark.timeout(600)

DASK = Path(sys.executable).with_name("dask")


def _folder(root: Path, n_photos: int) -> Path:
    """``n_photos`` CelebA photos as a folder-per-identity dataset of symlinks."""
    from facesearch.datasets.registry import load_images

    for im in load_images(DATA / "celeba", "celeba", limit=n_photos):
        d = root / f"person_{im.identity}"
        d.mkdir(parents=True, exist_ok=True)
        (d / Path(im.path).name).symlink_to(im.path)
    return root


def _env(home: Path) -> dict:
    return {**os.environ, "FACESEARCH_HOME": str(home), "FACESEARCH_CACHE": str(home / "cache")}


def _gallery(home: Path) -> dict[str, str]:
    """face id -> identity."""
    from store import FaceGallery
    from store.gallery import close_client

    s = Settings(home=home)
    try:
        r = FaceGallery(s.model, 128, s.detector, s).get()
        return {i: m["identity"] for i, m in zip(r["ids"], r["metadatas"])}
    finally:
        close_client(s)


def _ingest(home: Path, folder: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facesearch", "ingest", str(folder), "--quiet", *map(str, extra)],
                          cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("dask_photos"), 80)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, photos):
    """The local path's result on the same photos."""
    home = tmp_path_factory.mktemp("dask_ref")
    r = _ingest(home, photos)
    assert r.returncode == 0, r.stderr
    return _gallery(home)


def test_dask_local_cluster_gives_the_local_result(tmp_path, photos, reference):
    r = _ingest(tmp_path / "home", photos, "--dask", "local", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "80 photos processed" in r.stdout and "0 failed" in r.stdout, r.stdout
    assert _gallery(tmp_path / "home") == reference
    # Resumable through the same ledger: a second run does nothing.
    r = _ingest(tmp_path / "home", photos, "--dask", "local", "--workers", "2")
    assert r.returncode == 0 and "0 photos processed (80 already done)" in r.stdout, r.stdout


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_killed_dask_worker_loses_no_face(tmp_path, photos, reference):
    from distributed import Client

    port = _port()
    addr = f"tcp://127.0.0.1:{port}"
    scratch = tmp_path / "scratch"
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        # No nanny: a killed worker stays dead, and its tasks must be re-run by the other.
        workers = [subprocess.Popen([str(DASK), "worker", addr, "--nworkers", "1", "--nthreads", "1", "--no-nanny",
                                     "--no-dashboard", "--local-directory", str(scratch)], cwd=tmp_path,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        procs += workers
        with Client(addr, timeout="60s") as watcher:
            watcher.wait_for_workers(2, timeout=120)
            pid_of = watcher.run(os.getpid)  # worker address -> pid
            run = subprocess.Popen([sys.executable, "-m", "facesearch", "ingest", str(photos), "--quiet", "--dask",
                                    addr], cwd=ROOT, env=_env(tmp_path / "home"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            victim = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and run.poll() is None:
                # Kill a worker while it holds tasks, once the cluster has finished some.
                busy = sorted(w for w, tasks in watcher.processing().items() if tasks)
                if busy and _tasks_done(watcher) >= 10:
                    victim = pid_of[busy[0]]
                    os.kill(victim, signal.SIGKILL)
                    break
                time.sleep(0.05)
            assert victim is not None, "the run ended before a worker could be killed mid-run"
            out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        assert "80 photos processed" in out and "0 failed" in out, out
        assert _gallery(tmp_path / "home") == reference  # nothing lost, nothing doubled
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_evaluate_on_a_local_cluster_gives_the_one_process_figures(tmp_path):
    """``facesearch evaluate --dask local``: sface on 12 LFW pairs, from an empty data
    folder, gives the JSON figures of the one-process path (its own empty folder)."""
    import json

    out = {}
    for name, extra in (("dask", ("--dask", "local", "--workers", "2")), ("one", ("--workers", "1"))):
        home = tmp_path / name
        r = subprocess.run([sys.executable, "-m", "facesearch", "evaluate", "--dataset", "lfw", "--models", "sface",
                            "--limit", "12", "--quiet", "--out", str(home / "out"), *extra],
                           cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert "embeddings computed this run: 24; from cache: 0" in r.stdout, r.stdout
        out[name] = json.loads((home / "out.json").read_text())
        for res in out[name]["results"]:
            res.pop("seconds")
            res.pop("ms_per_face")
    assert out["dask"] == out["one"]


def _tasks_done(client) -> int:
    """Ingest tasks the cluster has finished so far (every transition to "memory")."""
    return client.run_on_scheduler(lambda dask_scheduler: sum(
        p.state_counts.get("memory", 0) for name, p in dask_scheduler.task_prefixes.items() if "dask_process" in name))
