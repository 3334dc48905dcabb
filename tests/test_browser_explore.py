"""The Explore page's t-SNE sliders in headless Chromium (issue 19): a perplexity change
re-tunes the map in a fragment. While it computes, the map on screen stays drawn, whole
and unfaded, and the rest of the page is neither rerun (no element outside the fragment
turns stale) nor disabled; then the new map replaces it, the same faces moved.

Its own dashboard, as `make run` starts it, over a gallery of 2,000 faces (the page's
default sample, where a change takes long enough to watch): 200 synthetic identities of
10 vectors each (bench/bench_perplexity.py's data), written into a real gallery by a
subprocess, because detecting and embedding 2,000 photos would take minutes and the test
is about the page, not about embedding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from test_browser import CHROMIUM, VIEWPORT, dashboard, need_chromium, no_exception, open_page, playwright, wait_idle  # noqa: F401

pytestmark = pytest.mark.browser

N_IDS, PER_ID = 200, 10
MAP_WAIT_MS = 300_000  # a cold 2,000-face map on a busy 2-core machine

WRITE_GALLERY = f"""
from bench.bench_perplexity import synthetic
from facesearch.settings import Settings
from store import FaceGallery

s = Settings.from_env()
X, y = synthetic(n_ids={N_IDS}, per_id={PER_ID})
gal = FaceGallery(s.model, X.shape[1], s.detector, s)
gal.upsert([f"face{{i:05d}}" for i in range(len(X))], X,
           [{{"identity": f"person {{int(c):03d}}", "path": f"synthetic/{{i:05d}}.jpg"}} for i, c in enumerate(y)])
print(gal.count())
"""

# Sampled every 20 ms in the page while the map is re-tuned: whether a run is going on,
# the map's points (plotly's data of the first chart) and its container's staleness and
# opacity, the spinner's text, and each element outside the fragment: stale or not,
# disabled or not.
SAMPLER = """() => {
  window.__samples = [];
  const container = (el) => el && el.closest('[data-testid="stElementContainer"]');
  const slider = (label) => document.querySelector(`input[aria-label="${label}"]`);
  window.__sampler = setInterval(() => {
    const status = document.querySelector('[data-testid="stStatusWidget"]');
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    const map = plots[0], box = container(map);
    const heading = [...document.querySelectorAll('h3')].find(h => h.innerText.includes('Average similarity'));
    const outside = {
      title: container([...document.querySelectorAll('h1')].find(h => h.innerText.includes('Explore the gallery'))),
      method: container(document.querySelector('[data-testid="stRadio"]')),
      sample_size: container(slider('Sample size')),
      uploader: container(document.querySelector('[data-testid="stFileUploader"]')),
      heading: container(heading),
      heatmap: container(plots[plots.length - 1]),
    };
    const stale = Object.entries(outside).filter(([k, e]) => !e || e.dataset.stale === 'true').map(([k]) => k);
    const thumb = slider('Sample size');
    window.__samples.push({
      running: !!status && getComputedStyle(status).visibility !== 'hidden',
      spinner: document.body.innerText.includes('Re-tuning the map from the one shown'),
      points: map && map.data ? map.data.filter(t => t.mode === 'markers' && t.name !== 'query')
                                        .reduce((a, t) => a + t.customdata.length, 0) : 0,
      map_stale: box ? box.dataset.stale === 'true' : null,
      map_opacity: box ? getComputedStyle(box).opacity : null,
      outside_stale: stale,
      sample_size_disabled: !thumb || thumb.disabled,
      plots: plots.length,
    });
  }, 20);
}"""


@pytest.fixture(scope="module")
def explore_dashboard(tmp_path_factory):
    need_chromium()
    tmp = tmp_path_factory.mktemp("explore")
    env = {**os.environ, "FACESEARCH_HOME": str(tmp / "home"), "FACESEARCH_CACHE": str(tmp / "cache"),
           "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", WRITE_GALLERY], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.split()[-1] == str(N_IDS * PER_ID), r.stderr[-3000:]
    with dashboard(env, "streamlit-explore.log") as url:
        yield url


@pytest.fixture
def page(playwright, explore_dashboard):  # noqa: F811
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    pg = b.new_context(viewport=VIEWPORT).new_page()
    pg.set_default_timeout(30_000)
    yield pg
    b.close()


def _map(page) -> dict[str, list[float]]:
    """The map's points: face id -> [x, y] (plotly's decoded traces: the figure sends
    coordinates as typed-array specs)."""
    return page.evaluate("""() => Object.fromEntries(document.querySelector('.js-plotly-plot')._fullData
        .filter(t => t.mode === 'markers' && t.name !== 'query')
        .flatMap(t => t.customdata.map((c, i) => [c[0], [t.x[i], t.y[i]]])))""")


def test_perplexity_change_retunes_the_map_in_a_fragment(page, explore_dashboard):
    open_page(page, explore_dashboard + "/Explore")
    page.get_by_text("computed from scratch").first.wait_for(timeout=MAP_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    before = _map(page)
    assert len(before) == N_IDS * PER_ID

    page.evaluate(SAMPLER)
    perplexity = page.get_by_role("slider", name="Perplexity")
    perplexity.focus()
    perplexity.press("End")  # 30 -> 100
    page.get_by_text("re-tuned from the previous map").first.wait_for(timeout=MAP_WAIT_MS)
    wait_idle(page)
    samples = page.evaluate("() => { clearInterval(window.__sampler); return window.__samples; }")
    no_exception(page)

    computing = [s for s in samples if s["spinner"]]
    assert len(computing) >= 3, "the re-tuning was watched while it ran"
    for s in samples:
        # Never a full-page rerun: nothing outside the fragment goes stale, or is disabled.
        assert s["outside_stale"] == [] and not s["sample_size_disabled"], s
        assert s["points"] == N_IDS * PER_ID, s  # a whole map on screen all along, old or new
    for s in computing:
        # While the new map is computed the old one is on screen as it was: drawn again in
        # this run (not stale), at full opacity.
        assert s["map_stale"] is False and s["map_opacity"] == "1", s

    after = _map(page)
    assert sorted(after) == sorted(before)
    moved = sum(abs(after[i][0] - before[i][0]) + abs(after[i][1] - before[i][1]) > 1e-6 for i in before)
    assert moved > len(before) // 2, "the new perplexity moved the faces"
    body = page.inner_text("body")
    assert "t-SNE, 2-D: 2,000 faces, perplexity 100" in page.evaluate(
        "() => document.querySelector('.js-plotly-plot').layout.title.text")
    assert "Average similarity between groups" in body
