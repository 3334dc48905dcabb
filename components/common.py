"""Shared UI plumbing: cached core objects, the sidebar, error display.

Models and pipelines are cached with ``st.cache_resource``: one instance per process,
shared by every session (the core guards them with locks, so that is thread-safe).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import streamlit as st

# pylibsrtp (used by aiortc, under the live webcam) segfaults in its init when it is first
# imported after TensorFlow (clashing native libraries): the whole server would die. Every
# page imports this module before any model loads, so load it here first (~20 ms). Never
# after TensorFlow (e.g. a test process that ran a model first): that is the crash itself;
# components/webcam.py then refuses to start instead.
import sys as _sys

if "tensorflow" not in _sys.modules:
    try:
        import pylibsrtp  # noqa: F401
    except ImportError:  # the webcam is optional
        pass

from facesearch.errors import FaceSearchError
from facesearch.settings import Settings, get_settings


@st.cache_resource(show_spinner="Loading face models…")
def cached_pipeline(model: str, detector: str, home: str):
    from facesearch.pipeline import Pipeline

    settings = get_settings().with_(home=__import__("pathlib").Path(home))
    pipe = Pipeline(model, detector, settings)
    pipe.model.load()
    return pipe


def _secret(key: str):
    try:
        return st.secrets.get(key)
    except Exception:  # no secrets.toml: Streamlit raises rather than returning nothing
        return None


def settings() -> Settings:
    """The environment's settings, with the admin password from Streamlit's secrets when
    the environment sets none."""
    s = get_settings()
    if not s.admin_password:
        pw = _secret("admin_password")
        if pw:
            s = s.with_(admin_password=str(pw))
    return s


def actor():
    """This session's :class:`facesearch.access.Actor` (visitor, admin or local user)."""
    from facesearch.access import session_actor

    return session_actor(settings(), bool(st.session_state.get("admin_signed_in")))


def active() -> tuple[Settings, str, str]:
    """(settings, model, detector) chosen in the sidebar for this session."""
    s = settings()
    model = st.session_state.get("model", s.model)
    detector = st.session_state.get("detector", s.detector)
    return s.with_(model=model, detector=detector), model, detector


def active_gallery_size(model: str | None = None) -> int:
    """Faces in the active detector's gallery for ``model`` (default: the active model),
    read from the database without loading a model."""
    from store import list_galleries

    s, active_model, detector = active()
    model = model or active_model
    for g in list_galleries(s):
        if g["model"] == model and g["detector"] == detector:
            return int(g["count"])
    return 0


def pipeline():
    s, model, detector = active()
    return cached_pipeline(model, detector, str(s.home))


def gallery(create: bool = True):
    """The active gallery, written (if at all) as this session's actor."""
    from facesearch.search import open_gallery

    return open_gallery(pipeline(), create=create, actor=actor())


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a FaceSearchError as ``st.error`` (no traceback) and stop the script."""
    try:
        yield
    except FaceSearchError as exc:
        st.error(str(exc))
        st.stop()


def sidebar() -> None:
    """Gallery switcher and status, shown on every page."""
    from facesearch.detection import DETECTORS
    from facesearch.models import MODELS
    from store import list_galleries

    s = settings()
    with st.sidebar:
        st.subheader("Gallery")
        st.session_state.setdefault("model", s.model)
        st.session_state.setdefault("detector", s.detector)
        st.selectbox("Model", MODELS, key="model")
        st.selectbox("Detector", DETECTORS, key="detector")
        try:
            gals = {(g["model"], g["detector"]): g for g in list_galleries(s)}
        except FaceSearchError as exc:
            st.error(str(exc))
            return
        g = gals.get((st.session_state["model"], st.session_state["detector"]))
        if g:
            st.caption(f"Active gallery **{g['name']}**: {g['count']:,} faces")
        else:
            st.caption("This gallery is empty: build it on the Home page.")
        others = [f"{k[0]} / {k[1]} ({v['count']:,})" for k, v in gals.items() if k != (st.session_state['model'], st.session_state['detector'])]
        if others:
            st.caption("Other galleries: " + ", ".join(others))
        me = actor()
        if me.admin:
            st.caption(f"Data folder: `{s.home}`")
        admin_box(s)


def admin_box(s: Settings) -> None:
    """Sign in and out as the admin (hosted), or say that this is a single-user setup."""
    from facesearch.access import check_password, hosted

    if not hosted(s):
        st.caption("Single-user mode: no admin password is set, so whoever opens this page can change the "
                   "gallery. Set `FACESEARCH_ADMIN_PASSWORD` before hosting it for others.")
        return
    if st.session_state.get("admin_signed_in"):
        st.caption("Signed in as **admin**.")
        if st.button("Sign out", key="admin_sign_out"):
            st.session_state["admin_signed_in"] = False
            st.rerun()
        return
    with st.expander("Admin sign-in"):
        pw = st.text_input("Admin password", type="password", key="admin_password_input")
        if st.button("Sign in", key="admin_sign_in"):
            if check_password(s, pw):
                st.session_state["admin_signed_in"] = True
                st.session_state.pop("admin_password_input", None)
                st.rerun()
            else:
                import time

                time.sleep(1.0)  # slows guessing down
                st.error("Wrong password.")
