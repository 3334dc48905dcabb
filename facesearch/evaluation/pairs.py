"""Model comparison on labelled datasets: which model finds the same person, or a
relative, most reliably, and at which threshold.

``evaluate(dataset, path, models, settings)`` builds the dataset's pairs, embeds every
photo they need once per model (cache-first: the pipeline's SQLite cache keyed by
(model, detector, image SHA-1), so a second run computes nothing), scores each pair by
cosine distance and summarises it with :mod:`facesearch.evaluation.metrics`. One model that cannot
run (missing weights, no network) becomes an error row; the others still run.

Datasets and tasks

* ``fiw``: ``same-person`` (two photos of one member vs photos of members of different
  families, :func:`~facesearch.datasets.fiw.fiw_same_person_pairs`) and ``kinship`` (kin
  member pairs vs relation- and gender-matched non-kin, :func:`~facesearch.datasets.fiw.fiw_kin_pairs`;
  a member is the re-normalised mean of its photos' unit embeddings). FIW photos are
  already tight face crops, so with ``crop_fallback`` a photo where the detector finds no
  face is embedded whole; those embeddings are cached under the detector name
  ``"<detector>+full"`` so they never pass for detections.
* ``lfw``: the official ``pairs.txt`` protocol, plus k-fold accuracy (threshold chosen on
  the other folds; one fold flags ``threshold_on_test``).
* ``folder``: any labelled image set (CelebA, folder per person, csv): seeded
  genuine/impostor pairs plus rank-1/rank-5 identification on a gallery/probe split.
* ``master``: deepface's ``master.csv`` pair list.

Open-set identification (1:N search) is :mod:`facesearch.evaluation.identification`.

Pairs with a photo where no face was found (and no fallback) are left out of the
metrics and counted (``n_pairs_skipped``); the no-face rate is reported per model.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facesearch.datasets.base import LabeledImage, Pair
from facesearch.datasets.fiw import fiw_kin_pairs, fiw_members, fiw_same_person_pairs
from facesearch.datasets.lfw import read_lfw_pairs
from facesearch.datasets.master import read_master_csv
from facesearch.datasets.pairs import gallery_probe_split, identity_pairs
from facesearch.datasets.registry import load_images
from facesearch.evaluation import metrics as M
from facesearch.errors import ConfigError
from facesearch.settings import Settings, get_settings
from facesearch.embedding.batch import Progress, ModelState, embed_all
from facesearch.evaluation.vectors import dataset_path, jsonable, model_names, model_states, photo_workers, task_cost


DATASETS = ("fiw", "lfw", "folder", "master")


TASKS = {"fiw": ("same-person", "kinship"), "lfw": ("verification",), "folder": ("verification",),
         "master": ("verification",)}


# Without a limit, identity datasets are sampled to this many genuine and as many
# impostor pairs: enough for a stable AUC, and the photos are mostly shared anyway.
_FOLDER_PAIRS = 1000




@dataclass
class ModelResult:
    """One model on one task.

    ``distances``/``labels``/``kinds``: ``(n,)`` over the scored pairs, in the order of
    ``pair_a``/``pair_b`` (photo paths, or FIW member ids for kinship).
    """

    model: str
    task: str
    pair_a: list[str] = field(default_factory=list)
    pair_b: list[str] = field(default_factory=list)
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    kinds: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    at_precision: dict[str, Any] | None = None  # ThresholdPoint dict for the target precision
    at_fmr: dict[str, Any] | None = None  # ThresholdPoint dict for the target FMR
    kfold: dict[str, Any] | None = None  # LFW protocol accuracy
    identification: dict[str, Any] | None = None  # rank-1/rank-5 on a gallery/probe split
    by_relation: list[dict[str, Any]] = field(default_factory=list)
    # Kinship: RFIW's measure on the held-out families (facesearch.evaluation.kinship).
    heldout: list[dict[str, Any]] = field(default_factory=list)
    n_images: int = 0
    n_no_face: int = 0  # photos where the detector found no face
    n_fallback: int = 0  # of those, embedded whole (crop_fallback)
    n_unreadable: int = 0
    n_pairs_total: int = 0
    n_pairs_skipped: int = 0
    n_faces: int = 0
    seconds: float = 0.0  # detection + embedding time of all photos, as first computed
    n_computed: int = 0  # photos detected/embedded in this run
    n_cached: int = 0  # photos served from the embedding cache
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.summary is not None

    @property
    def no_face_rate(self) -> float:
        return self.n_no_face / self.n_images if self.n_images else 0.0

    @property
    def ms_per_face(self) -> float:
        return 1000.0 * self.seconds / self.n_faces if self.n_faces else float("nan")

    def at(self, threshold: float) -> dict[str, Any]:
        """Precision, recall, F1, FMR... when calling ``distance <= threshold`` a match."""
        return M.confusion_at(self.distances, self.labels, threshold).to_dict()

    def pr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(precision (k+1,), recall (k+1,), thresholds (k,))``, see :func:`metrics.pr_curve`."""
        return M.pr_curve(self.distances, self.labels)

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr (k+1,), tpr (k+1,), thresholds (k+1,))``, see :func:`metrics.roc_curve`."""
        return M.roc_curve(self.distances, self.labels)

    def row(self) -> dict[str, Any]:
        """One flat row of the side-by-side table."""
        s = self.summary or {}
        bf = s.get("best_f1") or {}
        ap, af = self.at_precision or {}, self.at_fmr or {}
        r: dict[str, Any] = {
            "model": self.model, "task": self.task,
            "pairs": s.get("n_pairs", 0), "pos": s.get("n_pos", 0), "neg": s.get("n_neg", 0),
            "roc_auc": s.get("roc_auc"), "ap": s.get("average_precision"), "eer": s.get("eer"),
            "f1_threshold": bf.get("threshold"), "f1_precision": bf.get("precision"),
            "f1_recall": bf.get("recall"), "f1": bf.get("f1"),
            "best_accuracy": (s.get("best_accuracy") or {}).get("accuracy"),
            "p_threshold": ap.get("threshold"), "p_precision": ap.get("precision"), "p_recall": ap.get("recall"),
            "fmr_threshold": af.get("threshold"), "fmr_fpr": af.get("fpr"), "fmr_recall": af.get("recall"),
            "lfw_acc": (self.kfold or {}).get("mean"), "lfw_std": (self.kfold or {}).get("std"),
            "rank1": (self.identification or {}).get("rank1"), "rank5": (self.identification or {}).get("rank5"),
            "no_face_rate": self.no_face_rate, "fallback": self.n_fallback, "skipped_pairs": self.n_pairs_skipped,
            "ms_per_face": self.ms_per_face, "computed": self.n_computed, "cached": self.n_cached,
            "error": self.error or "",
        }
        return r

    def to_dict(self, pairs: bool = True) -> dict[str, Any]:
        d = {k: v for k, v in self.row().items()}
        d.update(summary=self.summary, at_precision=self.at_precision, at_fmr=self.at_fmr, kfold=self.kfold,
                 identification=self.identification, by_relation=self.by_relation, heldout=self.heldout, n_images=self.n_images,
                 n_no_face=self.n_no_face, n_unreadable=self.n_unreadable, n_pairs_total=self.n_pairs_total,
                 n_faces=self.n_faces, seconds=self.seconds)
        if pairs:
            d["scored_pairs"] = [{"a": a, "b": b, "same": bool(y), "kind": k, "distance": float(x)}
                          for a, b, y, k, x in zip(self.pair_a, self.pair_b, self.labels, self.kinds, self.distances)]
        return jsonable(d)


@dataclass
class Comparison:
    """All models on all tasks of one dataset, with the parameters that produced them."""

    dataset: str
    path: str
    params: dict[str, Any]
    results: list[ModelResult]

    def result(self, model: str, task: str | None = None) -> ModelResult | None:
        for r in self.results:
            if r.model == model and (task is None or r.task == task):
                return r
        return None

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(r.task for r in self.results))

    @property
    def n_computed(self) -> int:
        """Photos detected/embedded in this run over all models (0 on a cached re-run)."""
        return sum(r.n_computed for r in self.results)

    def to_table(self):
        """pandas DataFrame: one row per (model, task)."""
        import pandas as pd

        return pd.DataFrame([r.row() for r in self.results])

    def to_json(self, pairs: bool = True) -> str:
        return json.dumps({"dataset": self.dataset, "path": self.path, "params": jsonable(self.params),
                           "results": [r.to_dict(pairs) for r in self.results]}, indent=2)

    def table_csv(self) -> str:
        return self.to_table().to_csv(index=False)

    def pairs_csv(self) -> str:
        """Every scored pair of every model: model, task, a, b, same, kind, distance."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["model", "task", "a", "b", "same", "kind", "distance"])
        for r in self.results:
            for a, b, y, k, x in zip(r.pair_a, r.pair_b, r.labels, r.kinds, r.distances):
                w.writerow([r.model, r.task, a, b, int(bool(y)), k, f"{float(x):.6f}"])
        return buf.getvalue()

    def to_csv(self, path: str | Path) -> list[Path]:
        """Write ``<path>.csv`` (the table) and ``<path>.pairs.csv``. Returns both paths."""
        base = Path(path)
        if base.suffix.lower() == ".csv":
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        t, p = base.with_name(base.name + ".csv"), base.with_name(base.name + ".pairs.csv")
        t.write_text(self.table_csv())
        p.write_text(self.pairs_csv())
        return [t, p]


