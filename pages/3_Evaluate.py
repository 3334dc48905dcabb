"""Evaluate: compare embedding models on a labelled dataset and choose each one's threshold."""

from components import common, evaluate_view

evaluate_view.render(common.sidebar())
