"""Explore page widgets and charts: a map of the gallery, a placed query face, a group
similarity heatmap and an embedding barcode.

The maths lives in :mod:`facesearch.explore.projection`; this module reads widgets, caches
results by (gallery, face count, parameters) and draws them with plotly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from components.text import html_text, md_escape

from facesearch.explore import projection
from facesearch.settings import Settings

SEED = 0
MAX_THUMBS = 24
N_NEIGHBOURS = 5
# More groups than this and a legend is noise: colours stay, the legend goes.
MAX_LEGEND = 25


def _open(info: dict, home: str):
    from store import FaceGallery

    s = Settings.from_env().with_(home=Path(home))
    return FaceGallery(info["model"], info["dim"], info["detector"], s, create=False)


@st.cache_data(show_spinner="Reading the gallery…", max_entries=4)
def load_faces(name: str, count: int, home: str, info: dict) -> tuple[list[str], np.ndarray, list[dict]]:
    """Every face of the gallery: ``(ids, X (n, dim) float32, metadatas)``; ``count`` is in
    the key so that an ingest invalidates it."""
    return _open(info, home).all_embeddings()


def _who(md: dict | None) -> str:
    """A face's identity as the map labels it: a photo library's unnamed face is "unnamed"."""
    return str((md or {}).get("identity") or "unnamed")


@st.cache_data(max_entries=4)
def identity_counts(name: str, count: int, home: str, info: dict) -> dict[str, int]:
    return _open(info, home).identities()


@st.cache_data(max_entries=4)
def family_counts(name: str, count: int, home: str, info: dict) -> dict[str, int]:
    """Family -> members in the gallery (empty when no face has a family)."""
    from facesearch.kinship.family_view import families

    return families(_open(info, home))


@st.cache_data(show_spinner="Scoring the family…", max_entries=16)
def family_scores(name: str, count: int, home: str, info: dict, family: str):
    """:func:`facesearch.kinship.family_view.family_view` of ``family`` (no model loaded)."""
    from facesearch.kinship.family_view import family_view

    return family_view(_open(info, home), family, Settings.from_env().with_(home=Path(home)))


@st.cache_resource(show_spinner="Reading the gallery…", max_entries=4)
def sampled_faces(name: str, count: int, home: str, info: dict, n: int,
                  identities: tuple[str, ...]) -> tuple[list[str], np.ndarray, list[dict]]:
    """The faces the map shows: ``(ids, X (m, dim), metadatas)``; shared read-only."""
    ids, X, mds = load_faces(name, count, home, info)
    return projection.sample(ids, X, mds, n, list(identities) or None, seed=SEED)


# cache_resource, not cache_data: a fitted t-SNE carries its kNN graph (tens of MB on a
# big gallery), which cache_data would pickle and copy on every rerun. The Projection is
# only read after it is built, so sharing one instance between sessions is safe.
@st.cache_resource(show_spinner="Computing the map…", max_entries=8)
def compute_map(name: str, count: int, home: str, info: dict, method: str, dims: int, perplexity: int,
                learning_rate: str | float, n_iter: int, pca_components: int, n: int,
                identities: tuple[str, ...]) -> tuple[list[str], np.ndarray, list[dict], projection.Projection]:
    """The sampled faces ``(ids, X (m, dim), metadatas)`` and their map, computed from scratch."""
    ids, X, mds = sampled_faces(name, count, home, info, n, identities)
    if method == "PCA":
        proj = projection.pca(X, dims, seed=SEED)
    else:
        proj = projection.tsne(X, dims, perplexity=perplexity, learning_rate=learning_rate, n_iter=n_iter,
                               pca_components=pca_components, seed=SEED)
    return ids, X, mds, proj


@st.cache_data(max_entries=8)
def cluster_labels(name: str, count: int, X: np.ndarray, k: int) -> np.ndarray:
    return projection.kmeans(X, k, seed=SEED)


def controls(counts: dict[str, int], total: int, families: bool = False) -> dict:
    """The widgets that choose the faces and how the map is drawn (a change reruns the
    page); the t-SNE parameters are :func:`tsne_controls`, in the map's fragment.
    ``families``: the gallery knows families, so the map can be coloured by them."""
    c1, c2, c3 = st.columns(3)
    method = c1.radio("Method", ["t-SNE", "PCA"], key="method", horizontal=True)
    dims = c2.radio("Dimensions", [2, 3], key="dims", horizontal=True)
    colour = c3.radio("Colour by", ["identity", "family", "cluster"] if families else ["identity", "cluster"],
                      key="colour_by", horizontal=True)
    c1, c2, c3 = st.columns(3)
    pca_k = c1.slider("PCA components before t-SNE (0 = none)", 0, 100, 50, step=5, key="pca_components",
                      disabled=method != "t-SNE")
    lo = min(total, 50)
    n = c2.slider("Sample size", lo, max(total, lo + 1), min(total, 2000), step=max(1, min(50, total // 20 or 1)),
                  key="sample_size", disabled=total <= 50)
    k = c3.slider("Clusters (k)", 2, 50, 10, key="k", disabled=colour != "cluster")
    idents = st.multiselect("Only these identities (empty = all)", list(counts), key="identities",
                            format_func=lambda i: f"{i} ({counts[i]})")
    return {"method": method, "dims": int(dims), "colour": colour, "pca_components": int(pca_k),
            "n": int(min(n, total)), "k": int(k), "identities": tuple(sorted(idents))}


def tsne_controls(method: str) -> dict:
    """Perplexity, learning rate and iterations: inside the map's fragment, so moving one
    re-tunes the map without rerunning the page."""
    c1, c2, c3 = st.columns(3)
    perplexity = c1.slider("Perplexity", 5, projection.MAX_PERPLEXITY, 30, key="perplexity",
                           disabled=method != "t-SNE", help="Roughly how many neighbours each face keeps close.")
    lr = c2.select_slider("Learning rate", ["auto", 50, 100, 200, 500, 1000], value="auto", key="learning_rate",
                          disabled=method != "t-SNE")
    n_iter = c3.slider("Iterations", 250, 1500, 500, step=50, key="n_iter", disabled=method != "t-SNE",
                       help="A new map runs this many; a change of these three sliders re-tunes the map shown "
                            "and stops earlier once it has settled.")
    return {"perplexity": int(perplexity), "learning_rate": lr, "n_iter": int(n_iter)}


def _query_face(pipe, act, last: dict | None, memo: dict) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(embedding (dim,), thumbnail, caption) of the query to place, or None: an
    uploaded photo's largest face, searched in the active gallery as the Match page
    searches it (its verdict goes in the caption; kept in ``memo`` for the sliders'
    reruns: this session's memory, never the disk), else ``last`` (the Match page's last
    face, when it was embedded by the active model)."""
    from facesearch.errors import NoFaceError
    from facesearch.search import verdicts as V
    from facesearch.search.identify import match

    up = st.file_uploader("Place a query face on the map", type=["jpg", "jpeg", "png", "webp", "bmp"],
                          key="explore_query")
    if up is None:
        memo.clear()  # a photo taken off the page is not kept
    else:
        key = (hashlib.sha1(up.getvalue()).hexdigest(), act.model)
        if key not in memo:
            memo.clear()
            try:
                fm = match(up.getvalue(), up.name, pipeline=pipe(), gallery=act.open(), settings=act.settings).faces[0]
                said = f"{fm.best.identity}, {fm.verdict}" if fm.best and V.names_identity(fm.verdict) else fm.verdict
                memo[key] = (fm.face.embedding, fm.face.thumb, f"{up.name} (largest face): {said}")
            except NoFaceError:
                memo[key] = None
        if memo[key] is None:
            st.warning(f"No face found in {md_escape(up.name)}.")
        return memo[key]
    if last and last["model"] == act.model:
        return np.asarray(last["embedding"], np.float32), last["thumb"], last["caption"]
    return None


