"""The data folder is private (issue 17, item 10b): a fresh data folder, written by real
processes started with the usual umask 022, holds only 0700 folders and files no other
user may read: the database (embedded, and written by the ``chroma run`` server), the
thumbnails, the embedding cache, the ledger, the audit log, the server's files and logs.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT

pytestmark = pytest.mark.timeout(600)

PEOPLE = DATA / "photos" / "people"


def _umask_022():
    os.umask(0o022)  # what a login shell has: the processes must not rely on it


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facesearch", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, preexec_fn=_umask_022)


def _open_to_others(home: Path) -> list[str]:
    """Everything under ``home`` (itself included) that group or others may use."""
    bad = []
    for p in [home, *home.rglob("*")]:
        mode = p.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            bad.append(f"{p.relative_to(home.parent)} {stat.S_IMODE(mode):o}")
    return bad


def _check(home: Path) -> None:
    for what in ("chroma/chroma.sqlite3", "thumbs", "cache/embeddings.sqlite", "audit.jsonl"):
        assert (home / what).exists(), what
    assert not _open_to_others(home), _open_to_others(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_fresh_data_folder_is_private_embedded(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "FACESEARCH_HOME": str(home)}
    env.pop("FACESEARCH_CACHE", None)
    r = _cli(env, "ingest", PEOPLE, "--quiet")
    assert r.returncode == 0, r.stderr
    _check(home)


def test_a_fresh_data_folder_is_private_through_the_server(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "FACESEARCH_HOME": str(home)}
    env.pop("FACESEARCH_CACHE", None)
    serve = subprocess.Popen([sys.executable, "-m", "facesearch", "serve", "--no-dashboard"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_umask_022)
    try:
        deadline = time.monotonic() + 120
        while not (home / "chroma-server.json").exists():
            assert time.monotonic() < deadline and serve.poll() is None, "the server did not start"
            time.sleep(0.2)
        r = _cli(env, "ingest", PEOPLE, "--quiet")
        assert r.returncode == 0, r.stderr
        assert json.loads((home / "chroma-server.json").read_text())["url"]
        _check(home)
        assert (home / "logs" / "chroma-server.log").exists()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)


def test_an_existing_open_data_folder_is_closed(tmp_path):
    from facesearch.audit import record
    from facesearch.settings import Settings

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    record(Settings(home=home), None, "threshold", None)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "audit.jsonl").stat().st_mode) == 0o600
