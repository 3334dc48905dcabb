"""Explore: the gallery as a map (PCA / t-SNE), a query face placed on it, group
similarity and embedding barcodes. The work is in components.explore_view and
facesearch.explore.projection."""

import streamlit as st

from components import common
from components.explore_view import render

act = common.sidebar()
st.title("Explore the gallery")
with common.user_errors():
    render(act, common.pipeline, st.session_state.get("last_query"), st.session_state.setdefault("explore_memo", {}))
