"""People: the faces of a photo library grouped into people. Browse them, open one to see
their faces and photos, or open the faces waiting for a person; the admin names, merges,
moves faces, makes new people and regroups (in the background: a RegroupJob, polled by
components.people_view.regroup_panel). The work is in facesearch.people.service; the
widgets in components.people_view."""

import streamlit as st

from components import common
from components import people_view as V
from components.text import md_escape
from facesearch.errors import ConfigError
from facesearch.people import service as S

act = common.sidebar()
st.title("People")
me = common.actor()
with common.user_errors():
    gallery = act.open(actor=me)  # bound to this session's actor: the core refuses a visitor's change


def done(message: str, open_person: int | None = None, untick: list[str] = ()) -> None:
    """A change went through: say so on the next run, which shows its result with the
    checkboxes ``untick`` cleared."""
    st.session_state["people_msg"] = message
    st.session_state["people_untick"] = list(untick)
    for k in [k for k in st.session_state if str(k).startswith("people_ticked_")]:
        del st.session_state[k]  # the ticks kept across pages of faces (faces_grid)
    if open_person is not None:
        st.session_state["people_person"] = open_person
    st.rerun()


# A widget's value can only be set before it is drawn: the boxes ticked for the last change.
for key in st.session_state.pop("people_untick", []):
    st.session_state[key] = False
msg = st.session_state.pop("people_msg", None)
if msg:
    st.success(msg)

# A regroup runs in the background (this session's job, or another session's on this
# gallery): its stage while it runs, its result once when it is done.
job = st.session_state.get("people_regroup_job")
if gallery is not None and V.regroup_panel(job or S.running_regroup(gallery)) and job is not None:
    st.session_state.pop("people_regroup_job", None)
    if job.error:
        common.show_error(f"The regroup failed: {job.error}")  # plain text, no traceback
    else:
        st.success(f"Regrouped: {md_escape(job.report.summary())}.")

# From a Match result ("show this person's photos"): ?person=NAME opens that person.
asked = st.query_params.get("person")
if asked is not None and gallery is not None:
    del st.query_params["person"]
    with common.user_errors():
        found = S.person_named(gallery, asked)
    if found is None:
        common.show_warning(f"Nobody called {asked} among the people of this gallery.")
    else:
        st.session_state["people_person"] = found
        st.session_state.pop("people_waiting", None)

with common.user_errors():
    everyone = S.list_people(gallery, min_faces=1) if gallery is not None else []
    waiting = len(S.waiting_faces(gallery)) if gallery is not None else 0
if not everyone and not waiting:
    st.info("No people in this gallery yet. Ingest a photo library on the Home page (a folder of photos with no "
            "per-person folders, or `facesearch ingest PATH --format photos`): its faces are grouped into people "
            "here, to name, merge and correct.")
    st.stop()

opened = st.session_state.get("people_person")
view = None
if st.session_state.get("people_waiting"):
    opened = None  # the waiting faces are open: no person
if opened is not None:
    try:
        view = S.show_person(gallery, opened)
    except ConfigError:  # merged away or emptied since: back to the grid
        st.session_state.pop("people_person", None)

if view is not None:
    # -- one person --------------------------------------------------------------------------
    if st.button("← All people", key="people_back"):
        st.session_state.pop("people_person", None)
        st.rerun()
    V.person_header(view)
    if me.admin:
        new_name = V.rename_controls(view.person)
        if new_name is not None:
            with common.user_errors():
                p = S.name_person(gallery, view.person.id, new_name)
            done(f"Named person #{p.id} {md_escape(p.name)}.", p.id)
    st.markdown(f"**Faces** ({len(view.faces)})")
    kept = f"people_ticked_person_{view.person.id}"
    chosen = V.faces_grid(view.faces, gallery, selectable=me.admin, key=f"person_{view.person.id}",
                          ticked=st.session_state.get(kept, ()))
    st.session_state[kept] = chosen
    if me.admin:
        move = V.move_controls(view.person, everyone, chosen)
        if move is not None:
            with common.user_errors():
                if move.new:
                    p = S.new_person(gallery, move.faces)
                    text = f"{len(move.faces)} faces are now person #{p.id}."
                elif move.to is None:
                    S.move_faces(gallery, move.faces, None)
                    text = f"{len(move.faces)} faces taken out of person #{view.person.id}: they never return to it."
                else:
                    p = S.move_faces(gallery, move.faces, move.to)
                    text = f"{len(move.faces)} faces moved to person #{p.id}."
            done(text, untick=[f"people_face_{f}" for f in move.faces])
    st.markdown("**Photos**, with the other people in each")
    with common.user_errors():
        V.photos_list(S.person_photos(gallery, view.person.id), gallery)
elif st.session_state.get("people_waiting"):
    # -- the faces in no person yet --------------------------------------------------------------
    if st.button("← All people", key="people_back"):
        st.session_state.pop("people_waiting", None)
        st.rerun()
    with common.user_errors():
        faces = S.waiting_faces(gallery)
    st.subheader(f"Waiting faces ({len(faces)})")
    st.caption("Faces in no person yet: too few faces like them so far, or taken out of a person. "
               + ("Tick some to make a new person of them or to move them to someone." if me.admin else ""))
    chosen = V.faces_grid(faces, gallery, selectable=me.admin, key="waiting",
                          ticked=st.session_state.get("people_ticked_waiting", ()))
    st.session_state["people_ticked_waiting"] = chosen
    if me.admin and faces:
        move = V.move_controls(None, everyone, chosen)
        if move is not None:
            with common.user_errors():
                if move.new:
                    p = S.new_person(gallery, move.faces)
                    text = f"{len(move.faces)} waiting faces are now person #{p.id}."
                else:
                    p = S.move_faces(gallery, move.faces, move.to)
                    text = f"{len(move.faces)} waiting faces moved to person #{p.id}."
            st.session_state.pop("people_waiting", None)  # back to the grid, where the person is
            done(text, untick=[f"people_face_{f}" for f in move.faces])
else:
    # -- the grid ----------------------------------------------------------------------------
    single = st.toggle("Show people with one face", key="people_show_single")
    shown = [p for p in everyone if single or p.faces >= 2]
    hidden = len(everyone) - len(shown)
    st.caption(f"{len(shown)} people, most faces first"
               + (f" ({hidden} with one face hidden)" if hidden else "")
               + (f"; {waiting} faces waiting for more faces like them" if waiting else "") + ".")
    if waiting and V.waiting_button(waiting):
        st.session_state["people_waiting"] = True
        st.rerun()
    pick, chosen = V.people_grid(shown, gallery, selectable=me.admin)
    if pick is not None:
        st.session_state["people_person"] = pick
        st.rerun()
    if me.admin:
        merge = V.merge_controls(chosen)
        if merge is not None:
            with common.user_errors():
                p = S.merge_people(gallery, merge.people, merge.name)
            done(f"Merged {len(merge.people)} people into person #{p.id}.",
                 untick=[f"people_sel_{pid}" for pid in merge.people])
        if V.regroup_button():
            with common.user_errors():  # one at a time per gallery: a second click is told one runs
                st.session_state["people_regroup_job"] = S.start_regroup(gallery)
            st.rerun()
    else:
        st.caption("Only the gallery's admin can name, merge or correct people (sign in from the sidebar).")