def scatter(coords: np.ndarray, groups: list[str], mds: list[dict], ids: list[str], title: str,
            query_xy: np.ndarray | None = None, nn: np.ndarray | None = None):
    """A plotly figure of ``coords (n, 2|3)``, one trace per group; the query as a star with
    lines to its neighbours ``nn`` (indices into coords)."""
    import plotly.graph_objects as go

    three = coords.shape[1] == 3
    fig = go.Figure()
    order = sorted(set(groups))
    g_arr = np.asarray(groups, dtype=object)
    for g in order:
        sel = np.flatnonzero(g_arr == g)
        # Plotly renders HTML in names, hover text and ticks, and does not escape what a
        # hovertemplate substitutes: labels go in escaped (columns 3, 4); columns 0-2 stay as
        # they are for the selection (selected_thumbs).
        custom = [[ids[i], ident, fname, html_text(ident), html_text(fname)]
                  for i in sel for ident, fname in [(_who(mds[i]),
                                                     Path(str(mds[i].get("path", ""))).name)]]
        hover = "%{customdata[3]}<br>%{customdata[4]}<extra>" + html_text(g) + "</extra>"
        if three:
            fig.add_trace(go.Scatter3d(x=coords[sel, 0], y=coords[sel, 1], z=coords[sel, 2], mode="markers",
                                       name=html_text(g), customdata=custom, hovertemplate=hover, marker={"size": 3}))
        else:
            fig.add_trace(go.Scattergl(x=coords[sel, 0], y=coords[sel, 1], mode="markers", name=html_text(g),
                                       customdata=custom, hovertemplate=hover, marker={"size": 6, "opacity": 0.8}))
    if query_xy is not None:
        q = query_xy.reshape(-1)
        star = {"symbol": "diamond" if three else "star", "size": 8 if three else 18, "color": "white",
                "line": {"color": "black", "width": 1}}
        for j in (nn if nn is not None else []):
            p = coords[j]
            if three:
                fig.add_trace(go.Scatter3d(x=[q[0], p[0]], y=[q[1], p[1]], z=[q[2], p[2]], mode="lines",
                                           line={"color": "white", "width": 2}, showlegend=False, hoverinfo="skip"))
            else:
                fig.add_trace(go.Scattergl(x=[q[0], p[0]], y=[q[1], p[1]], mode="lines", line={"color": "white", "width": 1},
                                           showlegend=False, hoverinfo="skip"))
        if three:
            fig.add_trace(go.Scatter3d(x=[q[0]], y=[q[1]], z=[q[2]], mode="markers", name="query", marker=star))
        else:
            fig.add_trace(go.Scattergl(x=[q[0]], y=[q[1]], mode="markers", name="query", marker=star))
    fig.update_layout(title=html_text(title), height=620, showlegend=len(order) <= MAX_LEGEND, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                      legend={"itemsizing": "constant"}, dragmode="lasso" if not three else "orbit")
    return fig


