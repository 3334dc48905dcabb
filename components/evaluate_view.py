"""Evaluate page: compare models on a labelled dataset and pick a verdict threshold.

The comparison itself is :func:`facesearch.evaluation.pairs.evaluate`; this module only reads
widgets, calls it (:func:`run_once`: a Run with the same parameters, in any session, shows
the kept result) and draws the result. The result lives in
``st.session_state["eval_result"]`` so moving a threshold slider re-renders without
recomputing anything.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import streamlit as st
from tqdm import tqdm

from components.common import Active, actor, show_warning, user_errors
from components.threshold_panel import threshold_panel
from facesearch.evaluation.pairs import DATASETS, TASKS, Comparison, evaluate
from facesearch.evaluation.vectors import default_path
from facesearch.evaluation.identification import OPEN_SET_DATASETS, OpenSetComparison, evaluate_open_set
from facesearch.settings import Settings

_DATASET_LABELS = {
    "fiw": "FIW: kinship + same person (train-faces/, train-pairs.csv)",
    "lfw": "LFW: official pairs.txt protocol",
    "folder": "Identity folders: CelebA, NAME/*.jpg or path,label csv",
    "master": "deepface master.csv pair list",
}
RESULT_KEY = "eval_result"
OPEN_SET_KEY = "eval_open_set_result"


# Finished runs kept for every session of this server; the oldest go first.
MAX_KEPT_RUNS = 16


@st.cache_resource(show_spinner=False)
def _kept_runs() -> dict:
    """Finished runs by their parameters, shared by every session (cleared by Streamlit's
    "Clear cache"). Not ``st.cache_data`` around the run: it records the progress bar's
    updates, made on a bar drawn outside the run, and a cache hit fails replaying them
    (CacheReplayClosureError)."""
    return {}


def run_once(fn: Callable, settings: Settings, progress, **params):
    """``fn(settings=settings, progress=progress, **params)`` (:func:`evaluate` or
    :func:`evaluate_open_set`), or, without computing anything, what an earlier Run with
    the same parameters and settings gave in any session."""
    runs = _kept_runs()
    key = (fn.__name__, repr(settings), *sorted(params.items()))
    result = runs.get(key)
    if result is None:
        result = fn(settings=settings, progress=progress, **params)
        while len(runs) >= MAX_KEPT_RUNS:
            runs.pop(next(iter(runs), None), None)  # dicts keep insertion order: the oldest
        runs[key] = result
    return result


def _model_options(settings: Settings) -> tuple[list[str], dict[str, bool]]:
    from facesearch.models.registry import allowed_models, list_models

    # A visitor evaluates only the models the admin made available (no download, no extra
    # model in the server's memory).
    allowed = set(allowed_models(settings, actor()))
    infos = [m for m in list_models(settings) if m["name"] in allowed]
    return [m["name"] for m in infos], {m["name"]: bool(m["ready"]) for m in infos}


def _controls(settings: Settings) -> dict | None:
    names, ready = _model_options(settings)
    c1, c2 = st.columns([1, 2])
    dataset = c1.selectbox("Dataset", DATASETS, key="eval_dataset", format_func=lambda d: _DATASET_LABELS[d])
    default = default_path(dataset)
    if actor().admin:
        path = c2.text_input("Dataset path (folder or pairs file)", value=str(default or ""),
                             key=f"eval_path_{dataset}")
    else:
        # A visitor may not point the server at its own folders: the shipped datasets only.
        path = str(default or "")
        c2.caption("The server's copy of this dataset." if default else "Not available on this server.")
    tasks = TASKS[dataset]
    c1, c2, c3 = st.columns(3)
    task = c1.selectbox("Task", ["all", *tasks] if len(tasks) > 1 else list(tasks), key=f"eval_task_{dataset}")
    seed = int(c2.number_input("Seed", min_value=0, value=0, step=1, key="eval_seed"))
    limit = int(c3.number_input("Pairs per task (0 = all)", min_value=0, value=100, step=50, key="eval_limit",
                                help="Half same, half different. A full FIW run embeds ~4,000 photos per model."))
    models = st.multiselect(
        "Models", names, default=[settings.model] if settings.model in names else names[:1], key="eval_models",
        format_func=lambda n: n if ready[n] else f"{n} (weights missing: needs a download)",
        help="Models without weights on disk fail without network; they are reported and the others still run.",
    )
    c1, c2 = st.columns(2)
    tp = c1.number_input("Target precision", 0.5, 1.0, 0.95, 0.01, key="eval_target_precision")
    tf = c2.number_input("Target false match rate", 0.0, 0.5, 0.01, 0.001, format="%.3f", key="eval_target_fmr")
    open_set = _open_set_controls(dataset)
    if not st.button("Run", key="run_eval", type="primary"):
        return None
    if not models:
        st.warning("Pick at least one model.")
        return None
    from facesearch.access import check_model
    from facesearch.models.registry import allowed_models

    with user_errors():  # a forged session state cannot widen a visitor's choice
        allowed = allowed_models(settings, actor())
        models = [check_model(actor(), m, allowed) for m in models]
    return {"dataset": dataset, "path": path.strip() or None, "models": tuple(models),
            "task": None if task == "all" else task, "seed": seed, "limit": limit or None,
            "target_precision": float(tp), "target_fmr": float(tf), "open_set": open_set}


def _open_set_controls(dataset: str) -> dict | None:
    """The open-set box and its inputs (identity datasets only): None when off."""
    if dataset not in OPEN_SET_DATASETS:
        return None
    c1, c2, c3 = st.columns(3)
    on = c1.checkbox("Open-set (1:N search)", key="eval_open_set",
                     help="Half the people are enrolled in a gallery, the others are not; every other photo is "
                          "searched as on the Match page. Reports FPIR (strangers called a match), FNIR (enrolled "
                          "people missed), rank-1/5, the DET curve and how FPIR grows with the gallery.")
    enroll = int(c2.number_input("Photos enrolled per identity", min_value=1, value=1, step=1, key="eval_enroll",
                                 disabled=not on))
    max_ids = int(c3.number_input("Identities (0 = all)", min_value=0, value=0, step=10, key="eval_max_ids",
                                  disabled=not on, help="A seeded random subset of the people, for a quick run."))
    return {"enroll": enroll, "max_identities": max_ids or None} if on else None


def model_colours(models) -> dict[str, str]:
    """Each model of a run its own colour, in the run's model order, the same in every chart:
    Paul Tol's colour-blind-safe palette (plotly's ``Safe``) without its grey, which is left
    to the reference lines."""
    import plotly.express as px

    palette = px.colors.qualitative.Safe[:-1]
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


GREY = "rgb(136, 136, 136)"  # the ``Safe`` palette's grey: chance, thresholds other than a model's own
LIGHT_GREY = "rgb(187, 187, 187)"


def _curves(cmp: Comparison, task: str):
    import plotly.graph_objects as go

    colour = model_colours(cmp.params["models"])
    pr, roc = go.Figure(), go.Figure()
    for r in cmp.results:
        if r.task != task or not r.ok:
            continue
        p, rc, _ = r.pr()
        pr.add_scatter(x=rc, y=p, mode="lines", name=f"{r.model} (AP {r.summary['average_precision']:.3f})",
                       line_shape="hv", line_color=colour[r.model])
        fpr, tpr, _ = r.roc()
        roc.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{r.model} (AUC {r.summary['roc_auc']:.3f})",
                        line_color=colour[r.model])
    pr.update_layout(title="Precision-recall", xaxis_title="recall", yaxis_title="precision",
                     xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=380, margin=dict(t=40, b=10))
    roc.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color=GREY), name="chance")
    roc.update_layout(title="ROC", xaxis_title="false match rate", yaxis_title="true match rate",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=380, margin=dict(t=40, b=10))
    return pr, roc


# The tables' columns, {column: (header, number format, tooltip)}, in their order: short
# headers and rounded numbers so a table fits a 1,400 px window; a column with no value in
# any row is left out. The downloads keep every column.
_F3, _PCT = "%.3f", "percent"
_PAIR_COLUMNS = {
    "model": ("model", None, None), "task": ("task", None, None),
    "pairs": ("pairs", None, "Pairs scored, half same and half different; pairs with a photo without a face are "
                             "left out"),
    "roc_auc": ("AUC", _F3, "Area under the ROC curve"), "ap": ("AP", _F3, "Average precision"),
    "eer": ("EER", _F3, "Equal error rate"), "f1": ("best F1", _F3, "The best F1 over all thresholds"),
    "f1_threshold": ("thr@F1", _F3, "The threshold (cosine distance) with the best F1"),
    "p_recall": ("R@P", _F3, "The largest recall at precision {target_precision} or more"),
    "fmr_recall": ("R@FMR", _F3, "The recall at false match rate {target_fmr} or less"),
    "lfw_acc": ("accuracy", _F3, "LFW protocol: k-fold accuracy, each fold's threshold chosen on the others"),
    "rank1": ("rank-1", _F3, "Identification: the right person first"),
    "rank5": ("rank-5", _F3, "Identification: the right person among the first five"),
    "no_face_rate": ("no face", _PCT, "Photos where no face was found"),
    "ms_per_face": ("ms/face", "%.0f", "Detection, alignment and embedding per face, as first computed"),
}
_RELATION_COLUMNS = {
    "model": ("model", None, None), "relation": ("relation", None, None), "pos": ("kin", None, "Kin pairs"),
    "neg": ("non-kin", None, "Non-kin pairs matched to them"), "roc_auc": ("AUC", _F3, None), "ap": ("AP", _F3, None),
    "precision": ("precision", _F3, None), "recall": ("recall", _F3, None), "f1": ("F1", _F3, None),
    "kin_mean_distance": ("kin distance", _F3, "Mean distance of the kin pairs"),
    "nonkin_mean_distance": ("non-kin distance", _F3, "Mean distance of the non-kin pairs"),
}
_OPEN_SET_COLUMNS = {
    "model": ("model", None, None),
    "fpir": ("FPIR", _PCT, "Non-mated probes (people not enrolled) called a match at the search threshold"),
    "fnir": ("FNIR", _PCT, "Mated probes not called a match with their own identity at the search threshold"),
    "threshold": ("threshold", _F3, "The search threshold for this gallery size"),
    "predicted_fpir": ("predicted FPIR", _PCT, "What the model's calibration expects at that threshold"),
    "fnir_at_fpir_1pct": ("FNIR@FPIR 1%", _PCT, "FNIR where 1% of the non-mated probes are called a match"),
    "fnir_at_fpir_01pct": ("FNIR@FPIR 0.1%", _PCT, "FNIR where 0.1% of the non-mated probes are called a match"),
    "rank1": ("rank-1", _F3, None), "rank5": ("rank-5", _F3, None),
    "gallery_identities": ("enrolled", None, "People enrolled"), "no_face": ("no face", None, "Photos without a face"),
}
_SIZE_COLUMNS = {
    "model": ("model", None, None), "threshold_name": ("threshold", None, None), "threshold": ("distance", _F3, None),
    "identities": ("enrolled", None, None), "faces": ("faces", None, None),
    "subsets": ("galleries", None, "Random galleries of this size averaged"), "measured_fpir": ("measured", _PCT, None),
    "predicted_fpir_calibration": ("predicted (calibration)", _PCT, None),
    "predicted_fpir_data": ("predicted (this data)", _PCT, None),
}


def _table(df, columns: dict, **targets) -> None:
    """``df``'s ``columns`` that hold a value, with their headers, formats and tooltips
    (``targets`` fill the tooltips' ``{names}``)."""
    from streamlit import column_config as cc

    shown = [c for c in columns if c in df.columns and df[c].notna().any()]
    config = {}
    for c in shown:
        header, fmt, tip = columns[c]
        tip = tip.format(**targets) if tip else None
        config[c] = cc.NumberColumn(header, format=fmt, help=tip) if fmt else cc.Column(header, help=tip)
    st.dataframe(df[shown], hide_index=True, column_config=config)


def _results(cmp: Comparison, act: Active, actor=None) -> None:
    st.subheader("Side by side")
    for r in cmp.results:
        if r.error:
            show_warning(f"{r.model} ({r.task}): {r.error}")
    _table(cmp.to_table(), _PAIR_COLUMNS, **cmp.params)
    st.caption(f"Photos embedded for this result: {cmp.n_computed:,}; read from the embedding cache: "
               f"{sum(r.n_cached for r in cmp.results):,}. A column's name tells what it means when pointed at; "
               "the downloads below hold every figure.")
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
        threshold_panel(r, act, actor)
    rel = [row for r in ok for row in r.by_relation]
    if rel:
        import pandas as pd

        st.subheader("By relation type")
        st.caption("Each relation's kin pairs against the non-kin pairs matched to them, at each model's best-F1 "
                   "threshold.")
        _table(pd.DataFrame(rel), _RELATION_COLUMNS)
    c1, c2, c3 = st.columns(3)
    stem = f"facesearch-{cmp.dataset}"
    c1.download_button("Table (CSV)", cmp.table_csv(), f"{stem}.csv", "text/csv", key="eval_dl_csv")
    c2.download_button("Pairs with distances (CSV)", cmp.pairs_csv(), f"{stem}.pairs.csv", "text/csv",
                       key="eval_dl_pairs")
    c3.download_button("Everything (JSON)", cmp.to_json(), f"{stem}.json", "application/json", key="eval_dl_json")


def _det_chart(osc: OpenSetComparison):
    """FNIR against FPIR (log axes), one line per model, a marker at its threshold."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colour = model_colours(osc.params["models"])
    for r in (r for r in osc.results if r.ok and r.det):
        color = colour[r.model]
        x, y = np.asarray(r.det["fpir"]), np.asarray(r.det["fnir"])
        keep = (x > 0) & (y > 0)  # log axes cannot show 0
        fig.add_scatter(x=x[keep], y=y[keep], mode="lines", line_shape="hv", name=r.model, line=dict(color=color),
                        hovertemplate="FPIR %{x:.4f}<br>FNIR %{y:.4f}<extra>" + r.model + "</extra>")
        # Points at 0 are drawn at half a probe, the smallest rate the data could show.
        fx = max(r.fpir, 0.5 / max(r.n_nonmated, 1))
        fy = max(r.fnir if r.fnir is not None else 1.0, 0.5 / max(r.n_mated, 1))
        fig.add_scatter(x=[fx], y=[fy], mode="markers", marker=dict(size=11, symbol="x", color=color),
                        name=f"{r.model} at {r.threshold:.3f}",
                        hovertext=f"threshold {r.threshold:.3f}: FPIR {r.fpir:.2%}, FNIR {r.fnir:.2%}",
                        hoverinfo="text")
    fig.update_layout(title="DET: people missed against strangers matched", xaxis_title="FPIR (log)",
                      yaxis_title="FNIR (log)", xaxis_type="log", yaxis_type="log", height=420,
                      margin=dict(t=40, b=10))
    return fig


def _size_chart(r, colour: str):
    """Measured FPIR (markers) and the independence model (lines) against gallery size:
    the model's search threshold in its ``colour``, the others in greys (no model's)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    names = list(dict.fromkeys(row["threshold_name"] for row in r.fpir_vs_size))
    dashes = {"calibration": "dash", "data": "dot"}
    greys = iter([GREY, LIGHT_GREY] * len(names))
    for name in names:
        rows = [row for row in r.fpir_vs_size if row["threshold_name"] == name]
        color = colour if name == "search" else next(greys)
        x = [row["identities"] for row in rows]
        label = f"{name} ({rows[-1]['threshold']:.3f})" if name != "search_at_size" else "search threshold at each size"
        fig.add_scatter(x=x, y=[row["measured_fpir"] for row in rows], mode="markers", name=f"{label}: measured",
                        marker=dict(color=color, size=8))
        for key in [k for k in rows[0] if k.startswith("predicted_fpir_")]:
            src = key.removeprefix("predicted_fpir_")
            fig.add_scatter(x=x, y=[row[key] for row in rows], mode="lines", name=f"{label}: predicted ({src} FMR)",
                            line=dict(color=color, dash=dashes.get(src, "solid")))
    fig.update_layout(title=f"{r.model}: FPIR against enrolled identities", xaxis_title="enrolled identities",
                      yaxis_title="FPIR", xaxis_type="log", yaxis_tickformat=".1%", height=420,
                      margin=dict(t=40, b=10))
    return fig


