"""Explore: the gallery as a map (PCA / t-SNE), a query face placed on it, group
similarity and embedding barcodes. The work is in components.explore_view and
facesearch.projection."""

import streamlit as st

from components.common import active, pipeline, sidebar, user_errors
from components.explore_view import render

st.title("Explore the gallery")
sidebar()
with user_errors():
    render(active()[0], pipeline)