# --------------------------------------------------------------------------- embedding


@dataclass
class _Task:
    name: str
    a: list[str]
    b: list[str]
    same: np.ndarray  # (n,) bool
    kinds: list[str]
    folds: np.ndarray  # (n,) int
    kfold: bool = False  # the pairs carry protocol folds (LFW): report k-fold accuracy
    members: dict[str, list[str]] | None = None  # kinship: member -> photo paths
    id_images: list[LabeledImage] | None = None  # identification: images to split


def _limit_indices(same: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` pairs, half positives and half negatives (seeded),
    in their original order so folds and the positives-first layout survive."""
    n = same.shape[0]
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 2:
        raise ConfigError(f"limit must be at least 2 (one same and one different pair), got {limit}")
    rng = np.random.default_rng(seed)
    pos, neg = np.nonzero(same)[0], np.nonzero(~same)[0]
    k_pos = min(pos.size, max(1, limit // 2))
    k_neg = min(neg.size, limit - k_pos)
    k_pos = min(pos.size, limit - k_neg)
    pick = np.r_[rng.permutation(pos)[:k_pos], rng.permutation(neg)[:k_neg]]
    return np.sort(pick)


def _limit_matched(same: np.ndarray, kinds: Sequence[str], limit: int | None, seed: int) -> np.ndarray:
    """Like :func:`_limit_indices`, but the negatives follow the relation types of the
    chosen positives (FIW negatives are matched per relation): for each type, as many
    negatives of that type as positives were drawn, topped up from any type if short."""
    n = same.shape[0]
    if limit is None or limit >= n:
        return np.arange(n)
    base = _limit_indices(same, limit, seed)
    pos = base[same[base]]
    k_neg = int((~same[base]).sum())
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(np.nonzero(~same)[0])  # one fixed order: larger limits extend smaller ones
    want: dict[str, int] = defaultdict(int)
    for i in pos:
        want[kinds[i]] += 1
    neg: list[int] = []
    for i in order:
        if want[kinds[i]] > 0 and len(neg) < k_neg:
            want[kinds[i]] -= 1
            neg.append(int(i))
    chosen = set(neg)
    for i in order:
        if len(neg) >= k_neg:
            break
        if int(i) not in chosen:
            neg.append(int(i))
    return np.sort(np.r_[pos, np.asarray(neg, dtype=np.int64)])


def _from_pairs(name: str, pairs: Sequence[Pair], limit: int | None, seed: int) -> _Task:
    same = np.array([p.same for p in pairs], dtype=bool)
    idx = _limit_indices(same, limit, seed)
    sel = [pairs[i] for i in idx]
    return _Task(name, [str(p.a) for p in sel], [str(p.b) for p in sel], same[idx],
                 [p.kind for p in sel], np.array([p.fold for p in sel], dtype=np.int64))


def _build_tasks(dataset: str, path: Path, task: str | None, seed: int, limit: int | None,
                 max_photos_per_member: int | None) -> list[_Task]:
    valid = TASKS[dataset]
    if task is not None and task not in valid:
        raise ConfigError(f"unknown task {task!r} for dataset {dataset}; valid: {', '.join(valid)}")
    wanted = [task] if task else list(valid)
    tasks: list[_Task] = []
    if dataset == "lfw":
        t = _from_pairs("verification", read_lfw_pairs(path), limit, seed)
        t.kfold = True
        tasks.append(t)
    elif dataset == "master":
        tasks.append(_from_pairs("verification", read_master_csv(path), limit, seed))
    elif dataset == "folder":
        images = load_images(path)
        n = _FOLDER_PAIRS if limit is None else max(1, limit // 2)
        t = _from_pairs("verification", identity_pairs(images, n, n, seed), limit, seed)
        used = set(t.a) | set(t.b)
        # With a limit, identify only among the photos the pairs already need, so a
        # small run stays small; without one, every photo of the dataset.
        t.id_images = [im for im in images if str(im.path) in used] if limit is not None else list(images)
        tasks.append(t)
    elif dataset == "fiw":
        for name in wanted:
            if name == "same-person":
                tasks.append(_from_pairs(name, fiw_same_person_pairs(path, seed), limit, seed))
            else:
                mp = fiw_kin_pairs(path, seed)
                same = np.array([p.same for p in mp], dtype=bool)
                sel = [mp[i] for i in _limit_matched(same, [p.kind for p in mp], limit, seed)]
                photos = fiw_members(path)
                needed = sorted({p.a for p in sel} | {p.b for p in sel})
                members = {m: [str(x) for x in photos[m][:max_photos_per_member]] for m in needed}
                tasks.append(_Task(name, [p.a for p in sel], [p.b for p in sel],
                                   np.array([p.same for p in sel], dtype=bool), [p.kind for p in sel],
                                   np.zeros(len(sel), np.int64), members=members))
    else:
        raise ConfigError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    return [t for t in tasks if t.name in wanted]


def _task_photos(t: _Task) -> list[str]:
    if t.members is not None:
        return [p for m in sorted(t.members) for p in t.members[m]]
    photos = list(dict.fromkeys(t.a + t.b))
    if t.id_images:
        photos += [str(im.path) for im in t.id_images]
    return list(dict.fromkeys(photos))


def _member_vectors(members: dict[str, list[str]], emb: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """Member -> re-normalised mean of its photos' unit embeddings ``(dim,)``; members
    with no embedded photo are left out."""
    out = {}
    for m, photos in members.items():
        vs = [emb[p] for p in photos if emb.get(p) is not None]
        if vs:
            v = np.mean(np.stack(vs), axis=0)
            n = float(np.linalg.norm(v))
            if n > 0:
                out[m] = v / n
    return out


def _score(t: _Task, st: ModelState, target_precision: float, target_fmr: float, seed: int) -> ModelResult:
    r = ModelResult(model=st.name, task=t.name, n_pairs_total=len(t.a))
    photos = _task_photos(t)
    r.n_images = len(photos)
    r.n_no_face = sum(p in st.no_face for p in photos)
    r.n_fallback = sum(p in st.fallback for p in photos)
    r.n_unreadable = sum(p in st.unreadable for p in photos)
    vecs = _member_vectors(t.members, st.emb) if t.members is not None else st.emb
    keep, dist = [], []
    for i, (a, b) in enumerate(zip(t.a, t.b)):
        va, vb = vecs.get(a), vecs.get(b)
        if va is None or vb is None:
            continue
        keep.append(i)
        # Unit vectors: cosine distance is 1 - dot. Clip the float error around 0 and 2.
        dist.append(float(np.clip(1.0 - float(np.dot(va, vb)), 0.0, 2.0)))
    keep_a = np.asarray(keep, dtype=np.int64)
    r.n_pairs_skipped = len(t.a) - len(keep)
    r.pair_a, r.pair_b = [t.a[i] for i in keep], [t.b[i] for i in keep]
    r.kinds = [t.kinds[i] for i in keep]
    r.distances = np.asarray(dist, dtype=np.float64)
    r.labels = t.same[keep_a] if keep else np.zeros(0, bool)
    folds = t.folds[keep_a] if keep else np.zeros(0, np.int64)
    if r.labels.all() or not r.labels.any():
        r.error = (f"only {int(r.labels.sum())} same and {int((~r.labels).sum())} different pairs could be "
                   f"scored ({r.n_pairs_skipped} skipped: no face found); both are needed")
        return r
    d, y = r.distances, r.labels
    r.summary = M.summary(d, y)
    p = M.threshold_for_precision(d, y, target_precision)
    r.at_precision = None if p is None else {"target": target_precision, **p.to_dict()}
    p = M.threshold_for_fmr(d, y, target_fmr)
    r.at_fmr = None if p is None else {"target": target_fmr, **p.to_dict()}
    if t.kfold:
        try:
            r.kfold = M.kfold_accuracy(d, y, folds)
        except ConfigError:
            r.kfold = None  # a limited run can leave a fold with one class only
    if t.id_images:
        r.identification = _identification(t.id_images, st.emb, seed)
    if t.members is not None:
        from facesearch.evaluation.kinship import heldout_verification

        r.by_relation = _by_relation(r)
        if t.name == "kinship":
            r.heldout = heldout_verification(vecs, r.pair_a, r.pair_b, r.labels, r.kinds, st.name,
                                             st.pipe.model.key, st.pipe.settings)
    return r


def _identification(images: Sequence[LabeledImage], emb: dict[str, np.ndarray | None], seed: int) -> dict | None:
    usable = [im for im in images if emb.get(str(im.path)) is not None]
    gallery, probes = gallery_probe_split(usable, 1, seed)
    if not gallery or not probes:
        return None
    g = np.stack([emb[str(im.path)] for im in gallery])
    q = np.stack([emb[str(im.path)] for im in probes])
    rk = M.rank_k(g, [im.identity for im in gallery], q, [im.identity for im in probes], (1, 5))
    return {"rank1": rk[1], "rank5": rk[5], "n_gallery": len(gallery), "n_probes": len(probes),
            "identities": len({im.identity for im in gallery})}


def _by_relation(r: ModelResult) -> list[dict[str, Any]]:
    """Per relation type: its kin pairs and the non-kin matched to them, scored at the
    model's overall best-F1 threshold (one threshold for all, as it would be used)."""
    thr = r.summary["best_f1"]["threshold"]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(r.kinds):
        groups[k].append(i)
    rows = []
    for kind in sorted(groups):
        idx = np.asarray(groups[kind])
        d, y = r.distances[idx], r.labels[idx]
        pt = M.confusion_at(d, y, thr)
        both = bool(y.any() and not y.all())
        rows.append({"model": r.model, "relation": kind, "pos": int(y.sum()), "neg": int((~y).sum()),
                     "roc_auc": M.roc_auc(d, y) if both else None,
                     "ap": M.average_precision(d, y) if both else None,
                     "precision": pt.precision, "recall": pt.recall, "f1": pt.f1, "threshold": thr,
                     "kin_mean_distance": float(d[y].mean()) if y.any() else None,
                     "nonkin_mean_distance": float(d[~y].mean()) if (~y).any() else None})
    return rows


# --------------------------------------------------------------------------- entry point


def evaluate(dataset: str, path: str | Path | None, models: Sequence[str], settings: Settings | None = None,
             task: str | None = None, seed: int = 0, limit: int | None = None,
             target_precision: float = 0.95, target_fmr: float = 0.01, progress: Progress | None = None,
             crop_fallback: bool | None = None, max_photos_per_member: int | None = None,
             workers: int | None = None, dask: str | None = None) -> Comparison:
    """Compare ``models`` on a labelled dataset.

    ``dataset``: one of :data:`DATASETS`; ``path``: its folder (or pairs/csv file),
    default :func:`default_path`. ``task``: one of ``TASKS[dataset]`` or None for all.
    ``limit``: at most this many pairs per task (half same, half different, seeded).
    ``crop_fallback`` (default: True for FIW): embed the whole photo when no face is
    detected. ``max_photos_per_member``: FIW kinship, use only a member's first N photos.
    ``progress(done, total, "model, task")`` is called with done 0 as each model starts a
    task, then after each photo. ``workers``/``dask``: where the photos are embedded, as
    ingest's (default: the settings' worker processes, one per core); the figures are the
    same either way.
    Raises ConfigError/UnknownModelError/DatasetError for bad arguments; a model that
    cannot run is reported in its result's ``error``.
    """
    settings = settings or get_settings()
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    names = model_names(models)
    for v, what in ((target_precision, "target precision"), (target_fmr, "target FMR")):
        M._check_rate(v, what)
    if limit is not None and (isinstance(limit, bool) or int(limit) < 2):
        raise ConfigError(f"limit must be at least 2, got {limit}")
    if max_photos_per_member is not None and int(max_photos_per_member) < 1:
        raise ConfigError(f"max_photos_per_member must be >= 1, got {max_photos_per_member}")
    path = dataset_path(dataset, path)
    if crop_fallback is None:
        crop_fallback = dataset == "fiw"

    tasks = _build_tasks(dataset, path, task, seed, limit, max_photos_per_member)
    results: list[ModelResult] = []
    with photo_workers(settings, workers, dask) as pool:
        states = model_states(names, settings, load=pool.in_process)
        for t in tasks:
            photos = _task_photos(t)
            before = {s.name: (s.computed, s.cached) for s in states}
            embed_all(photos, states, crop_fallback, progress, t.name, pool)
            for s in states:
                if s.error is not None:
                    results.append(ModelResult(model=s.name, task=t.name, n_pairs_total=len(t.a), error=s.error))
                    continue
                r = _score(t, s, target_precision, target_fmr, seed)
                # Photos shared with an earlier task were embedded (or fetched) then; their
                # cost is still this task's, so take it from the stored per-photo seconds.
                r.seconds, r.n_faces = task_cost(photos, s)
                c0, k0 = before[s.name]
                r.n_computed, r.n_cached = s.computed - c0, s.cached - k0
                results.append(r)
    params = {"task": task, "seed": seed, "limit": limit, "target_precision": target_precision,
              "target_fmr": target_fmr, "crop_fallback": crop_fallback, "detector": settings.detector,
              "max_photos_per_member": max_photos_per_member, "models": names}
    return Comparison(dataset, str(path), params, results)


def propose_thresholds(cmp: Comparison, model: str, task: str | None = None, at: str = "f1",
                       settings: Settings | None = None, target_fpir: float | None = None,
                       gallery_size: int = 0) -> list:
    """What using this comparison for ``model`` would change, previewed and not saved
    (:func:`facesearch.search.thresholds.save` saves them): its 1:1 verify threshold
    (``at``: ``f1`` best F1, ``precision`` the target precision, ``fmr`` the target FMR),
    with the false matches this comparison saw there, and, when given, ``target_fpir`` as
    the share of strangers its gallery searches may call a match in a gallery of
    ``gallery_size`` faces (search thresholds follow the gallery's size, so a target is
    saved, not a number). Returns [verify preview, search preview if any]."""
    from facesearch.models.registry import check_model_name
    from facesearch.search.thresholds import preview_target_fpir, preview_threshold

    name = check_model_name(model)
    cands = [r for r in cmp.results if r.model == name and (task is None or r.task == task)]
    if not cands:
        raise ConfigError(f"--apply {name}: that model was not part of this evaluation "
                          f"({', '.join(dict.fromkeys(r.model for r in cmp.results))})")
    # Same-person thresholds are what verdicts mean; kinship only when asked for.
    cands.sort(key=lambda r: r.task == "kinship")
    r = cands[0]
    if not r.ok:
        raise ConfigError(f"--apply {name}: no threshold, the model did not run ({r.error})")
    if at == "f1":
        thr = r.summary["best_f1"]["threshold"]
    elif at == "precision":
        if r.at_precision is None:
            raise ConfigError(f"--apply {name}: target precision {cmp.params['target_precision']} is not reachable")
        thr = r.at_precision["threshold"]
    elif at == "fmr":
        if r.at_fmr is None:
            raise ConfigError(f"--apply {name}: target FMR {cmp.params['target_fmr']} is not reachable")
        thr = r.at_fmr["threshold"]
    else:
        raise ConfigError(f"unknown operating point {at!r}; valid: f1, precision, fmr")
    src = f"evaluate {cmp.dataset}/{r.task} {at} ({Path(cmp.path).name}, {r.summary['n_pairs']} pairs)"
    pt = r.at(thr)
    out = [preview_threshold(name, thr, src, settings, evidence=(pt["fp"], pt["fp"] + pt["tn"]))]
    if target_fpir is not None:
        out.append(preview_target_fpir(name, target_fpir, gallery_size, src, settings))
    return out