def _open_set_results(osc: OpenSetComparison) -> None:
    st.subheader("Open-set identification (1:N search)")
    for r in osc.results:
        if r.error:
            show_warning(f"{r.model}: {r.error}")
    ok = [r for r in osc.results if r.ok]
    if not ok:
        return
    _table(osc.to_table(), _OPEN_SET_COLUMNS)
    r0 = ok[0]
    st.caption(f"{r0.gallery_identities} people enrolled with {r0.enroll} photo(s) each ({r0.gallery_faces} gallery "
               f"faces); their other photos are the {r0.n_mated} mated probes, the {r0.nonenrolled_identities} other "
               f"people's {r0.n_nonmated} photos the non-mated ones. FPIR and FNIR are read at each model's search "
               "threshold for this gallery size"
               + (" (fewer than 1,000 non-mated probes: FNIR at FPIR 0.1% is read at FPIR 0)."
                  if r0.n_nonmated < 1000 else "."))
    c1, c2 = st.columns(2)
    c1.plotly_chart(_det_chart(osc))
    pick = c2.selectbox("FPIR against gallery size for", [r.model for r in ok], key="eval_os_size_model") \
        if len(ok) > 1 else ok[0].model
    r = osc.result(pick)
    if r.fpir_vs_size:
        c2.plotly_chart(_size_chart(r, model_colours(osc.params["models"])[r.model]))
    st.caption("FPIR against gallery size: each point averages nested random galleries of that many enrolled "
               "people (seeded). Lines: 1 − (1 − FMR(t))^N for N gallery faces, with FMR from the model's impostor "
               "calibration (dashed) or from every impostor pair of this data (dotted); measured points below the "
               "lines mean the comparisons are not independent (the same strangers match again and again).")
    with st.expander("FPIR against gallery size: table"):
        _table(osc.size_table(), _SIZE_COLUMNS)
    for r in ok:
        hi = float(max(1.0, max(r.det.get("threshold") or [1.0])))
        thr = st.slider(f"{r.model}: try a threshold (cosine distance)", 0.0, round(hi, 3), round(r.threshold, 3),
                        0.001, key=f"eval_os_thr_{r.model}", format="%.3f")
        fpir, fnir = r.at(thr)
        c = st.columns(4)
        c[0].metric("FPIR", f"{fpir:.2%}")
        c[1].metric("FNIR", f"{fnir:.2%}")
        c[2].metric("search threshold now", f"{r.threshold:.3f}", help=r.threshold_source)
        c[3].metric("predicted FPIR there", "-" if r.predicted_fpir is None else f"{r.predicted_fpir:.2%}")
    stem = f"facesearch-{osc.dataset}-open-set"
    c1, c2 = st.columns(2)
    c1.download_button("Table (CSV)", osc.table_csv(), f"{stem}.csv", "text/csv", key="eval_os_dl_csv")
    c2.download_button("Everything (JSON)", osc.to_json(), f"{stem}.json", "application/json", key="eval_os_dl_json")


