"""Kinship on FIW, judged on families nothing was chosen on.

* :func:`heldout_verification` (``evaluate --dataset fiw --task kinship``): RFIW's measure.
  A verification threshold is chosen on the *training* families' pairs (the best
  accuracy there) and the accuracy at it is read on the *held-out* families' pairs (the
  fixed split of :func:`facesearch.kinship.space.held_out`), per relation, with ROC AUC,
  for the model's cosine and for its kinship space when one is shipped, side by side.
* :func:`evaluate_retrieval` (``evaluate --dataset fiw --task retrieval``): the
  reunification search's figures (:func:`facesearch.kinship.retrieval.retrieval`): each
  held-out member with kin, its own photos left out, ranks every family; top-1/5/10 and
  the mean reciprocal rank, overall and per relation of its nearest kin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facesearch.evaluation import metrics as M
from facesearch.kinship import space as KS


def _family(member: str) -> str:
    return str(member).split("/", 1)[0]


def _best_accuracy_threshold(s: np.ndarray, y: np.ndarray) -> float:
    """The score threshold (kin when ``score >= t``) with the best accuracy on ``s``/``y``."""
    order = np.argsort(-s)
    s, y = s[order], y[order]
    # Calling the first k pairs kin: correct = kin among them + non-kin after them.
    tp = np.cumsum(y)
    correct = tp + (np.sum(~y) - (np.arange(1, len(y) + 1) - tp))
    k = int(np.argmax(correct))
    return float(s[k])


def heldout_verification(vectors: dict[str, np.ndarray], a: Sequence[str], b: Sequence[str], labels: np.ndarray,
                         kinds: Sequence[str], model: str, model_key: str, settings=None) -> list[dict[str, Any]]:
    """Rows ``{scorer, relation, pos, neg, roc_auc, accuracy, threshold}`` on the held-out
    families' pairs (``relation`` "all" first), for ``cosine`` and, when ``model`` has a
    kinship space for ``model_key``, ``kinship space``. ``vectors``: member -> unit vector."""
    labels = np.asarray(labels, bool)
    scorers: dict[str, Any] = {"cosine": lambda v: v}
    sp = KS.load(model, settings)
    if sp is not None and sp.model_key == model_key:
        scorers["kinship space"] = sp.project
    train = np.asarray([not KS.held_out(_family(x)) and not KS.held_out(_family(z)) for x, z in zip(a, b)])
    test = np.asarray([KS.held_out(_family(x)) and KS.held_out(_family(z)) for x, z in zip(a, b)])
    kinds = np.asarray(list(kinds))
    rows = []
    for name, proj in scorers.items():
        s = np.asarray([float(np.dot(proj(vectors[x]), proj(vectors[z]))) for x, z in zip(a, b)])
        if not (labels[train].any() and (~labels[train]).any()):
            continue
        t = _best_accuracy_threshold(s[train], labels[train])
        for rel in ["all", *sorted(set(kinds[test]))]:
            sel = test & (kinds == rel if rel != "all" else True)
            y, sc = labels[sel], s[sel]
            if not y.size:
                continue
            both = bool(y.any() and not y.all())
            rows.append({"scorer": name, "relation": rel, "pos": int(y.sum()), "neg": int((~y).sum()),
                         # metrics.roc_auc takes distances (smaller = same): a score's negative.
                         "roc_auc": M.roc_auc(-sc, y) if both else None,
                         "accuracy": float(np.mean((sc >= t) == y)), "threshold": t})
    return rows


def evaluate_retrieval(path: str | Path, models: Sequence[str], settings=None, progress=None,
                       crop_fallback: bool = False) -> dict[str, Any]:
    """The reunification search on an FIW folder (module docstring), per model: for the
    cosine and, where shipped, the kinship space. JSON-ready."""
    from facesearch.datasets.fiw import fiw_kin_pairs
    from facesearch.datasets.registry import load_images
    from facesearch.embedding.batch import embed_all
    from facesearch.evaluation.vectors import model_names, model_states
    from facesearch.kinship.retrieval import retrieval
    from facesearch.settings import get_settings

    settings = settings or get_settings()
    images = load_images(path, "fiw")
    states = model_states(model_names(models), settings)
    embed_all([str(im.path) for im in images], states, crop_fallback, progress, "retrieval")
    kin: dict[str, dict[str, str]] = {}
    for p in fiw_kin_pairs(path):
        if p.same:
            kin.setdefault(p.a, {})[p.b] = p.kind
            kin.setdefault(p.b, {})[p.a] = p.kind
    out: dict[str, Any] = {"dataset": "fiw", "path": str(path), "split": "held-out families (even numbers)",
                           "models": {}}
    for st in states:
        if st.error is not None:
            out["models"][st.name] = {"error": st.error}
            continue
        kept = [im for im in images if st.emb.get(str(im.path)) is not None]
        x = np.stack([st.emb[str(im.path)] for im in kept])
        members, families = [im.identity for im in kept], [im.family or "" for im in kept]
        res = {}
        sp = KS.load(st.name, settings)
        spaces = {"cosine, best member": None}
        if sp is not None and sp.model_key == st.pipe.model.key:
            spaces["kinship space"] = sp
        for name, s in spaces.items():
            # The model's plain cosine scores a family by its best member; the kinship space
            # with the shipped scoring (hubness correction, soft maximum).
            kw = {"csls": 0.0, "temperature": 0.0} if s is None else {}
            r = retrieval(x, members, families, kin, s, KS.held_out, **kw)
            res[name] = {**r.summary(), "by_relation": r.by_relation()}
        out["models"][st.name] = res
    return out
