"""Search thresholds measured on the gallery itself (facesearch.search.gallery_calibration).

The gallery is built in the test: one photo of each of 330 FIW family members, ingested
through the real ingest into a real Chroma gallery, families and all. A gallery of
relatives is where the shipped LFW calibration fails (a stranger's relatives score far
closer than LFW's strangers), so its own measurement must take over, be kept per gallery
version, be named on the Match page's sentence, and say when a best match lies where
relatives score."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(900)


def _fiw_members(data_dir: Path):
    from facesearch.datasets.registry import load_images

    by_member = defaultdict(list)
    for im in load_images(data_dir / "fiw", "fiw"):
        by_member[im.identity].append(im)
    return dict(sorted(by_member.items()))


@pytest.fixture(scope="module")
def fiw_gallery(data_dir, tmp_path_factory, session_home):
    """A gallery of one photo of every other member of each FIW family (417 members of
    142 families, families recorded), over the session's embedding cache, in its own data
    folder; the members left out are the strangers, with relatives in the gallery."""
    from facesearch.ingest.run import ingest
    from facesearch.settings import Settings

    # The session's embedding cache (this test is about calibration, not detection); its
    # own data folder, so its own embedded database.
    s = Settings(home=tmp_path_factory.mktemp("gcal") / "home", cache_dir=session_home / "cache")
    members = _fiw_members(data_dir)
    by_family = defaultdict(list)
    for m in members:
        by_family[m.split("/")[0]].append(m)
    enrolled = [m for fam in by_family.values() for m in fam[0::2]]
    strangers = [m for fam in by_family.values() for m in fam[1::2]]
    rep = ingest(data_dir / "fiw", settings=s, items=[members[m][0] for m in enrolled])
    assert rep.faces_added >= 400, rep.summary()
    return s, members, enrolled, strangers


def _gallery(s):
    from facesearch.embedding.pipeline import get_pipeline
    from facesearch.search.identify import open_gallery

    pipe = get_pipeline(None, None, s)
    return pipe, open_gallery(pipe, create=False)


def test_a_gallery_of_families_is_calibrated_on_itself(fiw_gallery):
    from facesearch.search import gallery_calibration as GC
    from facesearch.search.identify import gallery_rule, match
    from facesearch.search.verdicts import search_rule

    s, members, enrolled, strangers = fiw_gallery
    pipe, g = _gallery(s)
    rule = gallery_rule(g, pipe.model.name, s, wait=True, model_key=pipe.model.key)
    cal = rule.gallery
    assert cal is not None and cal.usable(0.01)
    assert cal.n_identities >= 400 and cal.n_families >= 140 and cal.relatives.shape[0] >= GC.MIN_RELATIVE_SCORES
    assert rule.calibration.startswith("this gallery's own faces")
    assert rule.threshold == pytest.approx(cal.threshold_for_fpir(0.01))
    # Kept under the data folder, keyed by the gallery's version.
    kept = GC.read(s, g.name)
    assert kept is not None and kept.version == g.version()
    # The shipped LFW calibration would have been far looser for this gallery of relatives.
    shipped = search_rule(pipe.model.name, s, g.count())
    assert shipped.calibration.startswith("the shipped impostor scores")
    assert rule.threshold < shipped.threshold - 0.05
    # Its promise holds on people who are not in it (their relatives are): photos of the
    # members left out, as many as the gallery has probes.
    probes = [im.path for m in strangers for im in members[m][:3]]
    x = np.stack([v for v in (pipe.analyze(p, cache=True).faces for p in probes) if v for v in [v[0].embedding]])
    best = np.asarray([h[0].distance for h in g.query(x, k=1)])
    assert np.mean(best <= rule.threshold) <= 0.03, np.mean(best <= rule.threshold)
    assert np.mean(best <= shipped.threshold) > 0.03
    # The Match page's sentence names it; the one search path uses it.
    res = match(probes[0], settings=s, gallery=g, pipeline=pipe, wait_calibration=True)
    assert "calibrated on this gallery's own faces" in res.meaning
    assert res.threshold == pytest.approx(rule.threshold)


def test_relatives_range_is_said(fiw_gallery):
    from facesearch.search import verdicts as V
    from facesearch.search.identify import gallery_rule

    s, *_ = fiw_gallery
    pipe, g = _gallery(s)
    rule = gallery_rule(g, pipe.model.name, s, wait=True)
    rel = rule.gallery.relatives
    near = float(np.quantile(rel, 0.2))
    said = V.explain(V.POSSIBLE, near, rule, None, "F0001/MID1")
    assert "Relatives score this close" in said and "a relative of F0001/MID1" in said
    share = rule.gallery.relative_share(near)
    assert share == pytest.approx(np.mean(rel <= near))
    # Far below every relative's score nothing is said.
    assert "Relatives" not in V.explain(V.MATCH, float(rel.min()) / 2, rule, None, "x")


def test_a_changed_gallery_is_measured_again_in_the_background(fiw_gallery, data_dir):
    from facesearch.ingest.run import ingest
    from facesearch.search import gallery_calibration as GC

    s, members, enrolled, strangers = fiw_gallery
    pipe, g = _gallery(s)
    before = GC.for_gallery(g, s, wait=True)
    ingest(data_dir / "fiw", settings=s, items=[members[strangers[0]][0]])
    v = g.version()
    assert v != before.version
    # Meanwhile the last measurement answers (the same people, one face more)...
    meanwhile = GC.for_gallery(g, s, wait=False)
    assert meanwhile is not None
    GC.wait_for_background()
    # ... and the new version's is kept once measured.
    now = GC.for_gallery(g, s, wait=False)
    assert now.version == v and now.n_faces == before.n_faces + 1
    assert GC.read(s, g.name).version == v


def test_cli_match_names_its_calibration(fiw_gallery):
    import os

    from store.gallery import close_client

    s, members, enrolled, strangers = fiw_gallery
    close_client(s)  # the embedded database has one owner: the command's process now
    env = {**os.environ, "FACESEARCH_HOME": str(s.home)}
    env.pop("FACESEARCH_CHROMA_URL", None)
    out = subprocess.run([sys.executable, "-m", "facesearch", "match", str(members[strangers[1]][0].path), "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    faces = json.loads(out.stdout)
    assert faces and faces[0]["threshold"] < 0.5
    out = subprocess.run([sys.executable, "-m", "facesearch", "match", str(members[strangers[1]][0].path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "calibrated on this gallery's own faces" in out.stdout, out.stdout + out.stderr


def test_small_gallery_keeps_the_shipped_calibration_and_says_why(settings):
    from facesearch.search.verdicts import search_rule

    rule = search_rule("sface", settings, 40)
    assert rule.gallery is None
    assert "too few to calibrate on" in rule.calibration and "shipped" in rule.calibration
    assert "calibrated on the shipped impostor scores" in rule.meaning


def test_identity_level_scores_and_doubles():
    """Each probe is scored against identities (its nearest face in each), its own left
    out; a face nearer another identity than its own median is reported as a double."""
    from facesearch.search.gallery_calibration import estimate

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 64))
    x, ids = [], []
    for i, c in enumerate(centres):
        for _ in range(3):
            v = c + 0.3 * rng.standard_normal(64)
            x.append(v / np.linalg.norm(v)); ids.append(f"p{i}")
    # p40: one face that is a copy of one of p0's, the other two p40's own.
    c = rng.standard_normal(64)
    for v in (x[0], c / np.linalg.norm(c), (c + 0.1) / np.linalg.norm(c + 0.1)):
        x.append(v); ids.append("p40")
    x = np.asarray(x, np.float32)
    cal = estimate(x, ids + [], [None] * len(ids))
    assert cal.n_identities == 41 and cal.n_probes == len(ids)
    # p0's copy under another name is found, both ways round.
    assert any({d.a, d.b} == {"p0", "p40"} and d.distance < 1e-5 for d in cal.doubles)
    # Scores are per identity: the best score of every probe is the distance to the
    # nearest face of another identity, computed by brute force here.
    d = 1 - x @ x.T
    names = np.asarray(ids)
    brute = np.sort([min(d[i, names != names[i]]) for i in range(len(ids))])
    assert np.allclose(cal.best, np.clip(brute, 0, 2), atol=1e-5)
    # Unnamed faces are left out; a gallery that grows is scaled by its identities.
    cal2 = estimate(np.vstack([x, x[:2]]), ids + ["", None], None)
    assert cal2.n_faces == len(ids)
    t = cal.threshold_for_fpir(0.2)
    assert cal.fpir(t, 400) > cal.fpir(t)
