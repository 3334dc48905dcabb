"""Match page widgets: match photo bytes against the gallery and render every face's block.

Each photo is matched once: its result stays in the page's ``memo`` (session state, this
session's memory only, never the disk) under its content hash, the model, detector, k,
the gallery's size and thresholds, and a rerun (any widget) renders it again."""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import streamlit as st

from facesearch.imaging.annotate import draw_faces
from facesearch.errors import FaceSearchError
from facesearch.search import verdicts as V
from facesearch.search.identify import FaceMatches, MatchResult, VerifyResult, gallery_rule, match, verify
from facesearch.search.thresholds import verify_threshold

from . import common
from .text import md_escape

Photo = tuple[str, bytes]  # (display name, raw file bytes)

def verdict_md(v: str) -> str:
    # Coloured text, not emoji: emoji fonts are missing on many servers and kiosks.
    return f":{V.COLOR_NAME.get(v, 'gray')}[**{v}**]"


def uploads_to_photos(files) -> list[Photo]:
    """``st.file_uploader`` / ``st.camera_input`` values -> ``[(name, bytes)]``."""
    files = files if isinstance(files, list) else [files]
    return [(f.name or "upload", f.getvalue()) for f in files if f is not None]


def _recall(memo: dict, key: tuple, compute: Callable):
    """``memo[key]``, computed on the first call (a FaceSearchError too: it is raised again)."""
    if key not in memo:
        try:
            memo[key] = compute()
        except FaceSearchError as exc:
            memo[key] = exc
    if isinstance(memo[key], FaceSearchError):
        raise memo[key]
    return memo[key]


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def as_query(result: MatchResult) -> dict:
    """The largest face of a match, for the Explore page's "last query" (memory only)."""
    face = result.faces[0].face
    return {"model": result.model, "embedding": face.embedding, "thumb": face.thumb,
            "caption": f"{result.analysis.source} (largest face), last matched on the Match page"}


# -- rendering -------------------------------------------------------------------------
def _display_width(w: int, h: int) -> int:
    # Small photos are shown enlarged so the numbers are legible; large or tall ones are
    # capped (900 px wide, ~520 px high) so the face blocks below stay in view.
    return int(min(max(w, 480), 900, 520 * w / h))


def _annotated(result: MatchResult) -> np.ndarray:
    """The photo, ``(h, w, 3)`` uint8 no wider than it is shown, with one numbered box per
    face coloured by verdict."""
    import cv2

    rgb = result.analysis.image.rgb
    boxes = [fm.face.face.box for fm in result.faces]
    labels = [V.box_label(i + 1, fm.best.identity if fm.best else None, fm.verdict)
              for i, fm in enumerate(result.faces)]
    img = draw_faces(rgb, boxes, labels, [V.rgb(fm.verdict) for fm in result.faces])
    h, w = img.shape[:2]
    width = _display_width(w, h)
    return img if w <= width else cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def _thumb(gallery, face_id: str):
    p = gallery.thumb_path(face_id)
    return str(p) if p.is_file() else None


def person_link(fm: FaceMatches, gallery) -> None:
    """"Show this person's photos" on the People page, when the best identity is a named
    person of a photo library (issue 20)."""
    from facesearch.people.service import person_named

    best = fm.best
    if gallery is None or best is None or person_named(gallery, best.identity) is None:
        return
    from streamlit.errors import StreamlitPageNotFoundError

    try:  # the name travels as a query parameter (URL-encoded by Streamlit), never as Markdown
        st.page_link("pages/4_People.py", label="Show this person's photos", icon=":material/photo_library:",
                     query_params={"person": best.identity})
    except StreamlitPageNotFoundError:  # the page runs on its own, outside app.py's menu (AppTest)
        from urllib.parse import quote

        st.markdown(f"[Show this person's photos](People?person={quote(best.identity, safe='')})")


def render_face(i: int, fm: FaceMatches, gallery, k: int) -> None:
    """One bordered block per face: crop, best identity, top-k hits, identity table."""
    best = fm.best
    with st.container(border=True):
        st.subheader(f"Face {i + 1}")
        left, right = st.columns([1, 4])
        with left:
            if fm.face.thumb is not None:
                st.image(fm.face.thumb, caption=f"confidence {fm.face.face.confidence:.2f}", width=112)
        with right:
            if fm.quality_reason is not None:
                st.markdown(f"{verdict_md(fm.verdict)}: {md_escape(fm.quality_reason)}. The nearest gallery faces are shown "
                            "below, but no verdict is given.")
            elif best is None:
                st.markdown("**Best match:** none")
            else:
                # The label is data: escaped, so a name written as Markdown shows as written.
                st.markdown(
                    f"**Best match:** {md_escape(best.identity)} {verdict_md(best.verdict)}, similarity {best.similarity:.3f} "
                    f"(distance {best.distance:.3f}, threshold {fm.threshold:.3f})"
                )
                st.caption(md_escape(fm.sentence))
                person_link(fm, gallery)
            hits = fm.hits[:k]
            if hits:
                cols = st.columns(min(len(hits), 6))
                for j, h in enumerate(hits):
                    with cols[j % len(cols)]:
                        t = _thumb(gallery, h.id)
                        if t:
                            st.image(t, width=90)
                        st.caption(f"#{j + 1} {md_escape(h.identity)}  \n{h.similarity:.3f} · {verdict_md(fm.rule.decide(h.distance))}")
            if fm.identities:
                with st.expander(f"By identity ({len(fm.identities)})", expanded=False):
                    st.dataframe(
                        [{"identity": s.identity, "best similarity": round(s.similarity, 3),
                          "mean distance": round(s.mean_distance, 3), "hits": s.n_hits, "verdict": s.verdict}
                         for s in fm.identities],
                        hide_index=True,
                    )


