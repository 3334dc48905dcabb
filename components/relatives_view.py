"""Match page, "Find relatives" mode: each face's same-person result (rendered as the upload
mode renders it), then, apart from it, the gallery's families ranked for that face
(:func:`facesearch.kinship.search.find_relatives`).

A family is a "possible relative" at most, never a match: its band and the meaning of
its score in words come from the core. Every label (family, member, file name) is shown
as text (components/text.py). Results are kept in the page's ``memo`` as the upload
mode keeps them (this session's memory only)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import streamlit as st

from facesearch.errors import FaceSearchError
from facesearch.kinship.search import POSSIBLE, RelativeFamily, RelativesResult, find_relatives

from . import common
from .match_view import Photo, _annotated, _display_width, render_face, show_each
from .text import md_escape

MODE = "Find relatives"


def band_md(band: str) -> str:
    """The band as coloured text: orange for a possible relative (a lead to check), grey otherwise."""
    return f":{'orange' if band == POSSIBLE else 'gray'}[**{md_escape(band)}**]"


def member_thumb(gallery, member: str) -> str | None:
    """A thumbnail of one of ``member``'s faces in the gallery, if one is on disk."""
    try:
        got = gallery.get(where={"identity": member}, limit=5)
    except FaceSearchError:
        return None
    for fid in got.get("ids") or []:
        p = gallery.thumb_path(fid)
        if p.is_file():
            return str(p)
    return None


def render_family(rank: int, rf: RelativeFamily, gallery) -> None:
    """One family for one face: its best member's thumbnail, the family and member as
    text, the band, the meaning in words and the other members' scores."""
    f = rf.family
    left, right = st.columns([1, 6])
    with left:
        t = member_thumb(gallery, f.member) if gallery is not None else None
        if t:
            st.image(t, width=72)
    with right:
        st.markdown(f"**#{rank} family {md_escape(f.family)}** · {band_md(rf.band)} · closest member "
                    f"{md_escape(f.member)} · family score {f.score:.3f}")
        st.caption(md_escape(rf.meaning))
        if len(f.members) > 1:
            st.caption("Members: " + md_escape(", ".join(f"{m} {s:.3f}" for m, s in f.members)))


def render_relatives(name: str, res: RelativesResult, img: np.ndarray, k: int, gallery) -> None:
    """The annotated photo, then per face: who it is (the upload mode's block) and,
    separately, its families ranked; the result's notes and what the scores rest on."""
    m = res.match
    n = len(res.faces)
    st.markdown(f"### {md_escape(name)}")
    st.caption(f"{n} face{'s' if n != 1 else ''} found · model {md_escape(m.model)} / detector "
               f"{md_escape(m.detector)} · {res.n_families:,} families, {res.n_members:,} members in the gallery")
    st.image(img, width=_display_width(img.shape[1], img.shape[0]))
    for note in res.notes:
        st.info(md_escape(note), icon=":material/info:")
    st.caption("Kinship scores: " + md_escape(res.space))
    for i, fr in enumerate(res.faces):
        render_face(i, fr.person, gallery, k)  # the same person first, as the upload mode shows it
        with st.container(border=True):
            st.markdown(f"**Face {i + 1}: families that could be its relatives**")
            if fr.left_out:
                st.caption(f"Face {i + 1} matches {md_escape(fr.left_out)}: that person is left out of their "
                           "own family's members (nobody is their own relative).")
            if not fr.families:
                st.caption("No family to rank.")
            for r, rf in enumerate(fr.families, 1):
                render_family(r, rf, gallery)


def show_relatives(photos: Sequence[Photo], k: int, act: common.Active, memo: dict) -> list[RelativesResult]:
    """Search each photo's faces and families (or recall them from ``memo``, which keeps
    only these photos) and render them; a bad photo or a gallery without families gets
    its error and the others still run. Returns the results shown."""
    def search(name: str, data: bytes, gallery) -> tuple[RelativesResult, np.ndarray]:
        common.pipeline()
        with st.spinner(f"Finding faces and families in {md_escape(name)}…"):
            res = find_relatives(data, name, model=act.model, detector=act.detector, k=k,
                                 settings=act.settings, gallery=gallery)
        img = _annotated(res.match)
        res.match.analysis.image = None  # kept between reruns without its pixels
        return res, img

    return show_each(photos, k, act, memo, search, render_relatives, tag=(MODE,))
