"""Evaluate page: compare models on a labelled dataset and pick a verdict threshold.

The comparison itself is :func:`facesearch.evaluate.evaluate`; this module only reads
widgets, calls it (cached by its parameters) and draws the result. The result lives in
``st.session_state["eval_result"]`` so moving a threshold slider re-renders without
recomputing anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from components.common import active, sidebar, user_errors
from facesearch.evaluate import DATASETS, TASKS, Comparison, ModelResult, default_path, evaluate
from facesearch.settings import Settings

_DATASET_LABELS = {
    "fiw": "FIW: kinship + same person (train-faces/, train-pairs.csv)",
    "lfw": "LFW: official pairs.txt protocol",
    "folder": "Identity folders: CelebA, NAME/*.jpg or path,label csv",
    "master": "deepface master.csv pair list",
}
RESULT_KEY = "eval_result"


@st.cache_data(show_spinner=False, max_entries=16)
def run_cached(dataset: str, path: str, models: tuple[str, ...], settings_key: str, task: str | None, seed: int,
               limit: int | None, target_precision: float, target_fmr: float, _settings: Settings,
               _progress=None) -> Comparison:
    """:func:`evaluate` memoised on its parameters (``settings_key`` stands for ``_settings``)."""
    return evaluate(dataset, path or None, list(models), _settings, task=task, seed=seed, limit=limit,
                    target_precision=target_precision, target_fmr=target_fmr, progress=_progress)


def _model_options(settings: Settings) -> tuple[list[str], dict[str, bool]]:
    from facesearch.models import list_models

    infos = list_models(settings)
    return [m["name"] for m in infos], {m["name"]: bool(m["ready"]) for m in infos}


def _controls(settings: Settings) -> dict | None:
    names, ready = _model_options(settings)
    c1, c2 = st.columns([1, 2])
    dataset = c1.selectbox("Dataset", DATASETS, key="eval_dataset", format_func=lambda d: _DATASET_LABELS[d])
    default = default_path(dataset)
    path = c2.text_input("Dataset path (folder or pairs file)", value=str(default or ""), key=f"eval_path_{dataset}")
    tasks = TASKS[dataset]
    c1, c2, c3 = st.columns(3)
    task = c1.selectbox("Task", ["all", *tasks] if len(tasks) > 1 else list(tasks), key=f"eval_task_{dataset}")
    seed = int(c2.number_input("Seed", min_value=0, value=0, step=1, key="eval_seed"))
    limit = int(c3.number_input("Pairs per task (0 = all)", min_value=0, value=100, step=50, key="eval_limit",
                                help="Half same, half different. A full FIW run embeds ~4,000 photos per model."))
    models = st.multiselect(
        "Models", names, default=[n for n in names if ready[n]][:2], key="eval_models",
        format_func=lambda n: n if ready[n] else f"{n} (weights missing: needs a download)",
        help="Models without weights on disk fail without network; they are reported and the others still run.",
    )
    c1, c2 = st.columns(2)
    tp = c1.number_input("Target precision", 0.5, 1.0, 0.95, 0.01, key="eval_target_precision")
    tf = c2.number_input("Target false match rate", 0.0, 0.5, 0.01, 0.001, format="%.3f", key="eval_target_fmr")
    if not st.button("Run", key="run_eval", type="primary"):
        return None
    if not models:
        st.warning("Pick at least one model.")
        return None
    return {"dataset": dataset, "path": path.strip(), "models": tuple(models),
            "task": None if task == "all" else task, "seed": seed, "limit": limit or None,
            "target_precision": float(tp), "target_fmr": float(tf)}


def _curves(cmp: Comparison, task: str):
    import plotly.graph_objects as go

    pr, roc = go.Figure(), go.Figure()
    for r in cmp.results:
        if r.task != task or not r.ok:
            continue
        p, rc, _ = r.pr()
        pr.add_scatter(x=rc, y=p, mode="lines", name=f"{r.model} (AP {r.summary['average_precision']:.3f})",
                       line_shape="hv")
        fpr, tpr, _ = r.roc()
        roc.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{r.model} (AUC {r.summary['roc_auc']:.3f})")
    pr.update_layout(title="Precision-recall", xaxis_title="recall", yaxis_title="precision",
                     xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=380, margin=dict(t=40, b=10))
    roc.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance")
    roc.update_layout(title="ROC", xaxis_title="false match rate", yaxis_title="true match rate",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=380, margin=dict(t=40, b=10))
    return pr, roc


def _threshold_panel(r: ModelResult, settings: Settings) -> None:
    from facesearch.thresholds import set_threshold, threshold_info

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
    info = threshold_info(r.model, settings)
    c[4].metric("in use now", f"{info['threshold']:.3f}", help=f"source: {info['source']}")
    notes = [f"best F1 at {best:.3f}"]
    if r.at_precision:
        notes.append(f"precision ≥ {r.at_precision['target']:.2f} at {r.at_precision['threshold']:.3f} "
                     f"(recall {r.at_precision['recall']:.3f})")
    if r.at_fmr:
        notes.append(f"FMR ≤ {r.at_fmr['target']:.3f} at {r.at_fmr['threshold']:.3f} "
                     f"(recall {r.at_fmr['recall']:.3f})")
    st.caption("; ".join(notes))
    if st.button(f"Use this threshold for {r.model}", key=f"use_{r.model}_{r.task}"):
        with user_errors():
            v = set_threshold(r.model, thr, f"Evaluate page: {r.task}, {r.summary['n_pairs']} pairs", settings)
        st.success(f"{r.model} now calls a match at distance ≤ {v:.3f} (Match page and CLI).")


def _results(cmp: Comparison, settings: Settings) -> None:
    st.subheader("Side by side")
    for r in cmp.results:
        if r.error:
            st.warning(f"{r.model} ({r.task}): {r.error}")
    table = cmp.to_table()
    st.dataframe(table.drop(columns=["error"]), hide_index=True)
    st.caption("thr@F1 / P / R: threshold with the best F1 and its precision/recall; p_*: the largest recall at the "
               "target precision; fmr_*: at the target false match rate. ms_per_face: detection + alignment + "
               "embedding, as first computed. computed/cached: photos embedded now vs read from the cache.")
    tasks = cmp.tasks
    task = st.radio("Task", tasks, horizontal=True, key="eval_view_task") if len(tasks) > 1 else tasks[0]
    ok = [r for r in cmp.results if r.task == task and r.ok]
    if not ok:
        return
    pr, roc = _curves(cmp, task)
    c1, c2 = st.columns(2)
    c1.plotly_chart(pr)
    c2.plotly_chart(roc)
    st.subheader("Threshold")
    for r in ok:
        _threshold_panel(r, settings)
    rel = [row for r in ok for row in r.by_relation]
    if rel:
        import pandas as pd

        st.subheader("By relation type")
        st.caption("Each relation's kin pairs against the non-kin pairs matched to them, at each model's best-F1 "
                   "threshold.")
        st.dataframe(pd.DataFrame(rel), hide_index=True)
    c1, c2, c3 = st.columns(3)
    stem = f"facesearch-{cmp.dataset}"
    c1.download_button("Table (CSV)", cmp.table_csv(), f"{stem}.csv", "text/csv", key="eval_dl_csv")
    c2.download_button("Pairs with distances (CSV)", cmp.pairs_csv(), f"{stem}.pairs.csv", "text/csv",
                       key="eval_dl_pairs")
    c3.download_button("Everything (JSON)", cmp.to_json(), f"{stem}.json", "application/json", key="eval_dl_json")


def render() -> None:
    sidebar()
    st.title("Evaluate models")
    st.write("Which model finds the same person, or a relative, most reliably, and at which threshold? "
             "Embeddings are cached per (model, detector, photo): a second run computes nothing.")
    settings, _, detector = active()
    params = _controls(settings)
    if params is not None:
        bar = st.progress(0.0, text="Embedding photos…")

        def progress(done: int, total: int, path: str) -> None:
            bar.progress(done / max(total, 1), text=f"{done}/{total} {Path(path).name}")

        with user_errors():
            cmp = run_cached(**params, settings_key=repr(settings), _settings=settings, _progress=progress)
        bar.empty()
        st.session_state[RESULT_KEY] = cmp
    cmp = st.session_state.get(RESULT_KEY)
    if cmp is not None:
        _results(cmp, settings)