def selected_thumbs(event, gal_info: dict, home: str) -> None:
    """A grid of the thumbnails of the points selected on the map."""
    pts = list(getattr(getattr(event, "selection", None), "points", None) or [])
    chosen = [p.get("customdata") for p in pts if p.get("customdata")]
    if not chosen:
        st.caption("Click a point, or drag a lasso/box over the map, to see those faces here.")
        return
    gal = _open(gal_info, home)
    st.caption(f"{len(chosen)} face(s) selected" + (f"; the first {MAX_THUMBS} shown" if len(chosen) > MAX_THUMBS else ""))
    cols = st.columns(8)
    for i, (fid, ident, fname) in enumerate(c[:3] for c in chosen[:MAX_THUMBS]):
        p = gal.thumb_path(fid)
        with cols[i % 8]:
            if p.is_file():
                st.image(str(p), caption=md_escape(ident), width="stretch")
            else:
                st.caption(f"{md_escape(ident)} (no thumbnail)")


def similarity_heatmap(X: np.ndarray, mds: list[dict]) -> None:
    """Mean cosine similarity between chosen identities, or families on FIW galleries."""
    import plotly.express as px

    by = "family" if any((m or {}).get("family") for m in mds) else "identity"
    groups = [str((m or {}).get(by, "?")) for m in mds]
    names = sorted(set(groups), key=lambda g: (-groups.count(g), g))
    chosen = st.multiselect(f"{by.capitalize()} groups to compare", names, default=names[:12], key="sim_groups")
    if len(chosen) < 2:
        st.caption("Choose at least two groups.")
        return
    keep = [i for i, g in enumerate(groups) if g in set(chosen)]
    labels, M = projection.similarity_matrix(X[keep], [groups[i] for i in keep])
    labels = [html_text(g) for g in labels]  # plotly renders HTML in tick labels
    fig = px.imshow(M, x=labels, y=labels, zmin=-1 if M[np.isfinite(M)].min() < 0 else 0, zmax=1,
                    color_continuous_scale="Viridis", text_auto=".2f" if len(labels) <= 15 else False,
                    labels={"color": "mean cosine"}, aspect="auto")
    fig.update_layout(height=max(350, 28 * len(labels) + 120), margin={"l": 0, "r": 0, "t": 30, "b": 0})
    # Names are categories: CelebA's "7201" must not become a number on a numeric axis.
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    st.plotly_chart(fig, key="sim_matrix")
    st.caption(f"Mean cosine similarity between {by} groups; the diagonal is the mean over pairs of "
               "different faces of the same group (blank for a group of one face).")


