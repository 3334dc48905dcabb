"""Shared test fixtures.

One data folder (FACESEARCH_HOME) for the whole session, so the embedding cache is shared:
a photo detected and embedded by one test is free for the next. Tests that need an empty
gallery make their own ``Settings(home=tmp_path)`` and still reuse the session cache via
``cached_settings``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["ANONYMIZED_TELEMETRY"] = "False"


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"test data not found at {DATA} (the shared data folder beside the repo)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory) -> Path:
    """The session's FACESEARCH_HOME; subprocesses inherit it through the environment.

    Its database is served by a real ``chroma run`` for the whole session, as ``make
    run`` does, so the test process, CLI subprocesses and the dashboard share it (the
    embedded database has one owner process). Tests with their own ``tmp_path`` home
    get the embedded database."""
    from facesearch.settings import Settings
    from store.server import start_server

    home = tmp_path_factory.mktemp("fshome")
    os.environ["FACESEARCH_HOME"] = str(home)
    os.environ["DEEPFACE_HOME"] = str(home / "models")
    os.environ["KERAS_HOME"] = str(home / "models" / "keras")
    with start_server(Settings(home=home)):
        yield home


@pytest.fixture(scope="session")
def settings(session_home):
    from facesearch.settings import Settings

    return Settings.from_env()


@pytest.fixture
def fresh_settings(tmp_path, session_home):
    """Settings with an empty gallery and ledger in tmp_path that share the session's
    embedding cache (keyed by content hash, so sharing is safe) and weights."""
    from facesearch.settings import Settings

    return Settings(home=tmp_path / "home", cache_dir=session_home / "cache")


def celeba_split(n_identities: int = 20, n_gallery: int = 4, n_probe: int = 2):
    """A deterministic CelebA gallery/probe split: the identities with the most photos."""
    from facesearch.datasets import load_images

    imgs = load_images(DATA / "celeba", "celeba")
    by_id: dict[str, list] = {}
    for im in imgs:
        by_id.setdefault(im.identity, []).append(im)
    ids = sorted(by_id, key=lambda i: (-len(by_id[i]), i))[:n_identities]
    gallery, probes = [], []
    for i in ids:
        ims = by_id[i]
        gallery += ims[:n_gallery]
        probes += ims[n_gallery:n_gallery + n_probe]
    return gallery, probes