def render_match(name: str, result: MatchResult, img: np.ndarray, k: int, gallery) -> None:
    """The annotated photo ``img`` and one block per face; ``gallery``: where the hits'
    thumbnails are."""
    n = len(result.faces)
    st.markdown(f"### {md_escape(name)}")
    st.caption(f"{n} face{'s' if n != 1 else ''} found · model {md_escape(result.model)} / detector "
               f"{md_escape(result.detector)} · "
               f"match at distance ≤ {result.threshold:.3f}"
               + (f", possible ≤ {result.possible:.3f}" if result.possible is not None else ""))
    st.info(f"What **match** means here: {result.meaning}. **possible** asks for a person's second look.",
            icon=":material/info:")
    st.image(img, width=_display_width(img.shape[1], img.shape[0]))
    for i, fm in enumerate(result.faces):
        render_face(i, fm, gallery, k)


def show_each(photos: Sequence[Photo], k: int, act: common.Active, memo: dict, search: Callable,
              render: Callable, tag: tuple = ()) -> list:
    """The Match page's loop over its photos, one for every mode: each photo searched by
    ``search(name, data, gallery) -> (result, annotated image (h, w, 3) uint8)``, or
    recalled from ``memo`` (which keeps only these photos) under a key holding everything
    that changes the answer (``tag``: the mode; the photo, model, detector, k, gallery size
    and verdict rule), then shown by ``render(name, result, image, k, gallery)``. A bad
    photo gets its own error and the others still run. Returns the results shown."""
    if not photos:
        memo.clear()
        return []
    n, gallery = act.size(), act.open()  # one handle per run: the searches and the thumbnails
    with common.user_errors():
        rule = gallery_rule(gallery, act.model, act.settings) if gallery is not None else None
        said = (rule.threshold, rule.possible, rule.calibration) if rule is not None else None
        keys = [(*tag, _sha1(data), act.model, act.detector, k, n, said) for _, data in photos]
    for stale in set(memo) - set(keys):
        del memo[stale]
    shown = []
    for (name, data), key in zip(photos, keys):
        try:
            result, img = _recall(memo, key, lambda name=name, data=data: search(name, data, gallery))
        except FaceSearchError as exc:
            common.show_error(exc)
            continue
        render(name, result, img, k, gallery)
        shown.append(result)
    return shown


def show_matches(photos: Sequence[Photo], k: int, act: common.Active, memo: dict) -> list[MatchResult]:
    """Match each photo (or recall it from ``memo``, which keeps only these photos) and render
    it; a bad photo gets its own error and the others still run. Returns the results shown."""
    def search(name: str, data: bytes, gallery) -> tuple[MatchResult, np.ndarray]:
        common.pipeline()  # loads the model once per process, under the "Loading face models" spinner
        with st.spinner(f"Finding faces in {md_escape(name)}…"):
            res = match(data, name, model=act.model, detector=act.detector, k=k, settings=act.settings,
                        gallery=gallery)
        img = _annotated(res)
        res.analysis.image = None  # kept between reruns: the faces and the photo as shown, not its pixels
        return res, img

    return show_each(photos, k, act, memo, search, render_match)


def show_verify(a: Photo, b: Photo, act: common.Active, memo: dict) -> None:
    """Are ``a`` and ``b`` the same person (recalled from ``memo``, which keeps only this pair)?"""
    def run() -> VerifyResult:
        common.pipeline()
        with st.spinner("Comparing…"):
            res = verify(a[1], b[1], name_a=a[0], name_b=b[0], model=act.model, detector=act.detector,
                         settings=act.settings)
        res.a.image = res.b.image = None
        return res

    with common.user_errors():
        key = (_sha1(a[1]), _sha1(b[1]), act.model, act.detector, verify_threshold(act.model, act.settings))
        if key not in memo:
            memo.clear()
        res = _recall(memo, key, run)
    render_verify(res)


def render_verify(res: VerifyResult) -> None:
    headline = V.VERIFY_HEADLINE[res.verdict]
    with st.container(border=True):
        st.subheader(headline)
        st.markdown(f"Verdict: {verdict_md(res.verdict)}")
        c1, c2, c3 = st.columns(3)
        c1.metric("Distance", f"{res.distance:.3f}")
        c2.metric("Threshold", f"{res.threshold:.3f}")
        c3.metric("Similarity", f"{res.similarity:.3f}")
        a, b = st.columns(2)
        for col, an in ((a, res.a), (b, res.b)):
            with col:
                if an.faces and an.faces[0].thumb is not None:
                    st.image(an.faces[0].thumb, caption=md_escape(an.source), width=160)
                if len(an.faces) > 1:
                    st.caption(f"{len(an.faces)} faces found; compared the largest.")
        st.caption(f"Model {md_escape(res.model)}: {res.rule.meaning}.")
