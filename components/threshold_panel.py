"""The Evaluate page's threshold panel: one model's threshold slider, its rates on the
evaluation's pairs, and (for an admin) the buttons that make it the model's verify
threshold or change its gallery searches' target share of strangers called a match.

A change takes two clicks: "Use this ..." shows what it would do (the rates today and
proposed, from :mod:`facesearch.search.thresholds`' preview), and only "Save this ..."
saves it; a threshold read off too few different-person pairs to know its false match
rate is refused there. "Restore previous threshold" undoes the model's last save.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import streamlit as st

from components.common import Active, user_errors
from facesearch.evaluation.pairs import ModelResult
from facesearch.settings import Settings


def _plain(text: str) -> str:
    """``text`` shown as itself in a Markdown element: sources and calibration names are
    data, not markup."""
    from components.text import md_escape

    return md_escape(text)


def threshold_panel(r: ModelResult, act: Active, actor=None) -> None:
    """``actor``: the session's; only an admin is offered the buttons that save a threshold."""
    from facesearch.search.thresholds import preview_threshold, threshold_info

    best = float(r.summary["best_f1"]["threshold"])
    hi = float(max(1.0, np.max(r.distances)))
    key = f"eval_thr_{r.model}_{r.task}"
    thr = st.slider(f"{r.model}: threshold (cosine distance)", 0.0, round(hi, 3), round(best, 3), 0.001,
                    key=key, format="%.3f")
    pt = r.at(thr)
    impostors = pt["fp"] + pt["tn"]
    c = st.columns(5)
    c[0].metric("precision", f"{pt['precision']:.3f}")
    c[1].metric("recall", f"{pt['recall']:.3f}")
    c[2].metric("F1", f"{pt['f1']:.3f}")
    c[3].metric("false match rate", f"{pt['fpr']:.3f}", help=f"{pt['fp']} of {impostors} different-person pairs")
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
    elif admin:
        _two_step(f"{r.model}_{r.task}", thr, f"Use this threshold to verify two photos with {r.model}",
                  "Save this threshold",
                  lambda: preview_threshold(r.model, thr, f"Evaluate page: {r.task}, {r.summary['n_pairs']} pairs",
                                            act.settings, evidence=(pt["fp"], impostors)),
                  f"{r.model} now calls two photos the same person at distance ≤ {thr:.3f} (verify, page and CLI).",
                  act.settings, actor)
    search_target(r.model, act, actor)
    if admin:
        _restore(r.model, act.settings, actor)


def _two_step(key: str, value: float, use: str, save_label: str, make: Callable, done: str, settings: Settings,
              actor) -> None:
    """A change in two clicks: ``use`` shows ``make()``'s preview of ``value`` (kept until
    ``value`` moves), ``save_label`` saves that preview and reruns the page with ``done``."""
    from facesearch.search.thresholds import save

    pkey = f"preview_{key}"
    if (msg := st.session_state.pop(f"done_{key}", None)) is not None:
        st.success(msg)
    p = st.session_state.get(pkey)
    if p is not None and p.proposed != float(value):  # a preview of another value than the one on screen
        del st.session_state[pkey]
        p = None
    if st.button(use, key=f"use_{key}"):
        with user_errors():
            p = st.session_state[pkey] = make()
    if p is None:
        return
    st.info("\n\n".join(_plain(line) for line in p.lines()))
    if p.refusal:
        st.error(_plain(f"Not saved: {p.refusal}."))
        return
    c1, c2 = st.columns(2)
    if c1.button(save_label, key=f"save_{key}", type="primary"):
        with user_errors():
            save(p, settings, actor=actor)
        st.session_state.pop(pkey, None)
        st.session_state[f"done_{key}"] = done
        st.rerun()
    if c2.button("Cancel", key=f"cancel_{key}"):
        st.session_state.pop(pkey, None)
        st.rerun()


def _restore(model: str, settings: Settings, actor) -> None:
    """"Restore previous threshold", when ``model`` has a save to undo."""
    from facesearch.search.thresholds import history, history_line, restore_previous

    if (msg := st.session_state.pop(f"done_restore_{model}", None)) is not None:
        st.success(msg)
    h = history(model, settings)
    if not h:
        return
    st.caption(_plain(f"{model}'s last change: {history_line(h[-1])}"))
    if st.button(f"Restore previous threshold of {model}", key=f"restore_{model}"):
        with user_errors():
            last = restore_previous(model, settings, actor=actor)
        st.session_state[f"done_restore_{model}"] = f"{model}: undone: {history_line(last)}"
        st.rerun()


# A gallery search's threshold follows the gallery's size, so what a user picks for it is
# the share of people not in the gallery that may be called a match.
FPIR_CHOICES = (0.001, 0.005, 0.01, 0.02, 0.05)


def search_target(model: str, act: Active, actor=None) -> None:
    from facesearch.search.thresholds import preview_target_fpir, target_fpir
    from facesearch.search.verdicts import search_thresholds
    from facesearch.search.verdicts import describe_fpir

    settings = act.settings
    with user_errors():
        now = target_fpir(model, settings)
        choices = sorted(set(FPIR_CHOICES) | {now})
        pick = st.select_slider(f"{model}: gallery search, share of strangers called a match", choices,
                                value=now, format_func=lambda v: f"{v:.1%}", key=f"fpir_{model}")
        n = max(1, act.size(model))
        gcal = None
        if model == act.model and act.size(model):
            from facesearch.search.identify import gallery_rule

            # The gallery's own measurement, when it has one (never waited for here).
            gcal = gallery_rule(act.open(), model, settings).gallery
        thr, _ = search_thresholds(model, settings, n, target=pick, gallery_cal=gcal)
        own = gcal is not None and gcal.usable(pick)
        st.caption(f"With the current gallery: match at distance ≤ {thr:.3f}; {describe_fpir(pick, n)}"
                   + (", measured on the gallery's own faces" if own else "")
                   + ". The threshold tightens as the gallery grows.")
    if actor is not None and actor.admin:
        _two_step(f"fpir_{model}", pick, f"Use this target for {model}'s gallery searches", "Save this target",
                  lambda: preview_target_fpir(model, pick, n, "Evaluate page", settings),
                  f"{model}: gallery searches now call about {pick:.1%} of people not in the gallery a match.",
                  settings, actor)
