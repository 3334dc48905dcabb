"""The console script end to end, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path


from conftest import celeba_split

FS = str(Path(sys.executable).with_name("facesearch"))


def run(*args, home):
    env = {**os.environ, "FACESEARCH_HOME": str(home)}
    return subprocess.run([FS, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)


def test_ingest_then_match_names_the_person(tmp_path, session_home):
    gallery, probes = celeba_split(n_identities=5, n_gallery=3, n_probe=1)
    csv = tmp_path / "gallery.csv"
    csv.write_text("path,label\n" + "".join(f"{g.path},{g.identity}\n" for g in gallery))
    home = tmp_path / "home"
    env_home = home
    r = run("ingest", csv, "--format", "csv", "--quiet", "--home", env_home, home=session_home)
    assert r.returncode == 0, r.stderr
    assert "15 photos processed" in r.stdout
    probe = probes[0]
    r = run("match", probe.path, "--json", "--home", env_home, home=session_home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out[0]["identities"][0]["identity"] == probe.identity
    r = run("match", probe.path, "--home", env_home, home=session_home)
    first = next(line for line in r.stdout.splitlines() if line.strip().startswith("1."))
    assert probe.identity in first
    assert "people who are not in it would be called a match" in r.stdout
    r = run("stats", "--identities", "5", "--home", env_home, home=session_home)
    assert "15 faces" in r.stdout


def test_ingest_families_folder(data_dir, tmp_path, session_home):
    """FAMILY/PERSON/*.jpg with --families: each person gets a family, and the relatives
    search answers on it; without the flag the layout is not guessed, and the message
    says how to read it."""
    import shutil

    fams = tmp_path / "fams"
    for fam, person, src in (("Adeyemi", "mum", "F0001/MID2"), ("Adeyemi", "son", "F0001/MID4"),
                             ("Berg", "dad", "F0002/MID1"), ("Berg", "girl", "F0002/MID3")):
        (fams / fam / person).mkdir(parents=True)
        for p in sorted((data_dir / "fiw/train-faces" / src).glob("*.jpg"))[:2]:
            shutil.copy(p, fams / fam / person / p.name)
    home = tmp_path / "home"
    r = run("ingest", fams, "--quiet", "--home", home, home=session_home)
    assert r.returncode != 0 and "--families" in r.stderr, r.stderr
    r = run("ingest", fams, "--families", "--format", "csv", "--home", home, home=session_home)
    assert r.returncode != 0 and "cannot go with --format csv" in r.stderr, r.stderr
    r = run("ingest", fams, "--families", "--quiet", "--home", home, home=session_home)
    assert r.returncode == 0, r.stderr
    assert f"{len(list(fams.glob('*/*/*.jpg')))} photos processed" in r.stdout
    probe = sorted((data_dir / "fiw/train-faces/F0001/MID3").glob("*.jpg"))[0]  # another son of Adeyemi's mum
    r = run("relatives", probe, "--json", "--home", home, home=session_home)
    assert r.returncode == 0, r.stderr
    assert {"Adeyemi", "Berg"} <= set(r.stdout.replace('"', " ").split()), r.stdout


def test_workers_default_to_the_cores_this_process_may_use(monkeypatch):
    """Ingest, evaluate and calibrate (CLI and pages) take their worker count from the
    settings: every core this process may use, unless FACESEARCH_WORKERS says otherwise."""
    from facesearch.settings import Settings

    monkeypatch.delenv("FACESEARCH_WORKERS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert Settings.from_env().workers == Settings().workers == cores
    monkeypatch.setenv("FACESEARCH_WORKERS", "3")
    assert Settings.from_env().workers == 3


def test_verify_and_user_errors(data_dir, session_home):
    people = data_dir / "photos/people"
    r = run("verify", people / "obama/obama.jpg", people / "obama/obama2.jpg", home=session_home)
    assert r.returncode == 0 and r.stdout.startswith("SAME person"), r.stdout + r.stderr
    r = run("verify", people / "obama/obama.jpg", people / "biden/biden.jpg", home=session_home)
    assert r.stdout.startswith("DIFFERENT people")
    # A user's mistake: one line on stderr, non-zero exit, no traceback.
    for args in (("match", data_dir / "photos/edge/not-an-image.jpg"),
                 ("match", data_dir / "photos/edge/truncated.jpg"),
                 ("match", people / "obama/obama.jpg", "--model", "nope"),
                 ("ingest", "/nonexistent/folder")):
        r = run(*args, home=session_home)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr and "error:" in r.stderr, r.stderr
    r = run("models", home=session_home)
    assert r.returncode == 0 and "facenet-casia" in r.stdout and "missing weights" in r.stdout


def test_tensorflow_log_lines_stay_off_stderr(data_dir, tmp_path):
    """A command that imports TensorFlow (the mtcnn detector) in a user's plain shell:
    TensorFlow's and absl's start-up lines ("WARNING: All log messages before
    absl::InitializeLog()...", "I0000 ... port.cc:153] oneDNN ...") must not show."""
    people = data_dir / "photos/people"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["FACESEARCH_HOME"] = str(tmp_path)
    # The console script's body, plus a line saying whether TensorFlow was imported at all.
    code = "import sys; from facesearch.cli.main import main; rc = main(); print('tensorflow' in sys.modules); sys.exit(rc)"
    r = subprocess.run([sys.executable, "-c", code, "verify", "--detector", "mtcnn", people / "obama/obama.jpg",
                        people / "obama/obama2.jpg"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("SAME person") and r.stdout.split()[-1] == "True", r.stdout
    assert r.stderr == ""


def test_help_for_every_command(session_home):
    for cmd in ("ingest", "match", "verify", "models", "stats", "evaluate"):
        r = run(cmd, "--help", home=session_home)
        assert r.returncode == 0 and "usage" in r.stdout


# Libraries a command loads only when it uses them (a cold `facesearch match` of a group
# photo spent more on imports than on its work, issue 19: docs/BENCHMARKS.md).
HEAVY = ("chromadb", "tensorflow", "keras", "tf_keras", "deepface", "mtcnn", "dlib", "torch", "onnx", "pandas",
         "sklearn", "scipy", "plotly", "streamlit", "tqdm", "dask", "openTSNE", "matplotlib")


def test_commands_import_only_what_they_use(data_dir, tmp_path):
    """In a new process: the command line itself (its parser, every command's options)
    imports none of the heavy libraries; `facesearch match` then imports chromadb, to open
    the gallery, and none of the others (not onnx: SFace's edited graph is kept)."""
    home = tmp_path / "home"
    r = run("ingest", data_dir / "photos/people", "--quiet", home=home)
    assert r.returncode == 0, r.stderr
    code = f"""
import json, sys
heavy = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
from facesearch.cli.main import build_parser, main
build_parser()
parsed = heavy()
rc = main(sys.argv[1:])
print(json.dumps([parsed, heavy(), rc]))
"""
    env = {**os.environ, "FACESEARCH_HOME": str(home)}
    r = subprocess.run([sys.executable, "-c", code, "match", data_dir / "photos/group/obama_and_biden.jpg"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    parsed, matched, rc = json.loads(r.stdout.splitlines()[-1])
    assert rc == 0 and "3 face(s)" in r.stdout, r.stdout
    assert parsed == [], parsed
    assert matched == ["chromadb"], matched


def test_match_says_the_database_is_not_answering_before_the_photo(data_dir, tmp_path):
    """The gallery opens while the photo is analysed (facesearch.search.identify): its error
    still comes first, as when it opened before, and a photo's own error comes alone."""
    import socket

    with socket.socket() as sk:  # a port nobody listens on
        sk.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sk.getsockname()[1]}"
    for photo in ("photos/edge/not-an-image.jpg", "photos/group/obama_and_biden.jpg"):
        r = run("match", data_dir / photo, "--chroma-url", url, home=tmp_path / "home")
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: the gallery's database server") and "not answering" in r.stderr, r.stderr
    r = run("match", data_dir / "photos/edge/not-an-image.jpg", home=tmp_path / "home")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "not an image" in r.stderr, r.stderr
