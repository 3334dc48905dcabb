"""Home page widgets: build, extend and prune the gallery; export, restore; the audit log.

The file handling (unpacking a zip, saving an enrollment's uploads) is plain Python so it
is testable without Streamlit; the ``*_section`` functions are the widgets.
Uploads are unpacked under ``$FACESEARCH_HOME/uploads/<content hash>/``: the same zip
uploaded twice lands in the same folder, so the ingest ledger skips what is done.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Sequence

import streamlit as st
from tqdm import tqdm

from components.text import md_escape

from facesearch.datasets.base import IMAGE_EXTENSIONS, LabeledImage
from facesearch.datasets.registry import FORMATS
from facesearch.errors import ConfigError, DatasetError
from facesearch.ingest.run import IngestReport
from facesearch.ingest.jobs import IngestJob
from facesearch.ingest.uploads import extract_zip, safe_name, uploads_dir

from . import common


def save_enrollment(name: str, photos: Sequence[tuple[str, bytes]], home: Path) -> list[LabeledImage]:
    """Write one person's uploaded photos to ``uploads/enroll/NAME/`` and label them."""
    name = name.strip()
    if not name:
        raise ConfigError("give the person's name before enrolling")
    if not photos:
        raise ConfigError("upload at least one photo of the person")
    folder = uploads_dir(home) / "enroll" / safe_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for fname, data in photos:
        # Content-addressed names: the same photo uploaded twice is one file.
        suffix = Path(fname).suffix.lower() or ".jpg"
        p = folder / f"{hashlib.sha1(data).hexdigest()[:16]}{suffix}"
        if not p.exists():
            p.write_bytes(data)
        items.append(LabeledImage(p, identity=name))
    return items


# -- widgets -----------------------------------------------------------------------------
def start_ingest(act: common.Active, path, *, fmt: str = "auto", items: list[LabeledImage] | None = None,
                 limit: int | None = None, what: str = "Ingesting", action: str = "ingest") -> IngestJob:
    """Start an ingest into the active gallery in the background; the caller keeps the
    job (one per session) and :func:`job_panel` shows it. ``action``: its name in the
    audit log ("ingest" or "enroll")."""
    common.pipeline()  # load the model under its spinner, and fail here if it cannot load
    return IngestJob(what, path, dict(fmt=fmt, model=act.model, detector=act.detector, settings=act.settings,
                                      limit=limit, items=items, actor=common.actor(), action=action)).start()


def job_panel(job: IngestJob | None) -> bool:
    """Progress and a Stop button for a running ingest, refreshed every second without
    rerunning the page. Returns True once ``job`` has finished (the caller then collects
    its report); False while it runs or when there is none."""
    return common.job_finished(job, _job_progress)


@st.fragment(run_every=1.0)
def _job_progress(job: IngestJob) -> None:
    if not job.running:
        st.rerun()  # the whole page: it collects the report and refreshes the gallery status
    frac = job.done / job.total if job.total else 0.0
    rate, left = job.rate, job.seconds_left
    pace = (f" · {rate:.1f} photos/s · {tqdm.format_interval(left)} left" if rate and left is not None else "")
    text = f"{job.what}: {job.done:,}/{job.total:,}{pace}" + (f" · {Path(job.current).name}" if job.current else
                                                              f" · {job.waiting}" if job.waiting else " · starting")
    st.progress(min(1.0, frac), text=md_escape(text))
    if job.stopping:
        st.caption("Stopping after the photo in hand; what is done stays in the gallery.")
    elif st.button("Stop", key="ingest_stop"):
        job.stop()
        st.rerun(scope="fragment")


def remember(report: IngestReport, what: str) -> None:
    """Keep the report across the rerun that refreshes the gallery status."""
    st.session_state["ingest_report"] = {"what": what, "report": report, "at": time.time()}


def render_report(report: IngestReport, what: str = "") -> None:
    """The summary plus the per-file lists: failed files with their reasons, photos with no face."""
    text = (what + ": " if what else "") + report.summary()
    if report.failed or report.stopped:
        st.warning(md_escape(text))
    else:
        st.success(md_escape(text))
    if report.failed:
        with st.expander(f"Failed files ({len(report.failed)})", expanded=True):
            st.dataframe([{"file": p, "reason": r} for p, r in report.failed], hide_index=True)
    if report.no_face:
        with st.expander(f"No face detected ({len(report.no_face)})", expanded=len(report.no_face) <= 10):
            st.dataframe([{"file": p} for p in report.no_face], hide_index=True)


