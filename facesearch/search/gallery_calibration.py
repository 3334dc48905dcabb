"""Search thresholds measured on the gallery itself, counting identities, not faces.

Why: the shipped calibration (:mod:`facesearch.search.calibration`) models a stranger as an
LFW-like face compared with N independent gallery faces. A gallery of families, of
celebrities or of a shelter's intake photos has other strangers: in a reunification
gallery a stranger's relatives are enrolled and score far closer than LFW's impostors
(the shared FIW families, 310 members enrolled: 7.2% of strangers called a match where
1% was promised), and several photos of one person are not independent chances.

What is measured (:func:`estimate`): every labelled gallery face (a seeded sample of at
most :data:`MAX_PROBES` at large sizes) plays a stranger to the *rest* of the gallery: its
own identity is left out, and its score against each other identity is its distance to
that identity's nearest face. A probe's best score is the smallest of those: exactly what
a search does to a person who is not in a gallery of N - 1 identities with the gallery's
own faces per identity, its relatives (families enrolled together stay together) and its
look-alikes. FPIR(t) is then the share of probes whose best score is at most t
(:meth:`GalleryCalibration.fpir`), and the threshold for a target FPIR is that quantile of
the best scores, read with the Harrell-Davis estimator (scipy), which weighs all order
statistics near the quantile instead of one. A gallery that has grown since is scaled
by its number of identities: FPIR(N) = 1 - (1 - FPIR(N0)) ** (N / N0).

When it is used (:meth:`GalleryCalibration.usable`): the gallery has at least
:data:`MIN_IDENTITIES` labelled identities, and enough probes that about
:data:`MIN_TAIL_PROBES` of them fall at or below the target (at FPIR 1%, 300 probe faces);
a smaller gallery cannot measure a 1% tail and keeps the shipped calibration. These two
bounds come from counting, not from the shared data: an empirical 1% quantile needs a few
observations under it.

Also measured, because a person should see them:

* **relatives** (galleries that know families, e.g. ingested from FIW's layout): each
  probe's scores against the other members of its family. :meth:`relative_share` says
  what share of relatives' scores lie at or below a distance: the Match page says when a
  face's best match is in the range where relatives score.
* **doubles**: pairs of identities where a face is closer to another identity than to
  its own identity's median face (a duplicate under two names, a mislabelled photo, a
  twin): "these two identities may be one person".

:func:`for_gallery` keeps the measurement of a live gallery: in a file per gallery under
the data folder's ``calibration/galleries/``, keyed by the gallery's version (its
collection, write generation and face count), recomputed in a background thread when the
gallery changes (the dashboard) or at once (``wait=True``: the command line).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from facesearch.errors import ConfigError
from facesearch.files import write_atomic
from facesearch.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Fewer labelled identities than this and the gallery's own strangers are too few kinds
# of people to stand for the world's: the shipped calibration is kept.
MIN_IDENTITIES = 30
# A target FPIR is read from the gallery only when about this many probes are expected at
# or below it (300 probe faces at 1%); below that one or two faces would set it.
MIN_TAIL_PROBES = 3
# Probe faces sampled at most: 3,000 probes against 200,000 faces are 6e8 distances,
# about 10-20 s on two cores, in the background.
MAX_PROBES = 3000
# Probes searched per block: a block's distances are (64, n) float32, 51 MB at 200,000 faces.
_BLOCK = 64
# Relatives' scores needed before the Match page speaks of them.
MIN_RELATIVE_SCORES = 20
# A best match is "in the range where relatives score" when at least this share of the
# gallery's relatives' scores lie at or below it.
RELATIVE_SHARE = 0.01
# Doubles kept (closest first).
MAX_DOUBLES = 50
FORMAT = 1


@dataclass(frozen=True)
class Double:
    """Two identities that may be one person: a face of ``a`` is ``distance`` from ``b``'s
    nearest face, closer than ``a``'s own median distance (``own_median``) to ``a``'s other faces."""

    a: str
    b: str
    distance: float
    own_median: float
    faces: int  # how many of ``a``'s and ``b``'s probe faces found the other one this close


@dataclass(frozen=True)
class GalleryCalibration:
    """The impostor scores of one gallery version (see the module docstring).

    ``best``: each probe's best score against the other identities, sorted ``(n_probes,)``;
    ``relatives``: probes' scores against their family's other members, sorted ``(r,)``."""

    model: str
    model_key: str
    version: str  # the gallery version measured (FaceGallery.version())
    n_faces: int  # labelled faces in the gallery
    n_identities: int
    best: np.ndarray
    relatives: np.ndarray = field(default_factory=lambda: np.zeros(0))
    doubles: tuple[Double, ...] = ()
    n_families: int = 0
    measured: str = ""  # when, ISO date-time
    seconds: float = 0.0
    # Identities a search goes against, when not the gallery measured (a gallery that grew,
    # or a subset of it in evaluation): rates are scaled to it. None: as measured.
    n_searched: int | None = None

    def at(self, n_identities: int) -> "GalleryCalibration":
        """The same measurement, answering for a search of ``n_identities`` identities."""
        return replace(self, n_searched=int(n_identities))

    # -- what it measured ---------------------------------------------------------------
    @property
    def n_probes(self) -> int:
        return int(self.best.shape[0])

    @property
    def n_scores(self) -> int:
        """Probe-identity scores measured: each probe against every other identity."""
        return self.n_probes * max(0, self.n_identities - 1)

    @property
    def reference_identities(self) -> int:
        """How many identities each probe was searched against."""
        return max(1, self.n_identities - 1)

    def usable(self, target: float) -> bool:
        """Whether a threshold for ``target`` FPIR can be read from this gallery."""
        return self.n_identities >= MIN_IDENTITIES and self.n_probes * float(target) >= MIN_TAIL_PROBES

    def why_not(self, target: float) -> str | None:
        """Why the shipped calibration is used instead, in words; None when this one is."""
        if self.n_identities < MIN_IDENTITIES:
            return (f"this gallery has {self.n_identities:,} labelled people; at least {MIN_IDENTITIES} are needed "
                    "to calibrate on it")
        if not self.usable(target):
            need = int(math.ceil(MIN_TAIL_PROBES / float(target)))
            return (f"a {target:.2%} false-match rate needs at least {need:,} labelled faces to measure; this gallery "
                    f"has {self.n_probes:,}")
        return None

    # -- rates ------------------------------------------------------------------------------
    def _level(self, fpir: float, n_identities: int | None) -> float:
        """The share of probes (searched against N0 identities) that corresponds to
        ``fpir`` in a gallery of ``n_identities``."""
        n = max(1, int(n_identities or self.n_searched or self.n_identities))
        return float(-math.expm1(math.log1p(-fpir) * self.reference_identities / n))

    def fpir(self, threshold: float, n_identities: int | None = None) -> float:
        """Share of strangers a search of ``n_identities`` (default: as measured) calls a match."""
        f0 = float(np.searchsorted(self.best, float(threshold), side="right")) / max(1, self.n_probes)
        n = max(1, int(n_identities or self.n_searched or self.n_identities))
        if f0 >= 1.0:
            return 1.0
        return float(-math.expm1(math.log1p(-f0) * n / self.reference_identities))

    def threshold_for_fpir(self, fpir: float, n_identities: int | None = None) -> float:
        """The distance at or below which about ``fpir`` of strangers are called a match."""
        from scipy.stats.mstats import hdquantiles

        if not 0.0 < fpir < 1.0:
            raise ConfigError(f"target FPIR must lie in (0, 1), got {fpir}")
        if not self.n_probes:
            raise ConfigError("the gallery calibration holds no probe")
        level = min(max(self._level(fpir, n_identities), 1e-9), 1 - 1e-9)
        return float(np.asarray(hdquantiles(self.best, prob=[level]))[0])

    def relative_share(self, distance: float) -> float | None:
        """Share of relatives' scores at or below ``distance``; None when the gallery knows
        too few relatives to say."""
        if self.relatives.shape[0] < MIN_RELATIVE_SCORES:
            return None
        return float(np.searchsorted(self.relatives, float(distance), side="right")) / self.relatives.shape[0]

    @property
    def source(self) -> str:
        """What the calibration rests on, in words."""
        fam = (f", {self.n_families:,} families ({self.relatives.shape[0]:,} relatives' scores)"
               if self.n_families else "")
        return (f"this gallery's own faces: {self.n_probes:,} of its {self.n_faces:,} labelled faces searched "
                f"as strangers against its other {self.reference_identities:,} people "
                f"({self.n_scores:,} scores{fam})")

    # -- files -------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "model": self.model, "model_key": self.model_key, "version": self.version,
            "n_faces": self.n_faces, "n_identities": self.n_identities, "n_families": self.n_families,
            "measured": self.measured, "seconds": round(self.seconds, 3),
            "best": [round(float(v), 6) for v in self.best],
            "relatives": [round(float(v), 6) for v in self.relatives],
            "doubles": [[d.a, d.b, round(d.distance, 6), round(d.own_median, 6), d.faces] for d in self.doubles]})

    @classmethod
    def from_json(cls, text: str) -> "GalleryCalibration":
        d = json.loads(text)
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}")
        return cls(d["model"], d["model_key"], d["version"], int(d["n_faces"]), int(d["n_identities"]),
                   np.asarray(d["best"], np.float64), np.asarray(d["relatives"], np.float64),
                   tuple(Double(str(a), str(b), float(x), float(m), int(c)) for a, b, x, m, c in d["doubles"]),
                   int(d["n_families"]), str(d["measured"]), float(d["seconds"]))


def too_small(n_faces: int | None, target: float) -> str | None:
    """Why a gallery of ``n_faces`` faces cannot be calibrated on for ``target``, before
    measuring it (a gallery too small is never measured); None when it might be."""
    if n_faces is None:
        return None
    need = max(MIN_IDENTITIES, int(math.ceil(MIN_TAIL_PROBES / float(target))))
    if int(n_faces) < need:
        return (f"this gallery's {int(n_faces):,} faces are too few to calibrate on (a {target:.2%} false-match "
                f"rate needs at least {need:,} labelled faces of {MIN_IDENTITIES}+ people)")
    return None


# -- measuring -----------------------------------------------------------------------------
def estimate(embeddings: np.ndarray, identities: Sequence[str | None], families: Sequence[str | None] | None = None,
             *, model: str = "", model_key: str = "", version: str = "", max_probes: int = MAX_PROBES,
             seed: int = 0) -> GalleryCalibration:
    """Measure a gallery's impostor scores (module docstring) from its faces ``(n, d)``
    (unit rows) labelled ``identities`` (None or "" for an unnamed face, left out) and,
    where known, ``families`` (None for a face without one)."""
    t0 = time.perf_counter()
    x = np.asarray(embeddings, np.float32)
    ids = np.asarray(["" if i is None else str(i) for i in identities], dtype=object)
    if x.ndim != 2 or x.shape[0] != ids.shape[0]:
        raise ConfigError(f"embeddings {x.shape} and {ids.shape[0]} identities do not match")
    fams = np.asarray(["" if f is None else str(f) for f in (families if families is not None else [None] * len(ids))],
                      dtype=object)
    keep = ids != ""
    x, ids, fams = x[keep], ids[keep], fams[keep]
    names, inv = np.unique(ids.astype(str), return_inverse=True)
    u = len(names)
    # Faces ordered by identity so that each identity's nearest face is one reduceat.
    order = np.argsort(inv, kind="stable")
    xs, inv_s = x[order], inv[order]
    starts = np.r_[0, np.cumsum(np.bincount(inv_s, minlength=u))[:-1]].astype(np.int64)
    # An identity's family: the one its faces carry (the first, if they disagree).
    ident_family = np.full(u, "", dtype=object)
    for i in range(len(ids) - 1, -1, -1):
        if fams[i]:
            ident_family[inv[i]] = fams[i]
    kin_of: dict[str, np.ndarray] = {}
    for f in {f for f in ident_family if f}:
        kin_of[f] = np.flatnonzero(ident_family == f)
    rng = np.random.default_rng(seed)
    probes = np.arange(len(ids)) if len(ids) <= max_probes else np.sort(rng.choice(len(ids), max_probes, replace=False))
    best, rel = [], []
    pairs: dict[tuple[int, int], list] = {}
    if u >= 2:
        for s in range(0, len(probes), _BLOCK):
            p = probes[s:s + _BLOCK]
            d = np.clip(1.0 - x[p] @ xs.T, 0.0, 2.0)  # (b, n): probe to every face
            per = np.minimum.reduceat(d, starts, axis=1)  # (b, u): to each identity's nearest face
            own = inv[p]
            for r, (pi, me) in enumerate(zip(p, own)):
                # The probe's distances to its own identity's other faces: its "same person" scale.
                lo = starts[me]
                hi = starts[me + 1] if me + 1 < u else xs.shape[0]
                mine = d[r, lo:hi][order[lo:hi] != pi]
                row = per[r].copy()
                row[me] = np.inf
                j = int(np.argmin(row))
                best.append(row[j])
                fam = ident_family[me]
                if fam:
                    kin = kin_of[fam]
                    rel.extend(row[kin[kin != me]].tolist())
                if mine.size:
                    med = float(np.median(mine))
                    if row[j] < med:
                        e = pairs.setdefault((min(me, j), max(me, j)), [np.inf, med, 0])
                        if row[j] < e[0]:
                            e[0], e[1] = float(row[j]), med
                        e[2] += 1
    doubles = tuple(sorted((Double(str(names[a]), str(names[b]), v[0], v[1], v[2]) for (a, b), v in pairs.items()),
                           key=lambda dd: dd.distance)[:MAX_DOUBLES])
    n_fam = len({f for f in ident_family if f})
    return GalleryCalibration(model, model_key, version, int(len(ids)), int(u), np.sort(np.asarray(best, np.float64)),
                              np.sort(np.asarray(rel, np.float64)), doubles, n_fam,
                              time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter() - t0)


# -- a live gallery --------------------------------------------------------------------------
def _folder(settings: Settings) -> Path:
    return settings.home / "calibration" / "galleries"


def _path(settings: Settings, gallery_name: str) -> Path:
    return _folder(settings) / f"{gallery_name}.json"


def read(settings: Settings, gallery_name: str) -> GalleryCalibration | None:
    """The last measurement saved for a gallery, or None (none yet, or unreadable: it is
    measured again)."""
    try:
        return GalleryCalibration.from_json(_path(settings, gallery_name).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("gallery calibration for %s unreadable (%s); measuring again", gallery_name, exc)
        return None


def save(cal: GalleryCalibration, settings: Settings, gallery_name: str) -> Path:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    return write_atomic(_path(settings, gallery_name), cal.to_json())


def forget(settings: Settings, gallery_name: str) -> None:
    """Drop a gallery's measurement (file and memory): an erased person's name must not
    stay in its list of doubles."""
    with _lock:
        _memo.pop(f"{settings.home}|{gallery_name}", None)
    _path(settings, gallery_name).unlink(missing_ok=True)


def measure(gallery, model_key: str = "", version: str | None = None) -> GalleryCalibration:
    """Measure a :class:`store.FaceGallery` as it is now."""
    version = version if version is not None else gallery.version()
    _, x, mds = gallery.all_embeddings()
    idents = [str((m or {}).get("identity") or "") for m in mds]
    fams = [(m or {}).get("family") for m in mds]
    return estimate(x, idents, fams, model=gallery.model, model_key=model_key, version=version)


_memo: dict[str, GalleryCalibration] = {}
_running: dict[str, threading.Thread] = {}
_lock = threading.Lock()


def _refresh(gallery, settings: Settings, model_key: str, version: str) -> GalleryCalibration:
    cal = measure(gallery, model_key, version)
    with _lock:
        _memo[f"{settings.home}|{gallery.name}"] = cal
    try:
        save(cal, settings, gallery.name)
    except Exception as exc:  # a full disk costs the next process a measurement, nothing more
        log.warning("could not save the gallery calibration of %s: %s", gallery.name, exc)
    return cal


def for_gallery(gallery, settings: Settings | None = None, model_key: str = "", wait: bool = False,
                version: str | None = None) -> GalleryCalibration | None:
    """The calibration of ``gallery`` (a :class:`store.FaceGallery`) at its current version.

    Kept in this process and in a file. When the gallery has changed since: ``wait`` (the
    command line) measures it now; otherwise (the dashboard, the webcam) a background
    thread measures it and the last measurement is returned meanwhile, if the gallery has
    not more than doubled or halved since (it still describes the same people), else None
    (the shipped calibration answers until the new one is ready)."""
    settings = settings or get_settings()
    version = version if version is not None else gallery.version()
    key = f"{settings.home}|{gallery.name}"
    with _lock:
        last = _memo.get(key)
    if last is None or last.version != version:
        on_disk = read(settings, gallery.name)
        if on_disk is not None and (last is None or on_disk.version == version):
            last = on_disk
            with _lock:
                _memo[key] = on_disk
    if last is not None and last.version == version:
        return last
    if wait:
        return _refresh(gallery, settings, model_key, version)
    with _lock:
        t = _running.get(key)
        if t is None or not t.is_alive():
            def run(g=gallery):
                try:
                    _refresh(g, settings, model_key, version)
                except Exception as exc:
                    log.warning("measuring gallery %s failed: %s", g.name, exc)
                finally:
                    with _lock:
                        _running.pop(key, None)
            t = threading.Thread(target=run, name=f"calibrate {gallery.name}", daemon=True)
            _running[key] = t
            t.start()
    if last is None:
        return None
    n = version_count(version)
    if n is not None and not (last.n_faces / 2 <= n <= last.n_faces * 2 + 1):
        return None
    # Its thresholds still describe these people; its list of names may not (someone
    # renamed or erased since), so none is shown until the new measurement.
    return replace(last, doubles=())


def wait_for_background(timeout: float = 120.0) -> None:
    """Wait for this process's background measurements (tests, and a clean shutdown)."""
    end = time.monotonic() + timeout
    for t in list(_running.values()):
        t.join(max(0.0, end - time.monotonic()))


def version_count(version: str) -> int | None:
    try:
        return int(version.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None
