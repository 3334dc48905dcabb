"""Settings: one frozen dataclass read from environment variables, with defaults.

Everything the project writes at run time lives under ``home`` (``FACESEARCH_HOME``,
default ``./data``): the Chroma database, thumbnails, model weights and caches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        from .errors import ConfigError

        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path("data"))
    model: str = "sface"
    detector: str = "yunet"
    chroma_url: str | None = None  # e.g. http://127.0.0.1:8000 -> HttpClient instead of PersistentClient
    top_k: int = 5
    batch_size: int = 64
    workers: int = 1
    thumb_size: int = 112
    # The embedding cache may live apart from the gallery (FACESEARCH_CACHE), so several
    # galleries, or throwaway test galleries, share already-computed embeddings.
    cache_dir: Path | None = None
    # Hosting (facesearch.access): with a password, visitors are read-only; ingest from
    # server folders is confined to these roots (empty: anywhere, for a local user).
    admin_password: str | None = field(default=None, repr=False)
    ingest_roots: tuple[Path, ...] = ()

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def thumbs_path(self) -> Path:
        return self.home / "thumbs"

    @property
    def deepface_home(self) -> Path:
        # DeepFace keeps weights in $DEEPFACE_HOME/.deepface/weights
        return self.home / "models"

    @property
    def weights_path(self) -> Path:
        return self.deepface_home / ".deepface" / "weights"

    @property
    def keras_home(self) -> Path:
        return self.home / "models" / "keras"

    @property
    def cache_path(self) -> Path:
        return self.cache_dir or self.home / "cache"

    @property
    def thresholds_file(self) -> Path:
        return self.home / "thresholds.json"

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        return cls(
            home=Path(env.get("FACESEARCH_HOME") or "data").expanduser(),
            model=env.get("FACESEARCH_MODEL") or "sface",
            detector=env.get("FACESEARCH_DETECTOR") or "yunet",
            chroma_url=env.get("FACESEARCH_CHROMA_URL") or None,
            top_k=_env_int("FACESEARCH_TOP_K", 5),
            batch_size=_env_int("FACESEARCH_BATCH_SIZE", 64),
            workers=_env_int("FACESEARCH_WORKERS", 1),
            thumb_size=_env_int("FACESEARCH_THUMB_SIZE", 112),
            cache_dir=Path(env["FACESEARCH_CACHE"]).expanduser() if env.get("FACESEARCH_CACHE") else None,
            admin_password=env.get("FACESEARCH_ADMIN_PASSWORD") or None,
            ingest_roots=tuple(Path(p).expanduser() for p in env.get("FACESEARCH_INGEST_ROOTS", "").split(os.pathsep)
                               if p.strip()),
        )


def get_settings() -> Settings:
    return Settings.from_env()