def status_section(act: common.Active, show_folder: bool = True) -> dict[str, int]:
    """Model, detector, faces and identities of the gallery (read without loading a model);
    the data folder's path only with ``show_folder``. Returns identity -> faces."""
    with common.user_errors():
        g = act.info()
        idents = act.open().identities() if g and g["count"] else {}
    c = st.columns(4)
    c[0].metric("Model", act.model)
    c[1].metric("Detector", act.detector)
    c[2].metric("Faces", f"{g['count']:,}" if g else "0")
    c[3].metric("Identities", f"{len(idents):,}")
    if show_folder:
        st.caption(f"Data folder: {md_escape(act.settings.home)} · collection "
                   f"{md_escape(g['name']) if g else 'not created yet'}")
    if g and g["count"]:
        from facesearch.search.identify import gallery_rule

        with common.user_errors():
            calibration_section(gallery_rule(act.open(), act.model, act.settings))
    return idents


def calibration_section(rule) -> None:
    """Which calibration the search verdicts rest on, and the identities the gallery's own
    measurement found that may be one person."""
    st.caption(f"Search verdicts: match at distance ≤ {rule.threshold:.3f}, possible ≤ {rule.possible:.3f}; "
               f"{md_escape(rule.meaning)}.")
    doubles = getattr(rule.gallery, "doubles", ())
    if doubles:
        with st.expander(f"Identities that may be one person ({len(doubles)})"):
            st.caption("A face of the first is closer to the second than to its own identity's other faces "
                       "(median): a duplicate under two names, a mislabelled photo, a twin or a close relative.")
            st.dataframe([{"identity": d.a, "may be": d.b, "distance": round(d.distance, 3),
                           "own median": round(d.own_median, 3), "faces": d.faces} for d in doubles],
                         hide_index=True)


def folder_section(act: common.Active, busy: bool = False) -> None:
    """``busy``: an ingest of this session is running (one at a time)."""
    st.caption("A folder on the server: one sub-folder per person (`NAME/*.jpg`), one per family holding one per "
               "person (`FAMILY/PERSON/*.jpg`, tick the box), or a CelebA, LFW, FIW or CSV dataset (a `family` column "
               "gives families). Only the largest face of each photo is stored.")
    path = st.text_input("Folder on the server", key="ingest_path", placeholder="/data/people")
    c1, c2 = st.columns(2)
    fmt = c1.selectbox("Format", ["auto", *FORMATS], key="ingest_format")
    limit = c2.number_input("Limit (0 = every photo)", min_value=0, value=0, step=100, key="ingest_limit")
    # Never detected: PERSON/EVENT/*.jpg folders have the same shape (facesearch.datasets.families).
    as_families = st.checkbox("Sub-folders are families (FAMILY/PERSON/*.jpg)", key="ingest_families",
                              help="Each family folder holds one folder per person; the relatives search on Match "
                                   "and Explore's family colouring use the families.")
    # Buttons are not disabled on empty text: a text input only commits when it loses
    # focus, so a disabled button would swallow the click that follows typing.
    if st.button("Ingest folder", key="ingest_go", type="primary", disabled=busy):
        p = Path(path.strip()).expanduser()
        with common.user_errors():
            if not path.strip():
                raise ConfigError("type the folder's path on the server first")
            if not p.exists():
                raise DatasetError(f"{p}: no such folder on the server")
            if as_families:
                if fmt not in ("auto", "families"):
                    raise ConfigError(f"families are read from FAMILY/PERSON/ folders, not the {fmt} format: "
                                      "choose auto or untick the box")
                fmt = "families"
            st.session_state["ingest_job"] = start_ingest(act, p, fmt=fmt, limit=int(limit) or None,
                                                          what=f"Ingested {p}")
        st.rerun()


def zip_section(act: common.Active, busy: bool = False) -> None:
    st.caption("A zip of identity folders (`NAME/photo.jpg`) or of a photo library (photos without names: "
               "every face is kept and grouped into people, see the People page), unpacked on the server then "
               "ingested.")
    up = st.file_uploader("Zip of photos", type=["zip"], key="ingest_zip")
    kinds = {"auto": "Tell from the layout", "folders": "Identity folders", "photos": "A photo library (no names)"}
    fmt = st.radio("The zip holds", list(kinds), format_func=kinds.get, key="ingest_zip_format", horizontal=True)
    if st.button("Ingest zip", key="ingest_zip_go", type="primary", disabled=up is None or busy):
        with common.user_errors():
            root = extract_zip(up.getvalue(), act.settings.home)
            st.session_state["ingest_job"] = start_ingest(act, root, fmt=fmt, what=f"Ingested {up.name}")
        st.rerun()


