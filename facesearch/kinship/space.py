"""The kinship space: a model's vectors re-weighted so that relatives come closer.

A face model is trained to keep different people apart, relatives included; what
relatives share is spread over the same directions as what tells any two people apart.
Within-family covariance normalisation (WCCN, Hatch et al. 2006) learns, from labelled
families, the directions along which members of one family differ most and shrinks
them: ``z = (x - mean) @ (S_w + lam I) ** -1/2`` with ``S_w`` the covariance of members'
deviations from their family's mean (each member the normalised mean of its photos'
unit vectors). Kinship scores are cosines in that space. It is closed-form and
deterministic: the same families give the same file.

Measured on the shared FIW families with a fixed family-disjoint split
(:func:`held_out`: families with an even number are held out, never used to choose or
fit anything): on the held-out kin pairs against relation- and gender-matched non-kin
pairs, ROC AUC 0.835 in the kinship space against 0.810 for the model's cosine
(docs/BENCHMARKS.md, "Relatives"). ``lam`` was chosen by two-fold cross-validation over
the training families.

A space belongs to one model version: it is stored with the model's key and refuses any
other (:meth:`KinshipSpace.check`), so it never scores another model's vectors. Spaces
ship in ``facesearch/kinship/spaces/<model>.json``; ``facesearch kinship-train`` makes
one from any FIW-layout folder into the data folder's ``kinship/``, which is then used
instead.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facesearch.errors import ConfigError, DatasetError
from facesearch.files import first_present, write_atomic
from facesearch.settings import Settings, get_settings

SHIPPED = Path(__file__).resolve().parent / "spaces"
FORMAT = 1
# Chosen by two-fold cross-validation over the training families (mean reciprocal rank of
# the own family): 0.01 of 0.003-0.3.
LAMBDA = 0.01
# Hubness correction (CSLS, Lample et al. 2018): a gallery member's similarity is lowered
# by CSLS_WEIGHT times its mean similarity to its CSLS_K nearest other members, so a face
# close to everyone does not put its family first for every query. Chosen with LAMBDA.
CSLS_WEIGHT = 0.5
CSLS_K = 10
# A family's score from its members' scores: a soft maximum (log-sum-exp at this
# temperature), so a second close member adds a little. Chosen with LAMBDA (against the
# best member alone and the mean of the best two).
FAMILY_TEMPERATURE = 0.05
# "possible relative" needs a kinship score that at most this share of matched unrelated
# pairs reach (read on the training families' non-kin pairs).
POSSIBLE_FMR = 0.05


def held_out(family: str) -> bool:
    """The fixed family-disjoint split of FIW: ``F0002``, ``F0004``, ... (even numbers) are
    held out for judging; odd ones may be used to choose and fit. Other names: by their
    digits, else held out."""
    digits = "".join(ch for ch in str(family) if ch.isdigit())
    return not digits or int(digits) % 2 == 0


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


@dataclass(frozen=True)
class KinshipSpace:
    """``mean`` ``(d,)`` and ``transform`` ``(d, d)``: ``z = (x - mean) @ transform``;
    ``unrelated``: kinship scores of matched non-kin member pairs of the training
    families, sorted ``(n,)``; ``related``: of their kin pairs, sorted ``(m,)``."""

    model: str
    model_key: str
    source: str
    lam: float
    mean: np.ndarray
    transform: np.ndarray
    unrelated: np.ndarray
    related: np.ndarray
    # Measured at training on the held-out families (never fitted on): how often a person's
    # own family came 1st, 2nd, ... 5th of the gallery's families; and for how many people.
    rank_share: tuple[float, ...] = ()
    heldout_people: int = 0

    def check(self, model_key: str) -> None:
        if model_key != self.model_key:
            raise ConfigError(f"the kinship space for {self.model} was made for {self.model_key}, not {model_key}; "
                              "run 'facesearch kinship-train' for this model version")

    def project(self, x: np.ndarray) -> np.ndarray:
        """Unit vectors ``(n, d)`` (or ``(d,)``) into the kinship space, unit rows."""
        return unit((np.asarray(x, np.float64) - self.mean) @ self.transform)

    @property
    def possible(self) -> float:
        """The kinship score at or above which a family is a "possible relative"."""
        if not self.unrelated.size:
            return 1.0
        return float(np.quantile(self.unrelated, 1.0 - POSSIBLE_FMR))

    def unrelated_share(self, score: float) -> float:
        """Share of matched unrelated pairs scoring ``score`` or higher."""
        if not self.unrelated.size:
            return float("nan")
        return 1.0 - float(np.searchsorted(self.unrelated, float(score), side="left")) / self.unrelated.size

    def related_share(self, score: float) -> float:
        """Share of kin pairs scoring ``score`` or higher."""
        if not self.related.size:
            return float("nan")
        return 1.0 - float(np.searchsorted(self.related, float(score), side="left")) / self.related.size

    def to_json(self) -> str:
        r = lambda a: [round(float(v), 7) for v in np.ravel(a)]  # noqa: E731
        return json.dumps({"format": FORMAT, "model": self.model, "model_key": self.model_key, "source": self.source,
                           "lam": self.lam, "dim": int(self.mean.shape[0]), "mean": r(self.mean),
                           "transform": r(self.transform), "unrelated": r(self.unrelated),
                           "related": r(self.related), "rank_share": [round(float(v), 4) for v in self.rank_share],
                           "heldout_people": self.heldout_people})

    @classmethod
    def from_json(cls, text: str) -> "KinshipSpace":
        d = json.loads(text)
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}")
        dim = int(d["dim"])
        return cls(d["model"], d["model_key"], d["source"], float(d["lam"]), np.asarray(d["mean"], np.float64),
                   np.asarray(d["transform"], np.float64).reshape(dim, dim),
                   np.asarray(d["unrelated"], np.float64), np.asarray(d["related"], np.float64),
                   tuple(float(v) for v in d.get("rank_share", ())), int(d.get("heldout_people", 0)))


def member_means(vectors: np.ndarray, members: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(members sorted, each member's normalised mean of its unit vectors ``(u, d)``)."""
    x = unit(vectors)
    names, inv = np.unique(np.asarray([str(m) for m in members]), return_inverse=True)
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, inv, x)
    return [str(n) for n in names], unit(sums)


