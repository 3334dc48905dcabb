"""Match: who is in this photo? Upload, camera snapshot, live webcam, or verify two photos."""

import streamlit as st

from components import common, match_view

st.set_page_config(page_title="Match · facesearch", page_icon="🔎", layout="wide")
common.sidebar()
st.title("Match faces")

settings, model, detector = common.active()
with common.user_errors():
    n_faces = common.active_gallery_size()
if n_faces == 0:
    st.warning(f"The {model} / {detector} gallery is empty: build it on the Home page before matching.")

MODES = ["Upload photos", "Camera snapshot", "Live webcam", "Verify two photos"]
mode = st.radio("Input", MODES, horizontal=True, key="match_mode", label_visibility="collapsed")
k = st.slider("Matches per face (k)", 1, 20, settings.top_k, key="match_k")

if mode == "Upload photos":
    files = st.file_uploader("Photos (every face in each photo is matched)", type=None,
                             accept_multiple_files=True, key="match_upload")
    photos = match_view.uploads_to_photos(files) or list(st.session_state.get("match_inputs") or [])
    if photos:
        match_view.show_matches(photos, k)
    else:
        st.caption("Upload one or more photos: group photos work, every detected face gets its own block.")

elif mode == "Camera snapshot":
    shot = st.camera_input("Take a photo", key="match_camera")
    if shot is not None:
        match_view.show_matches(match_view.uploads_to_photos(shot), k)

elif mode == "Live webcam":
    from components.webcam import live_webcam

    with common.user_errors():
        match_view.require_gallery()
        live_webcam(k)

else:
    st.caption("Are these the same person? The largest face of each photo is compared.")
    c1, c2 = st.columns(2)
    fa = c1.file_uploader("First photo", key="verify_a")
    fb = c2.file_uploader("Second photo", key="verify_b")
    pair = match_view.uploads_to_photos(fa) + match_view.uploads_to_photos(fb)
    if len(pair) < 2:
        pair = list(st.session_state.get("verify_inputs") or pair)
    if len(pair) == 2:
        with common.user_errors(), st.spinner("Comparing…"):
            res = match_view.verify_photos(pair[0], pair[1])
        match_view.render_verify(res)
    else:
        st.caption("Upload two photos.")