def barcode_strip(q: np.ndarray, X: np.ndarray, mds: list[dict], nn: np.ndarray, sims: np.ndarray) -> None:
    import plotly.express as px

    rows = projection.barcode(q, X[nn])
    names = ["query"] + [html_text(f"{i + 1}. {_who(mds[j])} ({s:.2f})") for i, (j, s) in enumerate(zip(nn, sims))]
    lim = float(np.abs(rows).max()) or 1.0
    fig = px.imshow(rows, y=names, aspect="auto", color_continuous_scale="RdBu_r", zmin=-lim, zmax=lim,
                    labels={"x": "embedding dimension", "color": "value"})
    fig.update_layout(height=60 + 34 * len(names), margin={"l": 0, "r": 0, "t": 10, "b": 0})
    st.plotly_chart(fig, key="barcode")
    st.caption("Embedding barcode: the query's vector over its nearest faces' (cosine similarity in brackets); "
               "matching bands are dimensions they agree on.")


# Maps this session has drawn, by (faces, method, dimensions, PCA, t-SNE parameters): a
# slider moved back shows its map again; the last one drawn is re-tuned by the next move.
MAX_SESSION_MAPS = 8


def _session_map(points: tuple, want: tuple, method: str, info: dict) -> tuple[projection.Projection, str]:
    """The map for ``points`` (what fixes the faces and the kind of map) and ``want`` (the
    t-SNE parameters): this session's if it drew it, else re-tuned from the t-SNE map on
    screen when that one shows the same faces, else computed from scratch (shared between
    sessions). Returns (map, how it was made, for the caption)."""
    from collections import OrderedDict

    maps = st.session_state.setdefault("explore_maps", OrderedDict())
    shown = st.session_state.get("explore_shown")
    key = (points, want)
    if key in maps:
        maps.move_to_end(key)
        proj, how = maps[key]
    elif method == "t-SNE" and shown is not None and shown[0] == points and shown in maps:
        perplexity, lr, n_iter = want
        with st.spinner("Re-tuning the map from the one shown…"):
            proj = projection.retune(maps[shown][0], perplexity=perplexity, learning_rate=lr, n_iter=n_iter)
        prm = proj.params
        how = (f"re-tuned from the previous map in {prm['iterations_run']} iterations"
               + ("" if prm["settled"] else " (the most allowed; not yet settled)"))
    else:
        perplexity, lr, n_iter = want
        (name, count, home, n, identities), _, dims, pca_k = points
        proj = compute_map(name, count, home, info, method, dims, perplexity, lr, n_iter, pca_k, n, identities)[3]
        how = "computed from scratch"
    maps[key] = (proj, how)
    while len(maps) > MAX_SESSION_MAPS:
        maps.popitem(last=False)
    st.session_state["explore_shown"] = key
    return proj, how


def _fragment_rerun() -> bool:
    """True while Streamlit reruns fragments only, not the whole page (``st.rerun(scope=
    "fragment")`` is refused in a full run)."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def _title(method: str, dims: int, n: int, proj: projection.Projection, perplexity) -> str:
    if method == "PCA":
        return f"PCA, {dims}-D: {n:,} faces, {float(proj.explained_variance.sum()) * 100:.0f}% of the variance shown"
    return f"t-SNE, {dims}-D: {n:,} faces, perplexity {perplexity}"


@st.fragment
def map_view(*args) -> None:
    """:func:`_map_view` as a fragment. A fragment's own reruns run it alone, outside the
    page's ``user_errors``: it shows its FaceSearchErrors itself."""
    from components.common import user_errors

    with user_errors():
        _map_view(*args)


