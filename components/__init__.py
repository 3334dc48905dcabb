"""Reusable Streamlit widgets. Only this package and pages/ import streamlit."""
