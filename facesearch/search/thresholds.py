"""Per-model verdict thresholds.

Two questions, two thresholds:

* **verify** (1:1, "are these two photos the same person?"): a fixed cosine distance,
  the model's default unless one was saved (``facesearch evaluate --apply-verify``).
* **search** (1:N, "who is this?" against a gallery): the distance that calls about
  ``target_fpir`` (default 1%) of people who are *not* in the gallery a "match", at the
  gallery's current size, from the model's impostor calibration
  (:mod:`facesearch.search.calibration`). It tightens as the gallery grows. The Evaluate page's
  "Use this threshold" and ``facesearch evaluate --apply`` set the target, not a number.

A change is previewed first (:func:`preview_threshold`, :func:`preview_target_fpir`: the
rates today and proposed, from the calibration) and saved by :func:`save`, which refuses a
verify threshold read off too few different-person pairs to know its false match rate.
Every save keeps what it replaced in the model's history (in the thresholds file) and is
audited; :func:`restore_previous` puts the previous value back.

A model without a calibration (the download-only DeepFace models) searches with its
verify threshold.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facesearch import audit
from facesearch.search import calibration as _cal
from facesearch.errors import ConfigError, TooFewPairsError, disk_full_raises
from facesearch.models.registry import check_model_name, get_model
from facesearch.settings import Settings, get_settings
from facesearch.access import Actor, require_admin

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


def threshold_info(model: str, settings: Settings | None = None) -> dict:
    """Everything the pages show about a model's saved thresholds (the search threshold
    for a gallery size is the verdict rule's: :func:`facesearch.search.verdicts.search_thresholds`)."""
    settings = settings or get_settings()
    name = check_model_name(model)
    e = _entry(name, settings)
    cal = _cal.load(name, settings)
    info = {"model": name, "verify_threshold": verify_threshold(name, settings),
            "verify_default": float(get_model(name, settings).threshold),
            "target_fpir": target_fpir(name, settings), "calibrated": cal is not None,
            "calibration": cal.source if cal else None, "source": e.get("source", "default"),
            "saved_at": e.get("saved_at")}
    info["threshold"] = info["verify_threshold"]
    return info


# What a model's entry in the thresholds file may set, and its name in words.
SETTINGS = {"threshold": "verify threshold", "target_fpir": "search target FPIR"}
# Earlier values kept per model (restore_previous walks back through them); the audit log
# keeps every change.
HISTORY_KEEP = 50
CONFIDENCE = 0.95


def _check(setting: str, value: float) -> float:
    value = float(value)
    if setting == "threshold" and not 0.0 <= value <= 2.0:
        raise ConfigError(f"a cosine-distance threshold lies in [0, 2], got {value}")
    if setting == "target_fpir" and not 0.0 < value < 0.5:
        raise ConfigError(f"a target FPIR lies in (0, 0.5), got {value}")
    return value


def _value(name: str, setting: str, entry: dict, settings: Settings) -> float:
    """The value in force: the entry's, else the default."""
    v = entry.get(setting)
    if v is not None:
        return float(v)
    return float(get_model(name, settings).threshold) if setting == "threshold" else DEFAULT_TARGET_FPIR


