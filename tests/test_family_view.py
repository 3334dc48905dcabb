"""facesearch.kinship.family_view on a real gallery (Chroma) of known vectors: the test is
about the family's table (who is whose parent, which scores), not about embedding."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA

from facesearch.errors import ConfigError
from facesearch.kinship import space as KS
from facesearch.kinship.family_view import CAVEAT, family_view, families


@pytest.fixture
def gallery(tmp_path):
    """F0001's four members (two faces each, real paths, no ``parents`` recorded: a gallery
    from before they were kept) and a FAMILY/PERSON/ family of two, as random unit vectors."""
    from facesearch.settings import Settings
    from store import FaceGallery

    s = Settings(home=tmp_path / "home")
    rng = np.random.default_rng(0)
    rows, ids, mds = [], [], []
    members = [("F0001", f"MID{i}", g) for i, g in ((1, "m"), (2, "f"), (3, "m"), (4, "m"))]
    members += [("Smith", "mum", None), ("Smith", "kid", None)]
    for fam, mem, gender in members:
        ident = f"{fam}/{mem}"
        photos = sorted((DATA / "fiw/train-faces" / fam / mem).glob("*.jpg"))[:2] if fam == "F0001" else []
        for k in range(2):
            rows.append(rng.normal(size=128))
            ids.append(f"{fam}-{mem}-{k}")
            md = {"identity": ident, "family": fam, "member": mem,
                  "path": str(photos[k % len(photos)]) if photos else f"/gone/{fam}/{mem}/{k}.jpg"}
            if gender:
                md["gender"] = gender
            mds.append(md)
    x = np.asarray(rows)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    g = FaceGallery("sface", 128, "yunet", s)
    g.upsert(ids, x.astype(np.float32), mds)
    return g, s, x, mds


def test_parents_from_mid_csv_and_the_scores(gallery):
    g, s, x, mds = gallery
    assert families(g) == {"F0001": 4, "Smith": 2}
    sp = KS.load("sface", s)
    v = family_view(g, "F0001", s, model_key=sp.model_key)
    assert v.members == ["F0001/MID1", "F0001/MID2", "F0001/MID3", "F0001/MID4"]
    # mid.csv: MID1 (m) and MID2 (f) are the parents of MID3 and MID4 (both m).
    assert sorted((p.child, p.parent, p.relation, p.role) for p in v.parent_child) == [
        ("F0001/MID3", "F0001/MID1", "fs", "father"), ("F0001/MID3", "F0001/MID2", "ms", "mother"),
        ("F0001/MID4", "F0001/MID1", "fs", "father"), ("F0001/MID4", "F0001/MID2", "ms", "mother")]
    assert v.children == ["F0001/MID3", "F0001/MID4"]
    rows = [i for i, md in enumerate(mds) if md["family"] == "F0001"]
    names, m = KS.member_means(x[rows], [mds[i]["identity"] for i in rows])
    z = sp.project(m)
    pos = {n: i for i, n in enumerate(names)}
    for p in v.parent_child:
        i, j = pos[p.child], pos[p.parent]
        assert p.kinship == pytest.approx(float(z[i] @ z[j]), abs=1e-5)
        assert p.same_person == pytest.approx(float(m[i] @ m[j]), abs=1e-5)
    pairs = v.pairs()
    assert len(pairs) == 6 and [k for *_, k, _ in pairs] == sorted((k for *_, k, _ in pairs), reverse=True)
    assert ("F0001/MID1", "F0001/MID3", "F0001/MID1 is father of F0001/MID3") == pairs[
        next(i for i, t in enumerate(pairs) if t[:2] == ("F0001/MID1", "F0001/MID3"))][:3]
    assert v.caveat == CAVEAT and "kinship space of sface" in v.space


def test_family_without_parents_and_unknown_family(gallery):
    g, s, _, _ = gallery
    v = family_view(g, "Smith", s, model_key=KS.load("sface", s).model_key)
    assert v.parent_child == [] and [(a, b, r) for a, b, r, _, _ in v.pairs()] == [("Smith/kid", "Smith/mum", "")]
    with pytest.raises(ConfigError, match="the kinship space for sface was made for"):
        family_view(g, "Smith", s, model_key="sface@another-version")
    with pytest.raises(ConfigError, match="no family 'Jones'"):
        family_view(g, "Jones", s)