def fit(model: str, model_key: str, source: str, member_vectors: np.ndarray, families: Sequence[str],
        pairs: Sequence[tuple[int, int, bool]] = (), lam: float = LAMBDA) -> KinshipSpace:
    """A kinship space from member vectors ``(u, d)`` (unit) and their ``families``;
    ``pairs``: (i, j, kin) member pairs whose kinship scores the space keeps (what a score
    means in words)."""
    from scipy.linalg import fractional_matrix_power

    m = unit(member_vectors)
    fam = np.asarray([str(f) for f in families])
    dev = []
    for f in np.unique(fam):
        rows = m[fam == f]
        if len(rows) > 1:
            dev.append(rows - rows.mean(0))
    if not dev:
        raise DatasetError("need families with at least two members to learn a kinship space")
    d = np.concatenate(dev)
    sw = d.T @ d / len(d)
    w = np.real(fractional_matrix_power(sw + lam * np.eye(sw.shape[0]), -0.5))
    mean = m.mean(0)
    z = unit((m - mean) @ w)
    kin = np.sort([float(z[i] @ z[j]) for i, j, k in pairs if k])
    unrel = np.sort([float(z[i] @ z[j]) for i, j, k in pairs if not k])
    return KinshipSpace(model, model_key, source, float(lam), mean, w, np.asarray(unrel), np.asarray(kin))


def user_dir(settings: Settings) -> Path:
    """Where this data folder's own kinship spaces are kept."""
    return settings.home / "kinship"


def load(model: str, settings: Settings | None = None) -> KinshipSpace | None:
    """The kinship space for ``model``: the data folder's own if trained, else the shipped
    one; None when there is neither."""
    settings = settings or get_settings()
    found = first_present((user_dir(settings), SHIPPED), f"{model}.json")
    return _read(*found) if found else None


@functools.lru_cache(maxsize=16)
def _read(path: str, mtime_ns: int) -> KinshipSpace:
    try:
        return KinshipSpace.from_json(Path(path).read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"kinship space {path} is damaged ({exc}); delete it or run 'facesearch kinship-train' "
                          "again") from None


def save(space: KinshipSpace, folder: Path) -> Path:
    return write_atomic(folder / f"{space.model}.json", space.to_json())
