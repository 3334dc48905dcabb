"""Per-model verdict thresholds.

Two questions, two thresholds:

* **verify** (1:1, "are these two photos the same person?"): a fixed cosine distance,
  the model's default unless one was saved (``facesearch evaluate --apply-verify``).
* **search** (1:N, "who is this?" against a gallery): the distance that calls about
  ``target_fpir`` (default 1%) of people who are *not* in the gallery a "match", at the
  gallery's current size, from the model's impostor calibration
  (:mod:`facesearch.search.calibration`). It tightens as the gallery grows. The Evaluate page's
  "Use this threshold" and ``facesearch evaluate --apply`` set the target, not a number.

A model without a calibration (the download-only DeepFace models) searches with its
verify threshold.
"""

from __future__ import annotations

import json
import os
import threading
import time

from facesearch.admin import audit
from facesearch.search import calibration as _cal
from facesearch.errors import ConfigError, disk_full_raises
from facesearch.models.registry import check_model_name, get_model
from facesearch.search.verdicts import SEARCH_POSSIBLE_FACTOR, VERIFY_POSSIBLE_BAND
from facesearch.settings import Settings, get_settings
from facesearch.admin.access import Actor, require_admin

DEFAULT_TARGET_FPIR = 0.01

_lock = threading.Lock()


def _read(settings: Settings) -> dict:
    try:
        data = json.loads(settings.thresholds_file.read_text())
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write(settings: Settings, data: dict) -> None:
    f = settings.thresholds_file
    with disk_full_raises(f"disk full while saving {f}"):
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, f)


def _entry(model: str, settings: Settings) -> dict:
    e = _read(settings).get(model)
    return e if isinstance(e, dict) else {}


def verify_threshold(model: str, settings: Settings | None = None) -> float:
    """The 1:1 cosine-distance threshold for ``model``."""
    settings = settings or get_settings()
    name = check_model_name(model)
    saved = _entry(name, settings).get("threshold")
    return float(saved) if saved is not None else float(get_model(name, settings).threshold)


def target_fpir(model: str, settings: Settings | None = None) -> float:
    settings = settings or get_settings()
    saved = _entry(check_model_name(model), settings).get("target_fpir")
    return float(saved) if saved is not None else DEFAULT_TARGET_FPIR


def get_threshold(model: str, settings: Settings | None = None, gallery_size: int | None = None) -> float:
    """The cosine-distance threshold for "match" with ``model``: the 1:1 verify
    threshold when ``gallery_size`` is None, else the search threshold for a gallery of
    ``gallery_size`` faces at the model's target FPIR."""
    return search_thresholds(model, settings, gallery_size)[0] if gallery_size is not None else \
        verify_threshold(model, settings)


def search_thresholds(model: str, settings: Settings | None = None, gallery_size: int | None = None,
                      target: float | None = None) -> tuple[float, float]:
    """(match, possible) distance thresholds for a gallery search."""
    settings = settings or get_settings()
    name = check_model_name(model)
    cal = _cal.load(name, settings)
    if cal is None or gallery_size is None:
        t = verify_threshold(name, settings)
        return t, t * VERIFY_POSSIBLE_BAND
    target = target if target is not None else target_fpir(name, settings)
    n = max(1, int(gallery_size))
    return cal.threshold_for_fpir(target, n), cal.threshold_for_fpir(min(0.5, target * SEARCH_POSSIBLE_FACTOR), n)


def threshold_info(model: str, settings: Settings | None = None, gallery_size: int | None = None) -> dict:
    """Everything the pages show about a model's thresholds."""
    settings = settings or get_settings()
    name = check_model_name(model)
    e = _entry(name, settings)
    cal = _cal.load(name, settings)
    info = {"model": name, "verify_threshold": verify_threshold(name, settings),
            "verify_default": float(get_model(name, settings).threshold),
            "target_fpir": target_fpir(name, settings), "calibrated": cal is not None,
            "calibration": cal.source if cal else None, "source": e.get("source", "default"),
            "saved_at": e.get("saved_at"), "gallery_size": gallery_size}
    if gallery_size is not None:
        m, p = search_thresholds(name, settings, gallery_size)
        info.update(threshold=m, possible=p,
                    predicted_fpir=cal.fpir(m, gallery_size) if cal else None)
    else:
        info["threshold"] = info["verify_threshold"]
    return info


def _save(model: str, settings: Settings, **fields) -> None:
    name = check_model_name(model)
    with _lock:
        data = _read(settings)
        e = data.get(name) if isinstance(data.get(name), dict) else {}
        e.update(fields, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        data[name] = e
        _write(settings, data)


def set_target_fpir(model: str, value: float, source: str = "", settings: Settings | None = None,
                    actor: Actor | None = None) -> float:
    """Persist the share of strangers a search with ``model`` may call a match."""
    who = require_admin(actor, "changing a search threshold")
    settings = settings or get_settings()
    value = float(value)
    if not 0.0 < value < 0.5:
        raise ConfigError(f"a target FPIR lies in (0, 0.5), got {value}")
    _save(model, settings, target_fpir=value, source=source)
    audit.record(settings, who, "threshold", None, model=check_model_name(model), setting="search target FPIR",
                 value=value, source=source or None)
    return value


def set_threshold(model: str, value: float, source: str = "", settings: Settings | None = None,
                  actor: Actor | None = None) -> float:
    """Persist ``value`` as ``model``'s 1:1 verify threshold. Returns it."""
    who = require_admin(actor, "changing a verify threshold")
    settings = settings or get_settings()
    value = float(value)
    if not 0.0 <= value <= 2.0:
        raise ConfigError(f"a cosine-distance threshold lies in [0, 2], got {value}")
    _save(model, settings, threshold=value, source=source)
    audit.record(settings, who, "threshold", None, model=check_model_name(model), setting="verify threshold",
                 value=value, source=source or None)
    return value
