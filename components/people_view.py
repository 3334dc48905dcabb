"""People page widgets: the grid of people, one person's faces and photos, the faces
waiting for a person, and the admin's editing controls (name, merge, move, "not this
person", a new person, regroup and its background job's progress).

Every function takes what it shows (``facesearch.people.service`` objects and the
gallery, for thumbnails) and returns what the user asked for; the page calls the core.
Names and file names are labels: shown with ``st.text`` or escaped (components/text.py),
never as Markdown."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Collection, Sequence

import streamlit as st

from facesearch.people.service import Person, PersonFace, PersonView, PhotoView, RegroupJob

from .common import job_finished
from .text import md_escape

UNNAMED = "Unnamed"
COLS = 6
MAX_PHOTOS = 60  # a person's photos shown at once: more is a long page, not more insight
MAX_PEOPLE = 120  # cards in the grid (largest first): a big library has thousands of small people
FACES_PAGE = COLS * 8  # faces shown at once (a person's, or the waiting ones), with pages for the rest


def name_of(p: Person | None) -> str:
    return "no person yet" if p is None else (p.name or UNNAMED)


def label(p: Person) -> str:
    """A person as plain text (selectbox options are text, not Markdown)."""
    return f"{name_of(p)} (#{p.id}, {p.faces} face{'s' if p.faces != 1 else ''})"


def counts(p: Person) -> str:
    return (f"#{p.id} · {p.faces} face{'s' if p.faces != 1 else ''} · "
            f"{p.photos} photo{'s' if p.photos != 1 else ''}")


def _thumb(gallery, face_id: str | None) -> str | None:
    if not face_id:
        return None
    p = gallery.thumb_path(face_id)
    return str(p) if p.is_file() else None


def _file(path: str) -> str:
    # The photo's file name only: a visitor never learns the server's folders.
    return PurePath(path).name or "photo"


def people_grid(people: Sequence[Person], gallery, *, selectable: bool) -> tuple[int | None, list[int]]:
    """One card per person (cover face, name or "Unnamed", faces and photos), in the
    given order. Returns (the person whose Open was clicked, the people ticked for a
    merge; always empty when not ``selectable``)."""
    opened, chosen = None, []
    if len(people) > MAX_PEOPLE:
        st.caption(f"The {MAX_PEOPLE} largest of {len(people)} people are shown.")
        people = people[:MAX_PEOPLE]
    for start in range(0, len(people), COLS):
        cols = st.columns(COLS)
        for col, p in zip(cols, people[start:start + COLS]):
            with col, st.container(border=True):
                t = _thumb(gallery, p.cover)
                if t:
                    st.image(t, width=96)
                st.text(name_of(p))
                st.caption(counts(p))
                if st.button(f"Open #{p.id}", key=f"people_open_{p.id}"):
                    opened = p.id
                if selectable and st.checkbox("Select", key=f"people_sel_{p.id}"):
                    chosen.append(p.id)
    return opened, chosen


@dataclass
class Merge:
    people: list[int]
    name: str | None


def merge_controls(chosen: Sequence[int]) -> Merge | None:
    """The admin's merge of the people ticked in the grid; a Merge when clicked."""
    with st.container(border=True):
        st.markdown(f"**Merge** the {len(chosen)} selected people into one (tick two or more above).")
        name = st.text_input("Name of the merged person (optional)", key="people_merge_name")
        if st.button("Merge selected people", key="people_merge_go", disabled=len(chosen) < 2):
            return Merge(list(chosen), name.strip() or None)
    return None


def regroup_button() -> bool:
    st.caption("Group the whole library again (after many new photos), in the background: every name, merge, "
               "move and \"not this person\", including those made while it runs, is kept.")
    return st.button("Regroup everyone", key="people_regroup")


def regroup_panel(job: RegroupJob | None) -> bool:
    """A running regroup's stage, refreshed every second without rerunning the page (the
    grid stays usable meanwhile). Returns True once ``job`` has finished (the caller
    then shows its report or error); False while it runs or when there is none."""
    return job_finished(job, _regroup_progress)


@st.fragment(run_every=1.0)
def _regroup_progress(job: RegroupJob) -> None:
    if not job.running:
        st.rerun()  # the whole page: it shows the result and the new people
    with st.container(key="people_regroup_running"):
        st.info(f"Regrouping the library in the background: {md_escape(job.stage)} "
                f"({time.time() - job.started:.0f} s). You can keep naming, merging and moving meanwhile.")


def waiting_button(n: int) -> bool:
    """Open the faces that wait for a person (``n`` of them)."""
    return st.button(f"Show the {n} waiting face{'s' if n != 1 else ''}", key="people_waiting_open")


def person_header(view: PersonView) -> None:
    st.subheader(f"Person #{view.person.id}")
    st.text(name_of(view.person))
    st.caption(counts(view.person))


def rename_controls(person: Person) -> str | None:
    """The admin's name field; the new name when Save is clicked."""
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.text_input("Name", value=person.name or "", key=f"people_name_{person.id}")
    if c2.button("Save name", key=f"people_name_go_{person.id}"):
        return name
    return None


