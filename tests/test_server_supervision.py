"""``make run`` supervises the database server (issue 17, item 5): real processes.

``python -m facesearch serve --no-dashboard`` starts ``chroma run``; the test kills that
child with SIGKILL and checks that the serve process says so on stderr and starts it
again on the same port and data folder, that a CLI ``match`` against the folder works
again, and that meanwhile a reader (and the dashboard's Home page) hear "the database
is restarting" rather than "not answering".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from facesearch.settings import Settings

pytestmark = pytest.mark.timeout(600)

PEOPLE = DATA / "photos" / "people"


def _cli(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facesearch", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _server_info(s: Settings) -> dict | None:
    try:
        return json.loads((s.home / "chroma-server.json").read_text())
    except (OSError, ValueError):
        return None


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    from store.server import _alive as alive  # a zombie (killed, not yet reaped) is dead

    return alive(pid)


@pytest.fixture
def served(tmp_path, settings):
    """A data folder with two people in it, served by ``facesearch serve --no-dashboard``
    (a real process): (settings, env, serve process, its stderr file)."""
    from store.server import heartbeat

    # The session's embedding cache: this test is about processes, not embedding.
    s = Settings(home=tmp_path / "home", cache_dir=settings.cache_path)
    env = {**os.environ, "FACESEARCH_HOME": str(s.home), "FACESEARCH_CACHE": str(s.cache_path)}
    err = tmp_path / "serve.err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "facesearch", "serve", "--no-dashboard"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        info = _wait(lambda: (i := _server_info(s)) and heartbeat(i["url"], token=i.get("token")) and i, 120, "the server to start")
        r = _cli(env, "ingest", PEOPLE, "--quiet")
        assert r.returncode == 0, r.stderr
        yield s, env, proc, err, info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_killed_server_is_restarted_and_match_works_again(served, monkeypatch):
    from facesearch.errors import DatabaseRestartingError
    from store import list_galleries
    import store.server as server

    s, env, proc, err, info = served
    # Hold the supervisor still while the server is dead, so the pages can be checked
    # while it is down (no race with the restart); then let it go.
    proc.send_signal(signal.SIGSTOP)
    try:
        os.kill(info["pid"], signal.SIGKILL)
        _wait(lambda: not _alive(info["pid"]) or None, 10, "the server to die")

        # A reader that will not wait hears that the database is restarting.
        monkeypatch.setattr(server, "RESTART_WAIT", 0.0)
        with pytest.raises(DatabaseRestartingError, match="the database is restarting"):
            list_galleries(s)

        # So do the dashboard's pages (Home, in-process through AppTest).
        sys.path.insert(0, str(ROOT))
        from streamlit.testing.v1 import AppTest

        monkeypatch.setenv("FACESEARCH_HOME", str(s.home))
        monkeypatch.setenv("FACESEARCH_CACHE", str(s.cache_path))
        at = AppTest.from_file(str(ROOT / "pages" / "0_Home.py"), default_timeout=120)
        at.run()
        shown = " ".join(str(e.value) for e in at.error)
        assert "the database is restarting" in shown, shown
        assert "not answering" not in shown, shown
    finally:
        proc.send_signal(signal.SIGCONT)

    # A CLI match waits for the restart and answers.
    r = _cli(env, "match", PEOPLE / "obama" / "obama2.jpg", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "obama" in r.stdout, r.stdout

    new = _server_info(s)
    assert new["url"] == info["url"] and new["pid"] != info["pid"] and _alive(new["pid"])
    assert new["path"] == info["path"]
    log = err.read_text()
    assert f"gallery database server {info['url']} (pid {info['pid']}) died (killed by signal 9); restarting" in log
    assert f"gallery database server restarted on {info['url']} (pid {new['pid']}, restart 1)" in log
    assert proc.poll() is None  # serve itself lives on

    # The page recovers by itself: the same session's next run shows the gallery.
    at.run()
    assert not [e for e in at.error if "restarting" in str(e.value)], [e.value for e in at.error]

    # Killed again, it comes back again (the backoff grows, the port stays).
    os.kill(new["pid"], signal.SIGKILL)
    third = _wait(lambda: (i := _server_info(s)) and i["pid"] not in (info["pid"], new["pid"]) and i, 120,
                  "the second restart")
    assert third["url"] == info["url"]
    assert len(list_galleries(s)) == 1


def test_killed_chroma_run_child_is_restarted(served):
    """The ``chroma run`` process itself (behind store/relay.py where network namespaces
    work) killed: the serve process starts it again and a CLI match works."""
    s, env, proc, err, info = served
    relay = info["pid"]
    children = Path(f"/proc/{relay}/task/{relay}/children").read_text().split()
    chroma = next((int(c) for c in children if "chroma" in Path(f"/proc/{c}/cmdline").read_text()), relay)
    os.kill(chroma, signal.SIGKILL)
    r = _cli(env, "match", PEOPLE / "obama" / "obama2.jpg", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "obama" in r.stdout
    new = _server_info(s)
    assert new["url"] == info["url"] and new["pid"] != relay
    log = err.read_text()
    assert "restarting" in log and f"restarted on {info['url']}" in log
    if info.get("token"):
        assert "its chroma run was killed by signal 9" in log
