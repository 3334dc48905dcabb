"""The data folder's database server takes no requests from other local users (issue 17,
item 10c), with a real ``chroma run``.

Chroma 1.5.9's server ignores its token-authentication settings (chroma-core/chroma
#4965): the first test shows it taking an unauthenticated write with them set. So
``start_server`` runs it in a network namespace of its own behind store/relay.py, which
wants the token kept in the private data folder; the other tests show that barrier
holding: no token, or a wrong one, gets 401 and writes nothing, while the owner's own
processes (this one, the CLI) work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT
from facesearch.settings import Settings

pytestmark = pytest.mark.timeout(300)

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def _post(url: str, body: dict, headers: dict | None = None) -> int:
    req = urllib.request.Request(url + COLLECTIONS, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _names(url: str, token: str | None) -> list[str]:
    req = urllib.request.Request(url + COLLECTIONS, headers={"X-Facesearch-Token": token} if token else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return [c["name"] for c in json.loads(r.read())]


def test_chroma_1_5_9_ignores_its_token_auth_settings(tmp_path):
    """Why the barrier is ours: a bare ``chroma run`` with the token settings set takes a
    write with no token at all."""
    from store.server import _free_port, chroma_executable, heartbeat

    port = _free_port()
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False",
           "CHROMA_SERVER_AUTHN_PROVIDER": "chromadb.auth.token_authn.TokenAuthenticationServerProvider",
           "CHROMA_SERVER_AUTHN_CREDENTIALS": "s3cret"}
    proc = subprocess.Popen([chroma_executable(), "run", "--path", str(tmp_path / "db"), "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not heartbeat(url):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        assert _post(url, {"name": "intruder"}) == 200
        assert "intruder" in _names(url, None)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def served(tmp_path):
    from store.server import netns_available, start_server

    if not netns_available():
        why = "no unprivileged network namespaces on this machine: the server runs unprotected (README)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)  # CI's machines have them: their absence is a failure there, never a skip
        pytest.skip(why)
    s = Settings(home=tmp_path / "home")
    with start_server(s) as srv:
        yield s, srv, json.loads((s.home / "chroma-server.json").read_text())


def test_a_client_without_the_token_is_refused(served):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    s, srv, info = served
    assert info["barrier"] == "network namespace + token" and info["token"] == srv.token
    url = info["url"]
    assert _post(url, {"name": "intruder"}) == 401
    assert _post(url, {"name": "intruder"}, {"X-Facesearch-Token": "guess"}) == 401
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(Exception):
        chromadb.HttpClient(host="127.0.0.1", port=port,
                            settings=ChromaSettings(anonymized_telemetry=False)).list_collections()
    # Nothing was written; the owner (the token from the private data folder) gets in.
    assert "intruder" not in _names(url, info["token"])
    assert _post(url, {"name": "owners"}, {"X-Facesearch-Token": info["token"]}) == 200


def test_the_owners_processes_get_in(served, tmp_path):
    import numpy as np

    from store import FaceGallery, list_galleries

    s, srv, info = served
    v = np.eye(128, dtype=np.float32)[:1]
    FaceGallery("sface", 128, "yunet", s).upsert(["a"], v, [{"identity": "x"}])
    assert [g["count"] for g in list_galleries(s)] == [1]
    env = {**os.environ, "FACESEARCH_HOME": str(s.home)}
    r = subprocess.run([sys.executable, "-m", "facesearch", "stats"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # The token lives in the private data folder only.
    assert (s.home / "chroma-server.json").stat().st_mode & 0o077 == 0