def faces_grid(faces: Sequence[PersonFace], gallery, *, selectable: bool, key: str,
               ticked: Collection[str] = ()) -> list[str]:
    """Faces (a person's, or the waiting ones) by thumbnail and photo file name,
    ``FACES_PAGE`` at a time (a page number when there are more; ``key`` names it).

    ``ticked``: the face ids ticked so far, on any page (what this returned last time:
    a page's boxes are not drawn while another page is shown, so their ticks live here).
    Returns every ticked face id among ``faces``: this page's boxes and the other pages'
    ticks."""
    shown = faces
    pages = max(1, -(-len(faces) // FACES_PAGE))
    if pages > 1:
        page = st.number_input(f"Page (of {pages}, {FACES_PAGE} faces each)", min_value=1, max_value=pages, value=1,
                               step=1, key=f"people_page_{key}")
        shown = faces[(int(page) - 1) * FACES_PAGE:int(page) * FACES_PAGE]
    here = {f.face_id for f in shown}
    chosen = [f.face_id for f in faces if f.face_id in set(ticked) and f.face_id not in here]
    if chosen:
        st.caption(f"{len(chosen)} face{'s' if len(chosen) != 1 else ''} ticked on other pages.")
    for start in range(0, len(shown), COLS):
        cols = st.columns(COLS)
        for col, f in zip(cols, shown[start:start + COLS]):
            with col:
                t = _thumb(gallery, f.face_id)
                if t:
                    st.image(t, width=96)
                if selectable:
                    box = f"people_face_{f.face_id}"
                    # A box drawn on the last run keeps its own state; one coming back
                    # from another page starts as it was left (``ticked``).
                    start_ticked = f.face_id in ticked and box not in st.session_state
                    # A checkbox's label is Markdown: the file name escaped.
                    if st.checkbox(md_escape(_file(f.path)), value=start_ticked, key=box):
                        chosen.append(f.face_id)
                else:
                    st.text(_file(f.path))
                if f.quality:
                    st.caption(md_escape(f.quality))
    return chosen


NOT_THIS_PERSON = "Not this person (out)"
NEW_PERSON = "A new person"


@dataclass
class Move:
    faces: list[str]
    to: int | None  # None: out ("not this person")
    new: bool = False  # a new person of these faces


def move_controls(person: Person | None, others: Sequence[Person], chosen: Sequence[str]) -> Move | None:
    """Where the ticked faces go: another person, a new person or out (``person`` None:
    the waiting faces, which are in no person: a new person first, no "out")."""
    here = person.id if person is not None else None
    targets = [*([NOT_THIS_PERSON] if person is not None else []), NEW_PERSON,
               *[p.id for p in others if p.id != here]]
    by_id = {p.id: p for p in others}
    key = str(here) if person is not None else "waiting"
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    to = c1.selectbox(f"Move the {len(chosen)} selected faces to", targets, key=f"people_move_to_{key}",
                      format_func=lambda t: t if isinstance(t, str) else label(by_id[t]))
    if c2.button("Move selected faces", key=f"people_move_go_{key}", disabled=not chosen):
        if to == NOT_THIS_PERSON:
            return Move(list(chosen), None)
        if to == NEW_PERSON:
            return Move(list(chosen), None, new=True)
        return Move(list(chosen), int(to))
    return None


def photos_list(photos: Sequence[PhotoView], gallery) -> None:
    """Every photo of the person, with the other people in it."""
    if not photos:
        st.caption("No photos.")
        return
    if len(photos) > MAX_PHOTOS:
        st.caption(f"The first {MAX_PHOTOS} of {len(photos)} photos.")
    for ph in photos[:MAX_PHOTOS]:
        with st.container(border=True):
            left, right = st.columns([1, 3])
            with left:
                shown = _preview(ph.path, ph.face.box, _mtime(ph.path)) if ph.path else None
                if shown is not None:
                    st.image(shown, width=PREVIEW)
                else:  # the photo moved or went since the ingest: the stored face
                    t = _thumb(gallery, ph.face.face_id)
                    if t:
                        st.image(t, width=96)
            with right:
                st.text(_file(ph.path))
                if ph.others:
                    st.caption("Also in this photo:")
                    st.text(", ".join(sorted(name_of(p) + (f" (#{p.id})" if p else "") for _, p in ph.others)))
                else:
                    st.caption("Nobody else in this photo.")


PREVIEW = 240  # px: a photo as shown beside its people


def _mtime(path: str) -> float | None:
    from pathlib import Path

    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None


@st.cache_data(max_entries=256, show_spinner=False)
def _preview(path: str, box: tuple[int, int, int, int], mtime: float | None):
    """The photo, ``(h, w, 3)`` uint8 at most ``2 * PREVIEW`` px wide, the person's face
    boxed (the box is in the pixels the ingest decoded: the same decoder); None when the
    file is gone or unreadable. ``mtime`` keys the cache to the file's version."""
    import cv2

    from facesearch.errors import FaceSearchError
    from facesearch.imaging.annotate import draw_faces
    from facesearch.imaging.decode import load_image

    if mtime is None:
        return None
    try:
        rgb = load_image(path).rgb
    except (FaceSearchError, OSError):
        return None
    img = draw_faces(rgb, [box], [""]) if box[2] > 0 and box[3] > 0 else rgb
    h, w = img.shape[:2]
    if w > 2 * PREVIEW:
        img = cv2.resize(img, (2 * PREVIEW, max(1, round(h * 2 * PREVIEW / w))), interpolation=cv2.INTER_AREA)
    return img
