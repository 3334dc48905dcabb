"""Learning a kinship space (``facesearch kinship-train``): embed an FIW-layout folder,
fit :func:`facesearch.kinship.space.fit` on its training families, and judge the result
on its held-out families (what each rank of the search means), then save it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from facesearch.errors import DatasetError
from facesearch.kinship.space import KinshipSpace, fit, held_out, member_means, save, user_dir
from facesearch.settings import Settings, get_settings


def train(path: str | Path, model: str | None = None, settings: Settings | None = None, folder: Path | None = None,
          training_only: bool = True, progress=None) -> tuple[KinshipSpace, Path]:
    """Learn a kinship space from an FIW-layout folder (its members' photos, their
    families and ``train-pairs.csv``) and save it (default: the data folder's
    ``kinship/``). ``training_only``: fit on the training families of the fixed split
    only (:func:`held_out`), so the held-out families stay unseen."""
    from facesearch.datasets.fiw import fiw_kin_pairs
    from facesearch.datasets.registry import load_images
    from facesearch.embedding.batch import ModelState, embed_all
    from facesearch.embedding.pipeline import Pipeline

    from dataclasses import replace

    from facesearch.kinship.retrieval import retrieval

    settings = settings or get_settings()
    pipe = Pipeline(model, None, settings)
    images = load_images(path, "fiw")
    state = ModelState(pipe.model.name, pipe)
    embed_all([str(im.path) for im in images], [state], False, progress, "kinship space")
    every = [(state.emb[str(im.path)], im) for im in images if state.emb.get(str(im.path)) is not None]
    kept = [(v, im) for v, im in every if not (training_only and held_out(im.family or ""))]
    if not kept:
        raise DatasetError(f"{path}: no face found in the training families' photos")
    names, m = member_means(np.stack([v for v, _ in kept]), [im.identity for _, im in kept])
    fam_of = {im.identity: im.family for _, im in every}
    pos = {n: i for i, n in enumerate(names)}
    kin_pairs = fiw_kin_pairs(path)
    pairs = [(pos[p.a], pos[p.b], p.same) for p in kin_pairs if p.a in pos and p.b in pos]
    src = (f"{Path(path).name}: {len(names)} members of {len(set(fam_of[n] for n in names))} "
           f"{'training ' if training_only else ''}families, {time.strftime('%Y-%m-%d')}")
    space = fit(pipe.model.name, pipe.model.key, src, m, [fam_of[n] for n in names], pairs)
    if training_only:
        # Judge it on the held-out families, searched among every family: what a rank means.
        kin: dict[str, dict[str, str]] = {}
        for p in kin_pairs:
            if p.same:
                kin.setdefault(p.a, {})[p.b] = p.kind
                kin.setdefault(p.b, {})[p.a] = p.kind
        r = retrieval(np.stack([v for v, _ in every]), [im.identity for _, im in every],
                      [im.family for _, im in every], kin, space, held_out)
        if r.ranks.size:
            space = replace(space, rank_share=tuple(float(np.mean(r.ranks == k)) for k in range(1, 6)),
                            heldout_people=int(r.ranks.size))
    return space, save(space, folder or user_dir(settings))
