"""Match: who is in this photo? Upload, camera snapshot, live webcam, verify two photos, or
find a face's possible relatives among the gallery's families."""

import streamlit as st

from components import common, match_view, relatives_view

act = common.sidebar()
st.title("Match faces")
MODES = ["Upload photos", "Camera snapshot", "Live webcam", "Verify two photos", relatives_view.MODE]
mode = st.radio("Input", MODES, horizontal=True, key="match_mode", label_visibility="collapsed")
k = st.slider("Matches per face (k)", 1, 20, act.settings.top_k, key="match_k")
# This session's results by photo, in memory only: a rerun re-renders them (issue 10: the
# photos searched with never reach the disk). It keeps only the photos on the page.
memo = st.session_state.setdefault("match_memo", {})
with common.user_errors():
    n_faces = act.size()

if n_faces == 0 and mode != "Verify two photos":
    memo.clear()
    st.warning(f"The {act.model} / {act.detector} gallery is empty: add faces on the Home page (ingest a folder, "
               "upload a zip or enroll a person) before matching.")

elif mode in ("Upload photos", "Camera snapshot"):
    if mode == "Upload photos":
        files = st.file_uploader("Photos (every face in each photo is matched)", type=None,
                                 accept_multiple_files=True, key="match_upload")
    else:
        files = st.camera_input("Take a photo", key="match_camera")
    shown = match_view.show_matches(match_view.uploads_to_photos(files), k, act, memo)
    if shown:  # the Explore page places the last face matched on its map
        st.session_state["last_query"] = match_view.as_query(shown[-1])
    elif not files and mode == "Upload photos":
        st.caption("Upload one or more photos: group photos work, every detected face gets its own block.")

elif mode == relatives_view.MODE:
    st.caption("Who in the gallery could be this person's family? Each face is searched as the same person first, "
               "then the gallery's families (FIW, FAMILY/PERSON/ folders or a CSV family column) are ranked by "
               "kinship. A family is a possible relative to check, never a match.")
    files = st.file_uploader("Photos (every face is searched)", type=None, accept_multiple_files=True,
                             key="relatives_upload")
    shown = relatives_view.show_relatives(match_view.uploads_to_photos(files), k, act, memo)
    if shown and shown[-1].match.faces:
        st.session_state["last_query"] = match_view.as_query(shown[-1].match)

elif mode == "Live webcam":
    from components.webcam import live_webcam

    memo.clear()
    live_webcam(k)

else:
    st.caption("Are these the same person? The largest face of each photo is compared.")
    c1, c2 = st.columns(2)
    pair = (match_view.uploads_to_photos(c1.file_uploader("First photo", key="verify_a"))
            + match_view.uploads_to_photos(c2.file_uploader("Second photo", key="verify_b")))
    if len(pair) == 2:
        match_view.show_verify(*pair, act, memo)
    else:
        memo.clear()
        st.caption("Upload two photos.")
