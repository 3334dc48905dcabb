"""Match page widgets: run a match on photo bytes and render every face's block.

The core calls take plain ``(name, bytes)`` pairs, not Streamlit uploads, so the page can
feed them from ``st.file_uploader``, ``st.camera_input`` or, in tests,
``st.session_state["match_inputs"]`` / ``st.session_state["verify_inputs"]``.

After a run, ``st.session_state["match_summary"]`` holds one dict per face
(``photo``, ``face``, ``best``, ``verdict``, ``similarity``) so tests and other widgets
can read what was shown without parsing markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import streamlit as st

from facesearch.annotate import draw_faces
from facesearch.errors import EmptyGalleryError, FaceSearchError
from facesearch.search import FaceMatches, MatchResult, VerifyResult, match, verdict, verify

from . import common

Photo = tuple[str, bytes]  # (display name, raw file bytes)

# Coloured text, not emoji: emoji fonts are missing on many servers and kiosks.
VERDICT_COLOR = {"match": "green", "possible": "orange", "no match": "red", "too small to judge": "gray",
                 "low quality": "gray"}


def verdict_md(v: str) -> str:
    return f":{VERDICT_COLOR.get(v, 'gray')}[**{v}**]"


def uploads_to_photos(files) -> list[Photo]:
    """``st.file_uploader`` / ``st.camera_input`` values -> ``[(name, bytes)]``."""
    if files is None:
        return []
    if not isinstance(files, (list, tuple)):
        files = [files]
    return [(f.name or "upload", f.getvalue()) for f in files if f is not None]


def require_gallery() -> int:
    """Number of faces in the active gallery; raises EmptyGalleryError when there are none,
    before any model time is spent on the photo."""
    n = common.gallery().count()
    if n == 0:
        _, model, detector = common.active()
        raise EmptyGalleryError(
            f"The {model} / {detector} gallery is empty: add faces on the Home page "
            "(ingest a folder, upload a zip or enroll a person) before matching."
        )
    return n


def match_photo(photo: Photo, k: int) -> MatchResult:
    """Every face of one photo with its top-k matches in the active gallery."""
    s, model, detector = common.active()
    common.pipeline()  # loads the model once per process, under the "Loading face models" spinner
    name, data = photo
    return match(data, name, model=model, detector=detector, k=k, settings=s)


def verify_photos(a: Photo, b: Photo) -> VerifyResult:
    s, model, detector = common.active()
    common.pipeline()
    return verify(a[1], b[1], name_a=a[0], name_b=b[0], model=model, detector=detector, settings=s)


# -- rendering -------------------------------------------------------------------------
def _annotated(result: MatchResult):
    """The photo, ``(h, w, 3)`` uint8, with one numbered box per face coloured by verdict."""
    rgb = result.analysis.image.rgb
    boxes = [fm.face.face.box for fm in result.faces]
    labels = [f"{i + 1}" + (f" {fm.best.identity}" if fm.best and fm.verdict != "no match" else "")
              for i, fm in enumerate(result.faces)]
    return draw_faces(rgb, boxes, labels, [fm.verdict for fm in result.faces])


def _thumb(gallery, face_id: str):
    p: Path = gallery.thumb_path(face_id)
    return str(p) if p.is_file() else None


def render_face(i: int, fm: FaceMatches, gallery, k: int) -> dict:
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
                st.markdown(f"{verdict_md(fm.verdict)}: {fm.quality_reason}. The nearest gallery faces are shown "
                            "below, but no verdict is given.")
            elif best is None:
                st.markdown("**Best match:** none")
            else:
                st.markdown(
                    f"**Best match:** `{best.identity}` {verdict_md(best.verdict)}, similarity {best.similarity:.3f} "
                    f"(distance {best.distance:.3f}, threshold {fm.threshold:.3f})"
                )
            hits = fm.hits[:k]
            if hits:
                cols = st.columns(min(len(hits), 6))
                for j, h in enumerate(hits):
                    with cols[j % len(cols)]:
                        t = _thumb(gallery, h.id)
                        if t:
                            st.image(t, width=90)
                        st.caption(f"#{j + 1} `{h.identity}`  \n{h.similarity:.3f} · {verdict_md(verdict(h.distance, fm.threshold, fm.possible))}")
            if fm.identities:
                with st.expander(f"By identity ({len(fm.identities)})", expanded=False):
                    st.dataframe(
                        [{"identity": s.identity, "best similarity": round(s.similarity, 3),
                          "mean distance": round(s.mean_distance, 3), "hits": s.n_hits, "verdict": s.verdict}
                         for s in fm.identities],
                        hide_index=True,
                    )
    return {"face": i + 1, "best": best.identity if best else None, "verdict": fm.verdict,
            "similarity": round(best.similarity, 4) if best else None}


def render_match(name: str, result: MatchResult, k: int) -> list[dict]:
    """The annotated photo and one block per face. Returns the per-face summary."""
    gallery = common.gallery()
    n = len(result.faces)
    st.markdown(f"### {name}")
    st.caption(f"{n} face{'s' if n != 1 else ''} found · model {result.model} / detector {result.detector} · "
               f"match at distance ≤ {result.threshold:.3f}"
               + (f", possible ≤ {result.possible:.3f}" if result.possible is not None else ""))
    st.info(f"What **match** means here: {result.meaning}. **possible** asks for a person's second look.",
            icon=":material/info:")
    img = _annotated(result)
    # Small photos are shown enlarged so the numbers are legible; large or tall ones are
    # capped (900 px wide, ~520 px high) so the face blocks below stay in view.
    h, w = img.shape[:2]
    st.image(img, width=int(min(max(w, 480), 900, 520 * w / h)))
    out = []
    for i, fm in enumerate(result.faces):
        row = render_face(i, fm, gallery, k)
        row["photo"] = name
        out.append(row)
    return out


def show_matches(photos: Sequence[Photo], k: int) -> list[dict]:
    """Match and render each photo; a bad photo gets its own error and the others still run."""
    with common.user_errors():
        require_gallery()
    summary: list[dict] = []
    for photo in photos:
        try:
            with st.spinner(f"Finding faces in {photo[0]}…"):
                result = match_photo(photo, k)
        except EmptyGalleryError as exc:
            st.error(str(exc))
            break
        except FaceSearchError as exc:
            st.error(str(exc))
            continue
        summary += render_match(photo[0], result, k)
    st.session_state["match_summary"] = summary
    return summary


def render_verify(res: VerifyResult) -> None:
    headline = "Same person" if res.same else ("Possibly the same person" if res.verdict == "possible" else "Different people")
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
                    st.image(an.faces[0].thumb, caption=an.source, width=160)
                if len(an.faces) > 1:
                    st.caption(f"{len(an.faces)} faces found; compared the largest.")
        st.caption(f"Model {res.model}: cosine distance at or below the threshold means the same person; "
                   "up to 25% above it is reported as possible.")
    st.session_state["verify_summary"] = {"same": res.same, "verdict": res.verdict,
                                          "distance": res.distance, "threshold": res.threshold}
