"""Shared UI plumbing: cached core objects, the sidebar, error display.

Models and pipelines are cached with ``st.cache_resource``: one instance per process,
shared by every session (the core guards them with locks, so that is thread-safe).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

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
import store.server as _server

# A page waits this long for a database server being restarted (``facesearch serve``
# supervises it), then says "the database is restarting" instead of hanging; the CLI
# waits as long as for a start.
_server.RESTART_WAIT = 2.0


@st.cache_resource(show_spinner="Loading face models…")
def cached_pipeline(model: str, detector: str, home: str):
    """The core's shared pipeline (the one ``facesearch.search.identify`` uses), its model loaded."""
    from facesearch.embedding.pipeline import get_pipeline

    pipe = get_pipeline(model, detector, get_settings().with_(home=__import__("pathlib").Path(home)))
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


def pipeline():
    """The pipeline of the model and detector chosen in the sidebar, loaded (a visitor only
    gets a model the admin made available: facesearch.access.check_model)."""
    from facesearch.access import check_model
    from facesearch.models.registry import visitor_models

    s, who = settings(), actor()
    model = st.session_state.get("model", s.model)
    model = check_model(who, model, () if who.admin else visitor_models(s))
    return cached_pipeline(model, st.session_state.get("detector", s.detector), str(s.home))


def gallery(create: bool = True):
    """The active gallery, written (if at all) as this session's actor. Searched in this
    process's memory: the dashboard lives long and serves every session (store/memindex.py)."""
    from facesearch.search.identify import open_gallery

    return open_gallery(pipeline(), create=create, actor=actor(), memory_index=True)


def shown_message(message: object) -> str:
    """A message (an error's text, which may quote labels and paths) as Markdown text: its
    labels escaped (components/text.py), and for a visitor its server paths hidden."""
    from components.text import md_escape, without_paths

    text = str(message)
    if not actor().admin:
        s = settings()
        text = without_paths(text, s.home, s.home.resolve(), s.cache_path, s.cache_path.resolve())
    return md_escape(text)


def show_error(message: object) -> None:
    st.error(shown_message(message))


def show_warning(message: object) -> None:
    st.warning(shown_message(message))


def show_crash(exc: BaseException) -> None:
    """An unexpected exception of a page: its traceback for the admin (or the local user),
    one sentence without any detail for a visitor (tracebacks name the server's paths).
    The server's log has it in full either way."""
    import logging

    logging.getLogger("facesearch").error("page failed", exc_info=exc)
    try:
        admin = actor().admin
    except Exception:  # the settings themselves may be what failed
        admin = False
    if admin:
        st.error(f"This page failed: {type(exc).__name__}. Details for the admin:")
        st.exception(exc)
    else:
        st.error("Something went wrong on this page. The admin can find the details in the server's log.")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a FaceSearchError as ``st.error`` (no traceback, no Markdown; no server path to a
    visitor) and stop the script."""
    try:
        yield
    except FaceSearchError as exc:
        show_error(exc)
        st.stop()


@dataclass
class Active:
    """The sidebar's model and detector and every gallery in the database, read once per
    script run (one ``list_galleries`` call) and passed to whatever needs them. ``error``:
    the database did not answer; :meth:`info` raises it, so a page shows it in place."""

    settings: Settings
    model: str
    detector: str
    galleries: list[dict] = field(default_factory=list)
    error: FaceSearchError | None = None

    def info(self, model: str | None = None) -> dict | None:
        """The gallery of ``model`` (default: the chosen one) with the chosen detector, as
        ``list_galleries`` describes it; None before its first face."""
        if self.error is not None:
            raise self.error
        model = model or self.model
        return next((g for g in self.galleries if g["model"] == model and g["detector"] == self.detector), None)

    def size(self, model: str | None = None) -> int:
        g = self.info(model)
        return int(g["count"]) if g else 0

    def open(self, actor=None):
        """The chosen gallery, opened from its description without loading a model (None
        when it does not exist yet), searched in memory as :func:`gallery`; written, if at
        all, as ``actor``."""
        from store import FaceGallery

        g = self.info()
        return None if g is None else FaceGallery(g["model"], g["dim"], g["detector"], self.settings, create=False,
                                                  actor=actor, memory_index=True)


J = TypeVar("J")


def job_finished(job: J | None, progress: Callable[[J], None]) -> bool:
    """For a page polling a background job (facesearch.jobs.BackgroundJob): True once
    ``job`` has finished (the caller then shows its report or error); while it runs,
    ``progress(job)`` (a fragment that refreshes itself) and False; False when there is
    none."""
    if job is None:
        return False
    if not job.running:
        return True
    progress(job)
    return False


def sidebar() -> Active:
    """Gallery switcher and status, shown on every page; returns what it read. A visitor
    chooses among :func:`facesearch.access.visitor_models` only."""
    from components.text import md_escape

    from facesearch.access import check_model
    from facesearch.imaging.detection import DETECTORS
    from facesearch.models.registry import allowed_models
    from store import list_galleries

    s = settings()
    with st.sidebar:
        st.subheader("Gallery")
        models = allowed_models(s, actor())
        if not models:
            st.error("No face model is available on this server yet: the admin has to install one.")
            st.stop()
        chosen = st.session_state.get("model")
        if chosen is not None and chosen not in models:
            try:  # a forged session state (or a model withdrawn since): refused, back to the default
                check_model(actor(), chosen, models)
            except FaceSearchError as exc:
                show_error(exc)
            st.session_state.pop("model")
        st.session_state.setdefault("model", s.model if s.model in models else models[0])
        st.session_state.setdefault("detector", s.detector)
        model = st.selectbox("Model", models, key="model")
        detector = st.selectbox("Detector", DETECTORS, key="detector")
        act = Active(s.with_(model=model, detector=detector), model, detector)
        try:
            act.galleries = list_galleries(s)
        except FaceSearchError as exc:
            act.error = exc
            show_error(exc)
            return act
        g = act.info()
        if g:
            st.caption(f"Active gallery **{md_escape(g['name'])}**: {g['count']:,} faces")
        else:
            st.caption("This gallery is empty: build it on the Home page.")
        others = [f"{o['model']} / {o['detector']} ({o['count']:,})" for o in act.galleries if o is not g]
        if others:
            st.caption("Other galleries: " + md_escape(", ".join(others)))
        if actor().admin:
            st.caption(f"Data folder: {md_escape(s.home)}")
        admin_box(s)
    return act


def admin_box(s: Settings) -> None:
    """Sign in and out as the admin (hosted), or say that this is a single-user setup."""
    from facesearch.access import hosted

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
        from facesearch.signin import SessionAttempts, SignInGuard

        pw = st.text_input("Admin password", type="password", key="admin_password_input")
        if st.button("Sign in", key="admin_sign_in"):
            # Throttled per session and for the whole server, and audited (facesearch/signin.py).
            attempts = st.session_state.setdefault("admin_sign_in_attempts", SessionAttempts())
            result = SignInGuard(s).attempt(attempts, pw)
            if result.ok:
                st.session_state["admin_signed_in"] = True
                st.session_state.pop("admin_password_input", None)
                st.rerun()
            else:
                st.error(result.message)