def _map_view(points: tuple, ids: list[str], X: np.ndarray, mds: list[dict], groups: list[str], method: str,
              dims: int, pca_k: int, query_emb: np.ndarray | None, nn: np.ndarray | None, info: dict, home: str) -> None:
    """The t-SNE sliders, the map and the selected faces' thumbnails, as a fragment: a
    slider or a selection reruns this alone, so the rest of the page stays as it is and
    usable. A slider move that re-tunes the map takes two runs of the fragment: the first
    draws the map on screen again exactly as it was (the same chart, so the browser keeps
    it as it is, neither faded nor redrawn), computes the new one and reruns the fragment;
    the second draws the new map."""
    t = tsne_controls(method)
    want = (t["perplexity"], t["learning_rate"], t["n_iter"]) if method == "t-SNE" else (None, None, None)
    shown = st.session_state.get("explore_shown")
    maps = st.session_state.get("explore_maps", {})
    select = {"key": "explore_map", "on_select": "rerun", "selection_mode": ("points", "box", "lasso")}
    if (method == "t-SNE" and shown is not None and shown[0] == points and shown in maps
            and (points, want) not in maps and _fragment_rerun()):
        old = maps[shown][0]
        q_xy = old.transform(query_emb) if query_emb is not None else None
        st.plotly_chart(scatter(old.coords, groups, mds, ids, _title(method, dims, len(ids), old, shown[1][0]),
                                q_xy, nn), **select)
        _session_map(points, want, method, info)  # under its spinner; kept in this session's maps
        st.rerun(scope="fragment")
    proj, how = _session_map(points, want, method, info)
    q_xy = proj.transform(query_emb) if query_emb is not None else None
    fig = scatter(proj.coords, groups, mds, ids, _title(method, dims, len(ids), proj, t["perplexity"]), q_xy, nn)
    event = st.plotly_chart(fig, **select)
    placed = f" The query is the star, {proj.transform_note}." if query_emb is not None else ""
    if method == "PCA":
        st.caption(f"Map: PCA of {len(ids):,} faces in {proj.seconds:.2f} s.{placed}")
    else:
        eff = proj.params.get("effective_perplexity", t["perplexity"])
        note = f" (capped to {eff:.1f} for {len(ids)} faces)" if eff < t["perplexity"] else ""
        st.caption(f"Map: t-SNE perplexity {t['perplexity']}{note}, {t['n_iter']} iterations at most, "
                   f"learning rate {t['learning_rate']}, PCA to {pca_k or 'no'} dimensions first; {how}; "
                   f"{len(ids):,} faces in {proj.seconds:.2f} s.{placed}")
    selected_thumbs(event, info, home)