def enroll_section(act: common.Active, busy: bool = False) -> None:
    st.caption("Add one person from a few photos (the largest face of each).")
    name = st.text_input("Name", key="enroll_name")
    files = st.file_uploader("Photos of this person", accept_multiple_files=True, key="enroll_files",
                             type=sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
    photos = [(f.name, f.getvalue()) for f in files or []]
    if st.button("Enroll", key="enroll_go", type="primary", disabled=busy):
        with common.user_errors():
            items = save_enrollment(name, photos, act.settings.home)
            st.session_state["ingest_job"] = start_ingest(act, items[0].path.parent, items=items,
                                                          what=f"Enrolled {name.strip()}", action="enroll")
        st.rerun()


def delete_section(idents: dict[str, int]) -> None:
    """Erase one of ``idents`` (identity -> faces in the active gallery) everywhere."""
    if not idents:
        st.caption("The gallery is empty.")
        return
    options = list(idents)
    who = st.selectbox("Identity", options, key="delete_identity",
                       format_func=lambda i: f"{i} ({idents.get(i, 0)} faces)")
    st.caption("Erases the person from every gallery (each model and detector), with their thumbnails, the "
               "cached embeddings of their photos, the ingest records and the photos uploaded to enroll them. "
               "The database files are rewritten so no deleted vector stays in them.")
    sure = st.checkbox(f"Yes, erase every face of {md_escape(who)}", key="delete_confirm")
    if st.button("Delete identity", key="delete_go", disabled=not sure):
        from facesearch.admin.privacy import erase_identity

        with common.user_errors(), st.spinner(f"Erasing {md_escape(who)}…"):
            rep = erase_identity(who, common.settings(), common.actor())
        st.session_state["delete_message"] = rep.summary()
        st.session_state.pop("delete_confirm", None)
        st.rerun()


def messages() -> None:
    """What the last action did (it ran before the rerun that refreshed the status)."""
    rep = st.session_state.get("ingest_report")
    if rep:
        render_report(rep["report"], rep["what"])
    msg = st.session_state.pop("delete_message", None)
    if msg:
        st.success(md_escape(msg))


def export_section(act: common.Active) -> None:
    """A download button for the active gallery as one archive (facesearch.admin.archive); the
    archive is built in memory when the button is clicked, never kept on the server."""
    from facesearch.admin.archive import export_gallery

    with common.user_errors():
        gallery = act.open(actor=common.actor())  # bound to this session's actor: the core refuses a visitor
        n = act.size()
    if not n:
        st.caption("The gallery is empty: nothing to export.")
        return

    def build() -> bytes:
        buf = io.BytesIO()
        export_gallery(gallery, buf)
        return buf.getvalue()

    st.caption(f"{n:,} faces of the {md_escape(act.model)} / {md_escape(act.detector)} gallery: vectors, metadata and thumbnails in one zip, "
               "for `facesearch restore` or the restore control on another server.")
    st.download_button("Export the gallery", data=build, file_name=f"{gallery.name}.zip", mime="application/zip",
                       key="export_go", on_click="ignore")


def restore_section() -> None:
    """Upload an archive of ``facesearch export`` and restore it into this data folder (the
    archive's own model and detector); a bad or foreign archive writes nothing."""
    up = st.file_uploader("Gallery archive (.zip from an export)", type=["zip"], key="restore_file")
    merge = st.checkbox("Add to the faces already in that gallery", key="restore_merge",
                        help="Without this, a restore into a gallery that has faces is refused.")
    if st.button("Restore", key="restore_go", type="primary", disabled=up is None):
        from facesearch.admin.archive import restore_gallery

        with common.user_errors(), st.spinner("Restoring…"):
            rep = restore_gallery(io.BytesIO(up.getvalue()), common.settings(), common.actor(), merge=merge)
        st.session_state["delete_message"] = rep.summary()[0].upper() + rep.summary()[1:] + "."
        st.rerun()


def audit_section(entries: Sequence[dict]) -> None:
    """The audit log (facesearch.audit.read_audit), newest first: when, who, what, faces."""
    if not entries:
        st.caption("No gallery change has been logged yet.")
        return
    rows = sorted(entries, key=lambda e: str(e.get("at", "")), reverse=True)
    st.dataframe(
        [{"when (UTC)": str(e.get("at", "")).replace("T", " ").rstrip("Z"), "who": e.get("actor", "?"),
          "what": e.get("action", "?"), "faces": e.get("faces"),
          "details": ", ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                               for k, v in e.items() if k not in ("at", "actor", "action", "faces"))}
         for e in rows],
        hide_index=True, key="audit_table",
    )