def _save(name: str, settings: Settings, who: Actor, new: dict[str, float], source: str,
          expect: dict[str, float] | None = None) -> None:
    """Set ``new`` ({setting: value}) for ``name``, remembering what it replaces in the
    entry's history, and audit each change with its old and new value. ``expect``: the
    values a preview showed as today's; refused when another save changed them since."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    with _lock:
        data = _read(settings)
        e = data.get(name) if isinstance(data.get(name), dict) else {}
        before = {k: _value(name, k, e, settings) for k in new}
        for k, v in (expect or {}).items():
            if abs(before[k] - v) > 1e-9:
                raise ConfigError(f"{name}'s {SETTINGS[k]} changed to {before[k]:.4g} since the preview showed "
                                  f"{v:.4g}; preview the change again")
        hist = e.get("history") if isinstance(e.get("history"), list) else []
        hist.append({"at": now, "actor": who.name, "source": source, "new": new, "was": before,
                     "previous": {k: e.get(k) for k in new}, "previous_source": e.get("source"),
                     "previous_saved_at": e.get("saved_at")})
        e.update(new, source=source, saved_at=now, history=hist[-HISTORY_KEEP:])
        data[name] = e
        _write(settings, data)
    for k, v in new.items():
        audit.record(settings, who, "threshold", None, model=name, setting=SETTINGS[k], value=v,
                     previous=before[k], source=source or None)


def set_target_fpir(model: str, value: float, source: str = "", settings: Settings | None = None,
                    actor: Actor | None = None) -> float:
    """Persist the share of strangers a search with ``model`` may call a match."""
    who = require_admin(actor, "changing a search threshold")
    value = _check("target_fpir", value)
    _save(check_model_name(model), settings or get_settings(), who, {"target_fpir": value}, source)
    return value


def set_threshold(model: str, value: float, source: str = "", settings: Settings | None = None,
                  actor: Actor | None = None) -> float:
    """Persist ``value`` as ``model``'s 1:1 verify threshold. Returns it."""
    who = require_admin(actor, "changing a verify threshold")
    value = _check("threshold", value)
    _save(check_model_name(model), settings or get_settings(), who, {"threshold": value}, source)
    return value


def history(model: str, settings: Settings | None = None) -> list[dict]:
    """``model``'s saves, oldest first: each with ``at``, ``actor``, ``source``, ``new``
    and ``was`` ({setting: value}), and ``previous`` (the same, None where it was the default)."""
    h = _entry(check_model_name(model), settings or get_settings()).get("history")
    return list(h) if isinstance(h, list) else []


def _show(setting: str, v: float | None) -> str:
    return "?" if v is None else f"{v:.3f}" if setting == "threshold" else _pct(v)


def history_line(h: dict) -> str:
    """One save of :func:`history` in words: when, who, what changed from what to what, why."""
    changes = "; ".join(f"{SETTINGS[k]} {_show(k, (h.get('was') or {}).get(k))} → {_show(k, v)}"
                        for k, v in h.get("new", {}).items())
    return f"{h.get('at')}  {h.get('actor')}: {changes}" + (f" ({h['source']})" if h.get("source") else "")


def restore_previous(model: str, settings: Settings | None = None, actor: Actor | None = None) -> dict:
    """Put back what ``model``'s last save replaced (its history's last entry, which is
    dropped: a second restore goes one save further back). Returns that entry."""
    who = require_admin(actor, "restoring a threshold")
    settings = settings or get_settings()
    name = check_model_name(model)
    with _lock:
        data = _read(settings)
        e = data.get(name) if isinstance(data.get(name), dict) else {}
        hist = e.get("history") if isinstance(e.get("history"), list) else []
        if not hist:
            raise ConfigError(f"{name} has no earlier threshold to restore")
        last = hist.pop()
        replaced = {k: _value(name, k, e, settings) for k in last["previous"]}
        for k, v in [*last["previous"].items(), ("source", last.get("previous_source")),
                     ("saved_at", last.get("previous_saved_at"))]:
            if v is None:
                e.pop(k, None)  # back to the default
            else:
                e[k] = v
        data[name] = e
        _write(settings, data)
    for k, old in replaced.items():
        audit.record(settings, who, "threshold", None, model=name, setting=SETTINGS[k],
                     value=_value(name, k, e, settings), previous=old, restored=True)
    return last


# -- previews: what a change would do, before it is saved ----------------------------------

