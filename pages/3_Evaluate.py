"""Evaluate: compare embedding models on a labelled dataset and choose each one's threshold."""

import streamlit as st

from components import evaluate_view

st.set_page_config(page_title="Evaluate · facesearch", page_icon="📊", layout="wide")
evaluate_view.render()
