"""Settings: one frozen dataclass read from environment variables, with defaults.

Everything the project writes at run time lives under ``home`` (``FACESEARCH_HOME``,
default ``./data``): the Chroma database, thumbnails, model weights and caches.

The data folder is private to its owner: faces, embeddings and the audit log are no
other local user's business. Every facesearch process therefore runs with umask 077
(set when this module is imported, before anything is written; the ``chroma run``
server inherits it), so what it creates is 0700 (folders) and 0600 (files), and
:func:`ensure_private` makes the data folder itself 0700 where it is created or opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PRIVATE_UMASK = 0o077


def make_private() -> None:
    """This process creates files and folders for its owner only (umask 077; a stricter
    umask already set stays)."""
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)


make_private()


def ensure_private(folder: Path) -> Path:
    """Create ``folder`` (and its missing parents) 0700, or make an existing one of ours
    0700: a data folder made before this (or by hand with umask 022) is closed too.
    Returns ``folder``."""
    make_private()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        st = folder.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            folder.chmod(0o700)
    except OSError:
        pass  # not ours, or read-only: the writes that follow say what is wrong
    return folder


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        from facesearch.errors import ConfigError

        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def default_workers() -> int:
    """Worker processes for ingest, evaluate and calibrate unless told otherwise
    (``FACESEARCH_WORKERS``, ``--workers``): one per core this process may use (its CPU
    affinity, which a container or ``taskset`` narrows, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def parse_ice_servers(raw: str) -> tuple:
    """``FACESEARCH_ICE_SERVERS`` as RTCIceServer dicts: a JSON list (or one object), e.g.
    ``[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]``, or
    comma-separated URLs (``stun:stun.example.org:3478,turn:...``). Raises ConfigError."""
    import json

    from facesearch.errors import ConfigError

    raw = (raw or "").strip()
    if not raw:
        return ()
    if raw[0] in "[{":
        try:
            val = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"FACESEARCH_ICE_SERVERS is not valid JSON ({exc.msg} at character {exc.pos})") from None
        servers = val if isinstance(val, list) else [val]
    else:
        servers = [{"urls": [u.strip() for u in raw.split(",") if u.strip()]}]
    for sv in servers:
        urls = sv.get("urls") if isinstance(sv, dict) else None
        urls = [urls] if isinstance(urls, str) else urls
        if not urls or not all(isinstance(u, str) and u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns")
                               for u in urls):
            raise ConfigError(f"FACESEARCH_ICE_SERVERS: each server needs \"urls\" starting with stun:, stuns:, "
                              f"turn: or turns:, got {sv!r}")
        if any(u.startswith("turn") for u in urls) and not (sv.get("username") and sv.get("credential")):
            raise ConfigError("FACESEARCH_ICE_SERVERS: a TURN server needs \"username\" and \"credential\"")
    return tuple(servers)


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path("data"))
    model: str = "sface"
    detector: str = "yunet"
    chroma_url: str | None = None  # e.g. http://127.0.0.1:8000 -> HttpClient instead of PersistentClient
    top_k: int = 5
    batch_size: int = 64
    workers: int = field(default_factory=default_workers)  # detection/embedding processes; see default_workers
    thumb_size: int = 112
    # The embedding cache may live apart from the gallery (FACESEARCH_CACHE), so several
    # galleries, or throwaway test galleries, share already-computed embeddings.
    cache_dir: Path | None = None
    # Hosting (facesearch.access): with a password, visitors are read-only; ingest from
    # server folders is confined to these roots (empty: anywhere, for a local user).
    admin_password: str | None = field(default=None, repr=False)
    ingest_roots: tuple[Path, ...] = ()
    # WebRTC STUN/TURN servers for the live webcam (FACESEARCH_ICE_SERVERS: a JSON list of
    # RTCIceServer objects, or comma-separated URLs). Empty: browser and server connect
    # directly, which works on one machine or a LAN, not through NAT.
    ice_servers: str = ""  # as given; parse_ice_servers() validates it where it is used
    # Hosted: the models a visitor may choose (FACESEARCH_VISITOR_MODELS, comma-separated).
    # Empty: the offline models whose weights are on disk (facesearch.access.visitor_models),
    # so no visitor can make the server download or load another model.
    visitor_models: tuple[str, ...] = ()

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
            workers=_env_int("FACESEARCH_WORKERS", default_workers()),
            thumb_size=_env_int("FACESEARCH_THUMB_SIZE", 112),
            cache_dir=Path(env["FACESEARCH_CACHE"]).expanduser() if env.get("FACESEARCH_CACHE") else None,
            admin_password=env.get("FACESEARCH_ADMIN_PASSWORD") or None,
            ice_servers=env.get("FACESEARCH_ICE_SERVERS", ""),
            visitor_models=tuple(m.strip() for m in env.get("FACESEARCH_VISITOR_MODELS", "").split(",") if m.strip()),
            ingest_roots=tuple(Path(p).expanduser() for p in env.get("FACESEARCH_INGEST_ROOTS", "").split(os.pathsep)
                               if p.strip()),
        )


def get_settings() -> Settings:
    return Settings.from_env()