def _progress_bar():
    """A progress bar and its ``progress(done, total, stage)``, which writes "model, task:
    40/115 photos, 12.5 photos/s, 00:22 left" (tqdm's wording and estimate, as on the
    command line)."""
    bar = st.progress(0.0, text="Reading the dataset…")
    started: dict[str, float] = {}

    def progress(done: int, total: int, stage: str) -> None:
        elapsed = time.monotonic() - started.setdefault(stage, time.monotonic())  # done 0 starts a stage
        fmt = "{desc}: {n_fmt}/{total_fmt} photos" + (", {rate_noinv:.1f} photos/s, {remaining} left" if done and elapsed
                                                      else "")
        bar.progress(done / max(total, 1), text=tqdm.format_meter(done, total, elapsed, prefix=stage, bar_format=fmt))

    return bar, progress


def render(act: Active) -> None:
    """The Evaluate page below the sidebar, for the sidebar's choice ``act``."""
    st.title("Evaluate models")
    st.write("Which model finds the same person, or a relative, most reliably, and at which threshold? "
             "Embeddings are cached per (model, detector, photo): a second run computes nothing.")
    settings = act.settings
    params = _controls(settings)
    if params is not None:
        bar, progress = _progress_bar()
        open_set = params.pop("open_set", None)
        with user_errors():
            if open_set:
                osc = run_once(evaluate_open_set, settings, progress, dataset=params["dataset"], path=params["path"],
                               models=params["models"], seed=params["seed"], **open_set)
                cmp = None
            else:
                cmp = run_once(evaluate, settings, progress, **params)
                osc = None
        bar.empty()
        st.session_state[RESULT_KEY] = cmp
        st.session_state[OPEN_SET_KEY] = osc
    cmp = st.session_state.get(RESULT_KEY)
    if cmp is not None:
        _results(cmp, act, actor())
    osc = st.session_state.get(OPEN_SET_KEY)
    if osc is not None:
        _open_set_results(osc)
