"""Hosted mode: visitors read, only an admin changes the gallery (facesearch.access)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT
from facesearch.access import ADMIN, VISITOR, check_ingest_path, check_password, session_actor
from facesearch.errors import PermissionDeniedError
from facesearch.settings import Settings

sys.path.insert(0, str(ROOT))
from streamlit.testing.v1 import AppTest  # noqa: E402

pytestmark = pytest.mark.timeout(300)
APP = str(ROOT / "app.py")


def _unit(n, d=128):
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_core_refuses_a_visitor_whatever_the_page_does(tmp_path):
    from facesearch.ingest.run import ingest
    from facesearch.search.thresholds import set_target_fpir, set_threshold
    from store import FaceGallery

    s = Settings(home=tmp_path, admin_password="s3cret")
    FaceGallery("sface", 128, "yunet", s, actor=ADMIN).upsert(["a"], _unit(1), [{"identity": "x"}])
    g = FaceGallery("sface", 128, "yunet", s, actor=VISITOR)
    assert g.count() == 1 and g.query(_unit(1), k=1)[0][0].id == "a"  # reading is fine
    with pytest.raises(PermissionDeniedError, match="admin"):
        g.upsert(["b"], _unit(1), [{"identity": "y"}])
    with pytest.raises(PermissionDeniedError):
        g.delete(identity="x")
    with pytest.raises(PermissionDeniedError):
        ingest(DATA / "photos/people", settings=s, actor=VISITOR)
    with pytest.raises(PermissionDeniedError):
        set_threshold("sface", 0.5, "forged", s, actor=VISITOR)
    with pytest.raises(PermissionDeniedError):
        set_target_fpir("sface", 0.05, "forged", s, actor=VISITOR)
    assert g.count() == 1 and not s.thresholds_file.exists()


def test_password_and_roles():
    hosted = Settings(admin_password="s3cret")
    assert check_password(hosted, "s3cret") and not check_password(hosted, "s3cre") and not check_password(hosted, "")
    assert not check_password(Settings(), "")  # no password: nobody signs in, everyone is the local user
    assert session_actor(hosted, False) == VISITOR and session_actor(hosted, True) == ADMIN
    assert session_actor(Settings(), False).admin


def test_ingest_roots_confine_dashboard_ingests(tmp_path):
    root, outside = tmp_path / "photos", tmp_path / "private"
    (root / "people").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    s = Settings(home=tmp_path / "home", admin_password="pw", ingest_roots=(root,))
    check_ingest_path(s, root / "people", ADMIN)
    check_ingest_path(s, s.home / "uploads" / "zip-1", ADMIN)  # unpacked uploads
    for bad in (outside, root / ".." / "private", root / "escape", Path("/etc")):
        with pytest.raises(PermissionDeniedError, match="outside"):
            check_ingest_path(s, bad, ADMIN)
    with pytest.raises(PermissionDeniedError):  # hosted, no roots: server folders are off
        check_ingest_path(Settings(home=tmp_path / "h", admin_password="pw"), root, ADMIN)
    check_ingest_path(s, outside, None)  # the command line reads what its user can
    check_ingest_path(Settings(home=tmp_path / "h"), outside, ADMIN)  # a local user's own machine


def _texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "subheader", "title", "success", "warning", "error", "info"):
        parts += [str(e.value) for e in getattr(at, kind)]
    from components.text import md_unescape

    return md_unescape("\n".join(parts))  # messages are escaped Markdown: read them as shown


def _keys(at) -> set[str]:
    return {w.key for kind in ("button", "text_input", "selectbox", "checkbox", "number_input")
            for w in getattr(at, kind) if w.key}


@pytest.fixture
def hosted_env(monkeypatch, tmp_path, session_home):
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    monkeypatch.setenv("FACESEARCH_ADMIN_PASSWORD", "s3cret")
    return tmp_path / "home"


def test_visitor_sees_no_admin_control_and_no_server_path(hosted_env):
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    keys = _keys(at)
    for k in ("ingest_go", "ingest_path", "ingest_zip_go", "enroll_go", "delete_go", "delete_identity"):
        assert k not in keys, k
    assert str(hosted_env) not in _texts(at)
    assert "admin_password_input" in keys
    # A wrong password: refused, still a visitor.
    at.text_input(key="admin_password_input").set_value("guess")
    at.button(key="admin_sign_in").click().run()
    assert any("Wrong password" in e.value for e in at.error) and "ingest_go" not in _keys(at)
    at.text_input(key="admin_password_input").set_value("s3cret")
    at.button(key="admin_sign_in").click().run()
    assert not at.exception
    assert {"ingest_go", "ingest_path", "enroll_go"} <= _keys(at) and str(hosted_env) in _texts(at)
    at.button(key="admin_sign_out").click().run()
    assert "ingest_go" not in _keys(at)


def test_without_a_password_it_says_it_is_single_user(monkeypatch, tmp_path, session_home):
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESEARCH_ADMIN_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert "Single-user mode" in _texts(at) and "ingest_go" in _keys(at)


def test_visitor_evaluates_only_the_servers_datasets(hosted_env):
    at = AppTest.from_file(str(ROOT / "pages" / "3_Evaluate.py"), default_timeout=120).run()
    assert not at.exception
    assert not any((w.key or "").startswith("eval_path_") for w in at.text_input)


def test_ice_servers_are_validated():
    from facesearch.errors import ConfigError
    from facesearch.settings import parse_ice_servers

    assert parse_ice_servers("") == ()
    assert parse_ice_servers("stun:stun.example.org:3478") == ({"urls": ["stun:stun.example.org:3478"]},)
    turn = '[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]'
    assert parse_ice_servers(turn)[0]["username"] == "u"
    for bad, why in (("[{", "not valid JSON"), ('[{"urls": ["http://x"]}]', "stun:"),
                     ('{"urls": "turn:t.example.org"}', "username")):
        with pytest.raises(ConfigError, match=why):
            parse_ice_servers(bad)


def test_a_bad_ice_setting_is_an_error_on_the_match_page_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACESEARCH_ICE_SERVERS", '[{"urls": ["turn:t.example.org"]}]')
    from store import FaceGallery
    from store.gallery import close_client

    s = Settings(home=tmp_path / "home")
    FaceGallery("sface", 128, "yunet", s).upsert(["a"], _unit(1), [{"identity": "x"}])
    close_client(s)
    at = AppTest.from_file(str(ROOT / "pages" / "1_Match.py"), default_timeout=120)
    at.session_state["match_mode"] = "Live webcam"
    at.run()
    assert not at.exception
    from components.text import md_unescape

    assert any("FACESEARCH_ICE_SERVERS" in md_unescape(e.value) and "username" in e.value for e in at.error), _texts(at)


def test_admin_home_has_export_restore_and_the_audit_log(hosted_env):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="admin_password_input").set_value("s3cret")
    at.button(key="admin_sign_in").click().run()
    assert not at.exception
    labels = [t.label for t in at.tabs]
    assert "Export / restore" in labels and "Audit log" in labels
    at.button(key="admin_sign_out").click().run()
    assert "Audit log" not in [t.label for t in at.tabs]


# -- models a visitor may load, and what a visitor's messages show (issue 17) ----------------
MATCH = str(ROOT / "pages" / "1_Match.py")


def test_visitors_choose_among_the_models_the_admin_made_available(hosted_env):
    """Default: the offline models whose weights are on disk; a forged session state that picks
    another (a download, another model in memory) is refused and nothing is loaded."""
    from facesearch.access import check_model
    from facesearch.models import registry
    from facesearch.models.registry import visitor_models

    s = Settings.from_env()
    allowed = visitor_models(s)
    assert allowed and set(allowed) <= set(registry.OFFLINE_MODELS) and "VGG-Face" not in allowed
    at = AppTest.from_file(MATCH, default_timeout=120).run()
    assert not at.exception
    assert list(at.selectbox(key="model").options) == list(allowed)
    # The page's widgets cannot offer another; a forged session state is refused by the core check.
    at = AppTest.from_file(MATCH, default_timeout=120)
    at.session_state["model"] = "VGG-Face"
    at.run()
    assert not at.exception
    assert any("not available to visitors" in e.value for e in at.error), _texts(at)
    assert at.selectbox(key="model").value in allowed
    assert not [k for k, m in registry._cache._items.items() if k[0] == "VGG-Face" and m._loaded]
    with pytest.raises(PermissionDeniedError, match="not available to visitors"):
        check_model(VISITOR, "VGG-Face", allowed)
    assert check_model(VISITOR, allowed[0], allowed) == allowed[0]
    assert check_model(ADMIN, "VGG-Face", allowed) == "VGG-Face" and check_model(None, "ArcFace", ()) == "ArcFace"
    # The Evaluate page offers a visitor the same models.
    ev = AppTest.from_file(str(ROOT / "pages" / "3_Evaluate.py"), default_timeout=120).run()
    assert not ev.exception and set(ev.multiselect(key="eval_models").options) <= set(allowed)
    # Signed in, the admin chooses among every model.
    at.session_state["admin_signed_in"] = True
    at.run()
    assert list(at.selectbox(key="model").options) == list(registry.MODELS)


def test_the_admin_may_widen_the_visitors_models(hosted_env, monkeypatch):
    from facesearch.errors import UnknownModelError
    from facesearch.models.registry import visitor_models

    monkeypatch.setenv("FACESEARCH_VISITOR_MODELS", "sface, vgg-face")
    assert visitor_models(Settings.from_env()) == ("sface", "VGG-Face")
    monkeypatch.setenv("FACESEARCH_VISITOR_MODELS", "sface,nonsense")
    with pytest.raises(UnknownModelError):
        visitor_models(Settings.from_env())


def _raise_with_a_path():
    """A page that fails as a model with missing weights does: the message names a server path."""
    import streamlit as st

    from components import common
    from facesearch.errors import WeightsMissingError

    home = common.settings().home
    st.session_state.setdefault("admin_signed_in", False)
    with common.user_errors():
        raise WeightsMissingError("VGG-Face", "vgg_face_weights.h5", str(home / "models" / ".deepface" / "weights"),
                                  "no route to /root/.deepface/weights")


def test_an_error_with_a_path_shows_no_path_to_a_visitor(hosted_env):
    at = AppTest.from_function(_raise_with_a_path, default_timeout=120).run()
    assert not at.exception and at.error
    shown = _texts(at)
    assert "VGG-Face" in shown and "a folder on the server" in shown, shown
    for secret in (str(hosted_env), "/root", ".deepface", "/weights"):
        assert secret not in shown, (secret, shown)
    at.session_state["admin_signed_in"] = True  # the admin sees the full message
    at.run()
    assert str(hosted_env / "models" / ".deepface" / "weights") in _texts(at)


def _crash_with_a_path():
    import streamlit as st

    from components import common

    st.session_state.setdefault("admin_signed_in", False)
    try:
        open(common.settings().home / "no" / "such.file")
    except Exception as exc:  # as app.py catches what a page raises
        common.show_crash(exc)


def test_tracebacks_are_off_and_the_dashboard_shows_them_only_to_the_admin(hosted_env):
    import tomllib

    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert conf["client"]["showErrorDetails"] == "none"  # Streamlit's own error boxes: no details
    assert "show_crash" in (ROOT / "app.py").read_text()
    at = AppTest.from_function(_crash_with_a_path, default_timeout=120).run()
    assert not at.exception and at.error and str(hosted_env) not in _texts(at) and "such.file" not in _texts(at)
    at.session_state["admin_signed_in"] = True
    at.run()
    assert at.exception and "FileNotFoundError" in _texts(at)