def render(act, pipe, last_query: dict | None, memo: dict) -> None:
    """The whole Explore page below the title, for ``act`` (components.common.Active).
    ``pipe``: a callable returning the pipeline (only called when a query photo is
    uploaded, so browsing never loads a model); ``last_query``: the Match page's last face
    (components.match_view.as_query), placed on the map when no photo is uploaded;
    ``memo``: the page's dict for the uploaded query's face."""
    s, info = act.settings, act.info()
    if info is None or not info["count"]:
        st.info("The gallery is empty: ingest some faces (Home page or `facesearch ingest PATH`) to explore them.")
        return
    home = str(s.home)
    name, count = info["name"], int(info["count"])
    counts = identity_counts(name, count, home, info)
    fams = family_counts(name, count, home, info)
    p = controls(counts, count, bool(fams))
    ids, X, mds = sampled_faces(name, count, home, info, p["n"], p["identities"])
    if p["colour"] == "cluster":
        groups = [f"cluster {c}" for c in cluster_labels(name, count, X, p["k"])]
    elif p["colour"] == "family":
        groups = [str(m.get("family") or "no family") for m in mds]
    else:
        groups = [_who(m) for m in mds]

    map_box = st.container()  # the map goes above the query's uploader, drawn after it is read
    query = _query_face(pipe, act, last_query, memo)  # the active model's: the gallery's dimension
    q_emb = nn = sims = None
    if query is not None:
        q_emb = np.asarray(query[0], np.float32)
        (nn,), (sims,) = projection.neighbours(X, q_emb, N_NEIGHBOURS)  # the faces its lines go to
    # What fixes the faces and the kind of map: a change of any of these draws a new map.
    points = ((name, count, home, p["n"], p["identities"]), p["method"], p["dims"],
              p["pca_components"] if p["method"] == "t-SNE" else 0)
    with map_box:
        map_view(points, ids, X, mds, groups, p["method"], p["dims"], p["pca_components"], q_emb, nn, info, home)

    if query is not None:
        st.subheader("Query face")
        c1, c2 = st.columns([1, 5])
        c1.image(query[1], caption=md_escape(query[2]), width="stretch")
        with c2:
            st.caption(f"Shown on the map as a star, with lines to its {len(nn)} most similar faces.")
            barcode_strip(q_emb, X, mds, nn, sims)

    st.subheader("Average similarity between groups")
    similarity_heatmap(X, mds)
    if fams:
        family_section(fams, name, count, home, info)


def family_section(fams: dict[str, int], name: str, count: int, home: str, info: dict) -> None:
    """The mom / dad / child question for a chosen family: each child's kinship score with
    each parent beside the same-person similarity, every pair of members, and the caveat
    the measurements support. Labels are data: tables and escaped captions only."""
    st.subheader("A family: children and parents")
    options = list(fams)
    fam = st.selectbox("Family", options, key="family_view", format_func=lambda f: f"{f} ({fams[f]} members)")
    view = family_scores(name, count, home, info, fam)
    gal = _open(info, home)
    cols = st.columns(min(8, max(1, len(view.members))))
    for i, mem in enumerate(view.members[:8 * 3]):
        with cols[i % len(cols)]:
            p = gal.thumb_path(view.face_ids[mem])
            label = mem + (f" ({view.names[mem]})" if mem in view.names else "")
            if p.is_file():
                st.image(str(p), caption=md_escape(label), width=96)
            else:
                st.caption(md_escape(label))
    shown = lambda v: round(v, 3) if v is not None else None  # noqa: E731
    if view.parent_child:
        st.dataframe(
            [{"child": pc.child, "parent": pc.parent, "parent is": pc.role,
              "kinship score": shown(pc.kinship), "same-person similarity": round(pc.same_person, 3),
              "relation ROC AUC (held out)": pc.auc}
             for pc in sorted(view.parent_child, key=lambda pc: (pc.child, pc.role, pc.parent))],
            hide_index=True, key="family_parents",
        )
        closer = []
        for child in view.children:
            mine = [pc for pc in view.parent_child if pc.child == child and pc.kinship is not None]
            if len(mine) == 2:
                a, b = sorted(mine, key=lambda pc: -pc.kinship)
                closer.append(f"{child} scores closer to its {a.role} {a.parent} ({a.kinship:.3f}) than to its "
                              f"{b.role} {b.parent} ({b.kinship:.3f}); same-person similarity "
                              f"{a.same_person:.3f} vs {b.same_person:.3f}.")
        for line in closer:
            st.caption(md_escape(line))
    else:
        st.caption("The gallery does not record who is a parent in this family (FIW's mid.csv gives it at ingest; "
                   "a CSV may give a parents column): every pair of members is shown instead.")
    pairs = view.pairs()
    with st.expander(f"Every pair of members ({len(pairs)})", expanded=not view.parent_child):
        st.dataframe([{"member a": a, "member b": b, "relation": r, "kinship score": shown(k),
                       "same-person similarity": round(sp, 3)} for a, b, r, k, sp in pairs],
                     hide_index=True, key="family_pairs")
    st.caption("Kinship scores: " + md_escape(view.space) + ". Same-person similarity: the model's cosine between "
               "the two members' mean faces.")
    st.info(md_escape(view.caveat), icon=":material/info:")