def rate_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a rate measured as ``k`` of ``n`` (n >= 1)."""
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def unknown_rate(k: int, n: int, threshold: float) -> str | None:
    """Why ``k`` false matches of ``n`` different-person pairs cannot tell the false match
    rate at ``threshold`` (its confidence interval is wider than the rate itself), or None."""
    if n < 1:
        return f"no different-person pair was measured, so the false match rate at {threshold:.3f} is unknown"
    lo, hi = rate_interval(k, n)
    if hi - lo <= k / n:
        return None
    return (f"{k} of {n} different-person pairs are too few to know the false match rate at {threshold:.3f}: "
            f"it measured {_pct(k / n)} but could be anywhere from {_pct(lo)} to {_pct(hi)} "
            f"({CONFIDENCE:.0%} interval, wider than the rate itself); evaluate on more pairs")


def _pct(r: float) -> str:
    return "under 0.001%" if 0 < r < 1e-5 else f"{100 * r:.3g}%"


def _times(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _one_in(r: float) -> str:
    return f"about 1 in {round(1 / r):,}" if r > 0 else "none"


@dataclass(frozen=True)
class Preview:
    """A proposed value of one of ``model``'s settings (``setting``: a key of
    :data:`SETTINGS`) and what it would do, made before anything is saved
    (:func:`preview_threshold`, :func:`preview_target_fpir`; saved by :func:`save`).

    ``rate_now`` / ``rate_proposed``, from the model's impostor calibration (None without
    one): for the verify threshold the share of different-person pairs at distance <= it
    (FMR); for the search target the share of people not in a gallery of
    ``gallery_size`` faces called a match (FPIR), at the match distances ``match_now`` /
    ``match_proposed``. ``extrapolated``: the proposed rate comes from the calibration's
    tail line, fewer than ``MIN_TAIL`` measured pairs lie under it. ``evidence``: (false
    matches, different-person pairs) of the evaluation the value was read from, with its
    ``interval``; ``refusal``: why it may not be saved, None when it may."""

    model: str
    setting: str
    current: float
    proposed: float
    source: str = ""
    calibration: str | None = None
    rate_now: float | None = None
    rate_proposed: float | None = None
    extrapolated: bool = False
    gallery_size: int | None = None
    match_now: float | None = None
    match_proposed: float | None = None
    evidence: tuple[int, int] | None = None
    interval: tuple[float, float] | None = None
    refusal: str | None = None

    def lines(self) -> list[str]:
        """The preview in words and numbers, one sentence a line (page and CLI)."""
        now, new = self.rate_now, self.rate_proposed
        if self.setting == "threshold":
            out = [f"{self.model} verify threshold: {self.current:.3f} today, {self.proposed:.3f} proposed"
                   + (f" ({self.source})." if self.source else ".")]
            if now is None:
                out.append("No impostor calibration for this model: the share of different people it would call "
                           "the same person cannot be predicted (its gallery searches use this threshold too).")
            else:
                out.append(f"On its impostor calibration ({self.calibration}): today {_pct(now)} of different-person "
                           f"pairs are called the same person ({_one_in(now)}); proposed {_pct(new)} ({_one_in(new)})"
                           + (f", {_times(new / now)} times as many." if now > 0 and new > now else
                              f", {_times(now / new)} times fewer." if new > 0 and now > new else "."))
        else:
            out = [f"{self.model} gallery searches: {_pct(self.current)} of strangers called a match today, "
                   f"{_pct(self.proposed)} proposed" + (f" ({self.source})." if self.source else ".")]
            if now is None:
                out.append("No impostor calibration for this model: its gallery searches use the verify threshold, "
                           "so the target changes nothing.")
            else:
                out.append(f"In a gallery of {self.gallery_size:,} faces (today's size): today a match is a distance "
                           f"≤ {self.match_now:.3f}, calling {_pct(now)} of people not in the gallery a match "
                           f"({_one_in(now)}); proposed ≤ {self.match_proposed:.3f}, {_pct(new)} ({_one_in(new)}).")
        if self.extrapolated:
            out.append(f"(Extrapolated: fewer than {_cal.MIN_TAIL} of the calibration's pairs lie below the proposed "
                       "distance.)")
        if self.evidence is not None:
            k, n = self.evidence
            where = (f"; {CONFIDENCE:.0%} interval {_pct(self.interval[0])} to {_pct(self.interval[1])}"
                     if self.interval else "")
            out.append(f"On the evaluation it was read from: {k} of {n} different-person pairs at distance "
                       f"≤ {self.proposed:.3f} ({_pct(k / n) if n else '-'}{where}).")
        return out

    def check(self) -> None:
        """Raise :class:`TooFewPairsError` when this preview may not be saved."""
        if self.refusal:
            raise TooFewPairsError(f"{self.model} {SETTINGS[self.setting]} not saved: {self.refusal}")


def _extrapolated(cal, t: float) -> bool:
    return int(np.searchsorted(cal.tail, t, side="right")) < _cal.MIN_TAIL


def preview_threshold(model: str, value: float, source: str = "", settings: Settings | None = None,
                      evidence: tuple[int, int] | None = None) -> Preview:
    """What making ``value`` ``model``'s verify threshold would do. ``evidence``: (false
    matches, different-person pairs) at ``value`` on the evaluation it was read from; the
    preview is refused when they are too few to know that rate (:func:`unknown_rate`)."""
    settings = settings or get_settings()
    name = check_model_name(model)
    value = _check("threshold", value)
    cur = verify_threshold(name, settings)
    cal = _cal.load(name, settings)
    extra: dict = {}
    if cal is not None:
        extra = dict(calibration=f"{cal.source}; {cal.n_pairs:,} different-person pairs",
                     rate_now=float(cal.fmr(cur)), rate_proposed=float(cal.fmr(value)),
                     extrapolated=_extrapolated(cal, value))
    if evidence is not None:
        k, n = int(evidence[0]), int(evidence[1])
        extra.update(evidence=(k, n), interval=rate_interval(k, n) if n else None,
                     refusal=unknown_rate(k, n, value))
    return Preview(name, "threshold", cur, value, source, **extra)


def preview_target_fpir(model: str, value: float, gallery_size: int, source: str = "",
                        settings: Settings | None = None) -> Preview:
    """What making ``value`` the share of strangers ``model``'s gallery searches may call a
    match would do in a gallery of ``gallery_size`` faces (today's size)."""
    settings = settings or get_settings()
    name = check_model_name(model)
    value = _check("target_fpir", value)
    cur = target_fpir(name, settings)
    n = max(1, int(gallery_size))
    cal = _cal.load(name, settings)
    if cal is None:
        return Preview(name, "target_fpir", cur, value, source, gallery_size=n)
    t_now, t_new = cal.threshold_for_fpir(cur, n), cal.threshold_for_fpir(value, n)
    return Preview(name, "target_fpir", cur, value, source, calibration=cal.source, rate_now=cal.fpir(t_now, n),
                   rate_proposed=cal.fpir(t_new, n), extrapolated=_extrapolated(cal, t_new), gallery_size=n,
                   match_now=t_now, match_proposed=t_new)


def save(previews: Preview | Sequence[Preview], settings: Settings | None = None,
         actor: Actor | None = None) -> None:
    """Save what ``previews`` (of one model) propose, as one save that
    :func:`restore_previous` undoes. Refuses a preview with a refusal
    (:class:`TooFewPairsError`) and one whose today's value has changed since."""
    ps = [previews] if isinstance(previews, Preview) else list(previews)
    who = require_admin(actor, "changing a threshold")
    for p in ps:
        p.check()
    if len({p.model for p in ps}) != 1:
        raise ConfigError("one save changes one model's thresholds")
    _save(ps[0].model, settings or get_settings(), who, {p.setting: p.proposed for p in ps},
          "; ".join(dict.fromkeys(p.source for p in ps if p.source)), expect={p.setting: p.current for p in ps})

