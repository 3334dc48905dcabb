"""The Evaluate page's threshold panel: one model's threshold slider, its rates on the
evaluation's pairs, and (for an admin) the buttons that make it the model's verify
threshold or change its gallery searches' target share of strangers called a match."""

from __future__ import annotations

import numpy as np
import streamlit as st

from components.common import Active, user_errors
from facesearch.evaluation.evaluate import ModelResult


def threshold_panel(r: ModelResult, act: Active, actor=None) -> None:
    """``actor``: the session's; only an admin is offered the buttons that save a threshold."""
    from facesearch.search.thresholds import set_threshold, threshold_info

    best = float(r.summary["best_f1"]["threshold"])
    hi = float(max(1.0, np.max(r.distances)))
    key = f"eval_thr_{r.model}_{r.task}"
    thr = st.slider(f"{r.model}: threshold (cosine distance)", 0.0, round(hi, 3), round(best, 3), 0.001,
                    key=key, format="%.3f")
    pt = r.at(thr)
    c = st.columns(5)
    c[0].metric("precision", f"{pt['precision']:.3f}")
    c[1].metric("recall", f"{pt['recall']:.3f}")
    c[2].metric("F1", f"{pt['f1']:.3f}")
    c[3].metric("false match rate", f"{pt['fpr']:.3f}")
    info = threshold_info(r.model, act.settings)
    c[4].metric("in use now", f"{info['threshold']:.3f}", help=f"source: {info['source']}")
    notes = [f"best F1 at {best:.3f}"]
    if r.at_precision:
        notes.append(f"precision ≥ {r.at_precision['target']:.2f} at {r.at_precision['threshold']:.3f} "
                     f"(recall {r.at_precision['recall']:.3f})")
    if r.at_fmr:
        notes.append(f"FMR ≤ {r.at_fmr['target']:.3f} at {r.at_fmr['threshold']:.3f} "
                     f"(recall {r.at_fmr['recall']:.3f})")
    st.caption("; ".join(notes))
    admin = actor is not None and actor.admin
    if r.task == "kinship":
        st.caption("Kinship thresholds are for exploring only: verdicts are about the same person.")
    elif admin and st.button(f"Use this threshold to verify two photos with {r.model}", key=f"use_{r.model}_{r.task}"):
        with user_errors():
            v = set_threshold(r.model, thr, f"Evaluate page: {r.task}, {r.summary['n_pairs']} pairs",
                              act.settings, actor=actor)
            st.success(f"{r.model} now calls two photos the same person at distance ≤ {v:.3f} (verify, page and CLI).")
    search_target(r.model, act, actor)


# A gallery search's threshold follows the gallery's size, so what a user picks for it is
# the share of people not in the gallery that may be called a match.
FPIR_CHOICES = (0.001, 0.005, 0.01, 0.02, 0.05)


def search_target(model: str, act: Active, actor=None) -> None:
    from facesearch.search.thresholds import describe_fpir, search_thresholds, set_target_fpir, target_fpir

    settings = act.settings
    with user_errors():
        now = target_fpir(model, settings)
        choices = sorted(set(FPIR_CHOICES) | {now})
        pick = st.select_slider(f"{model}: gallery search, share of strangers called a match", choices,
                                value=now, format_func=lambda v: f"{v:.1%}", key=f"fpir_{model}")
        n = max(1, act.size(model))
        thr, _ = search_thresholds(model, settings, n, target=pick)
        st.caption(f"With the current gallery: match at distance ≤ {thr:.3f}; {describe_fpir(pick, n)}. "
                   "The threshold tightens as the gallery grows.")
        if actor is not None and actor.admin and st.button(f"Use this target for {model}'s gallery searches",
                                                           key=f"use_fpir_{model}"):
            set_target_fpir(model, pick, "Evaluate page", settings, actor=actor)
            st.success(f"{model}: gallery searches now call about {pick:.1%} of people not in the gallery a match.")
