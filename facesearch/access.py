"""Who may change the gallery: roles for hosting the dashboard publicly.

With an admin password configured (``FACESEARCH_ADMIN_PASSWORD``, or ``admin_password``
in Streamlit's secrets) the app is *hosted*: visitors match, verify, explore and
evaluate, and only a signed-in admin ingests, enrolls, deletes, changes thresholds or
restores galleries. Without one it is a single local user's tool and every session may
change the gallery. The command line is the data folder's owner (whoever can run it can
read the files anyway), so it acts as an admin.

The check sits in the core, not only in the pages: every gallery write and threshold
change takes an :class:`Actor` and refuses a visitor, whatever widget the request came
from.
"""

from __future__ import annotations

import getpass
import hmac
from dataclasses import dataclass

from facesearch.errors import PermissionDeniedError
from facesearch.settings import Settings


@dataclass(frozen=True)
class Actor:
    """Who asks: ``name`` goes into the audit log; ``admin`` may change the gallery."""

    name: str
    admin: bool


VISITOR = Actor("visitor", False)
ADMIN = Actor("admin", True)
LOCAL_USER = Actor("local user", True)  # the dashboard with no admin password: one trusted user


def cli_actor() -> Actor:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return Actor(f"cli:{user}", True)


def hosted(settings: Settings) -> bool:
    """True when an admin password is set: visitors are read-only."""
    return bool(settings.admin_password)


def check_password(settings: Settings, given: str) -> bool:
    # Constant-time, so the comparison leaks nothing about the password's prefix.
    return hosted(settings) and hmac.compare_digest(str(given).encode(), str(settings.admin_password).encode())


def session_actor(settings: Settings, signed_in: bool) -> Actor:
    """The actor of a dashboard session."""
    if not hosted(settings):
        return LOCAL_USER
    return ADMIN if signed_in else VISITOR


def require_admin(actor: Actor | None, what: str) -> Actor:
    """``actor`` (None: the command line) if it may ``what``; else PermissionDeniedError."""
    actor = actor or cli_actor()
    if not actor.admin:
        raise PermissionDeniedError(f"{what} is for the gallery's admin: sign in on the Home page")
    return actor


def check_ingest_path(settings: Settings, path, actor: Actor | None) -> None:
    """Refuse a dashboard ingest of a server folder outside the configured roots.

    The command line (``actor`` None) may read any folder its user can. A dashboard
    session may ingest only under ``FACESEARCH_INGEST_ROOTS`` or the data folder's own
    ``uploads/`` (zips and enrollments unpacked there); when hosted with no roots set,
    only uploads. The path is resolved first, so ``..`` and symlinks that lead out of a
    root are refused too."""
    from pathlib import Path

    if actor is None:
        return
    roots = list(settings.ingest_roots)
    if not roots and not hosted(settings):
        return  # a local user's own machine: any folder they can read
    target = Path(path).expanduser().resolve()
    allowed = [r.expanduser().resolve() for r in roots] + [(settings.home / "uploads").resolve()]
    if any(target == r or r in target.parents for r in allowed):
        return
    where = ", ".join(str(r) for r in roots) if roots else "none are set (FACESEARCH_INGEST_ROOTS)"
    raise PermissionDeniedError(f"{path} is outside the folders this server ingests from ({where})")



def check_model(actor: Actor | None, model: str, visitor_models) -> str:
    """``model`` if ``actor`` (None: the command line) may load it: an admin any model, a
    visitor one of ``visitor_models`` (facesearch.models.registry.visitor_models: what the
    admin made available); else PermissionDeniedError. A visitor never makes the server
    download weights or hold another model in memory, whatever the page sends."""
    actor = actor or cli_actor()
    if actor.admin or model in tuple(visitor_models):
        return model
    raise PermissionDeniedError(f"the model {model!r} is not available to visitors on this server")
