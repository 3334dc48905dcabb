"""Home: gallery status and building the gallery."""

import streamlit as st

from components import common, gallery_admin, warmup_view

# An ingest runs in the background (facesearch.ingest.jobs): the page shows its progress and a
# Stop button, and collects its report once it has finished (before the sidebar reads the
# galleries, so the counts include it).
job = st.session_state.get("ingest_job")
if gallery_admin.job_panel(job):
    del st.session_state["ingest_job"]
    if job.error:
        common.show_error(f"The ingest stopped: {job.error}")
    else:
        gallery_admin.remember(job.report, job.what)
act = common.sidebar()

st.title("facesearch")
st.caption("Find every face in a photo and the most similar people in the gallery. "
           "Build the gallery here, then go to **Match**.")
warmup_view.models_loading_notice()  # while `make run`'s process still loads the face models

me = common.actor()
busy = "ingest_job" in st.session_state
gallery_admin.messages()
st.subheader("Gallery")
idents = gallery_admin.status_section(act, show_folder=me.admin)

if me.admin:
    st.subheader("Build or extend")
    t_folder, t_zip, t_enroll, t_delete, t_archive, t_audit = st.tabs(
        ["Folder on the server", "Upload a zip", "Enroll a person", "Delete an identity", "Export / restore",
         "Audit log"])
    with t_folder:
        gallery_admin.folder_section(act, busy)
    with t_zip:
        gallery_admin.zip_section(act, busy)
    with t_enroll:
        gallery_admin.enroll_section(act, busy)
    with t_delete:
        gallery_admin.delete_section(idents)
    with t_archive:
        gallery_admin.export_section(act)
        gallery_admin.restore_section()
    with t_audit:
        from facesearch.audit import read_audit

        with common.user_errors():
            gallery_admin.audit_section(read_audit(common.settings()))
else:
    st.info("Search the gallery on **Match**, map it on **Explore**, compare models on **Evaluate**. "
            "Only the gallery's admin can change it (sign in from the sidebar).")
