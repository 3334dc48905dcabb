"""Per-model verdict thresholds: the model's default unless one was chosen and saved
("Use this threshold" on the Evaluate page, ``facesearch evaluate --apply``)."""

from __future__ import annotations

import json
import os
import threading
import time

from .errors import ConfigError, StorageFullError
from .models import check_model_name, get_model
from .settings import Settings, get_settings

_lock = threading.Lock()


def _read(settings: Settings) -> dict:
    try:
        return json.loads(settings.thresholds_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def get_threshold(model: str, settings: Settings | None = None) -> float:
    """The cosine-distance threshold used for verdicts with ``model``."""
    settings = settings or get_settings()
    name = check_model_name(model)
    saved = _read(settings).get(name)
    return float(saved["threshold"]) if saved else float(get_model(name, settings).threshold)


def threshold_info(model: str, settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    name = check_model_name(model)
    saved = _read(settings).get(name)
    default = float(get_model(name, settings).threshold)
    return {"model": name, "threshold": float(saved["threshold"]) if saved else default, "default": default,
            "source": (saved or {}).get("source", "default"), "saved_at": (saved or {}).get("saved_at")}


def set_threshold(model: str, value: float, source: str = "", settings: Settings | None = None) -> float:
    """Persist ``value`` as ``model``'s threshold (atomic write). Returns it."""
    settings = settings or get_settings()
    name = check_model_name(model)
    value = float(value)
    if not 0.0 <= value <= 2.0:
        raise ConfigError(f"a cosine-distance threshold lies in [0, 2], got {value}")
    with _lock:
        data = _read(settings)
        data[name] = {"threshold": value, "source": source, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        f = settings.thresholds_file
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2))
            os.replace(tmp, f)
        except OSError as exc:
            if exc.errno == 28:
                raise StorageFullError(f"disk full while saving {f}") from None
            raise
    return value


def reset_threshold(model: str, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    name = check_model_name(model)
    with _lock:
        data = _read(settings)
        if data.pop(name, None) is not None:
            settings.thresholds_file.write_text(json.dumps(data, indent=2))
