"""The Home page's note while this process still loads the face models in the background
(facesearch.embedding.warmup, started by components/launch.py as the dashboard starts)."""

from __future__ import annotations

import streamlit as st

from components import common
from components.text import md_escape


def models_loading_notice() -> None:
    """Says which models are still loading and refreshes itself every second until they
    are done; then says nothing (or, for an admin, why one could not load in advance)."""
    from facesearch.embedding.warmup import current

    warmups = current()
    if any(not w.done for w in warmups):
        _loading()
        return
    if common.actor().admin:
        for w in warmups:
            if w.error:
                common.show_warning(w.summary())


@st.fragment(run_every=1.0)
def _loading() -> None:
    from facesearch.embedding.warmup import current

    pending = [w for w in current() if not w.done]
    if not pending:
        st.rerun()  # the whole page, which then leaves the note out
    names = ", ".join(f"{w.model} / {w.detector}" for w in pending)
    st.info(f"Loading the face models ({md_escape(names)}) in the background: a search started now waits "
            "for them.", icon=":material/hourglass_top:")
