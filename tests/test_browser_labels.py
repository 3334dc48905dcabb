"""Labels are data in the real page (issue 17): a gallery whose identity names are hostile
Markdown and HTML, opened in headless Chromium. Each name shows as written, the browser
requests nothing outside the dashboard (a local HTTP server stands for the tracker and must
receive nothing), and no name becomes a link, an image or a coloured verdict."""

from __future__ import annotations

import csv
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT, celeba_split
from test_browser import (CHROMIUM, MODEL_WAIT_MS, VIEWPORT, best_matches, dashboard, face_headers,  # noqa: F401
                          no_exception, open_page, playwright, wait_idle)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def tracker():
    """An HTTP server on 127.0.0.1 standing for a tracker: the URLs it was asked for."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()


def hostile_labels(tracker_url: str) -> list[str]:
    return [
        # Closes the old `code span`, loads the tracker's image, reopens it.
        f"Jane` ![p]({tracker_url}/pixel.png) `Doe",
        "[x](https://evil.example/)",
        ":red[**FAKE VERDICT: match**]",
        '<a href="https://evil.example/">click me</a>',
        f"<img src={tracker_url}/img.png> www.evil.example $x^2$ :smile:",
    ]


@pytest.fixture(scope="module")
def hostile_dashboard(tmp_path_factory, tracker, session_home):
    """Its own data folder: a CSV dataset of CelebA photos whose labels are the hostile
    strings, ingested by the CLI, then the dashboard as `make run` starts it. Yields
    (url, labels, probe photo of the first label). Uses the session's embedding cache:
    this test is about the page, not about embedding."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (make browser)")
        pytest.skip("chromium is not installed (make browser)")
    tmp = tmp_path_factory.mktemp("hostile")
    labels = hostile_labels(tracker[0])
    gallery, probes = celeba_split(n_identities=len(labels), n_gallery=3, n_probe=1)
    ids = sorted({im.identity for im in gallery}, key=[im.identity for im in gallery].index)
    name = dict(zip(ids, labels))
    table = tmp / "hostile.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for im in gallery:
            w.writerow([str(im.path), name[im.identity]])
    env = {**os.environ, "FACESEARCH_HOME": str(tmp / "home"), "FACESEARCH_CACHE": str(session_home / "cache"),
           "ANONYMIZED_TELEMETRY": "False"}
    r = subprocess.run([sys.executable, "-m", "facesearch", "ingest", str(table), "--format", "csv", "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(gallery)} faces added" in r.stdout, r.stdout
    probe = next(p for p in probes if p.identity == ids[0])
    with dashboard(env, "streamlit-hostile.log") as url:
        yield url, labels, probe.path


@pytest.fixture
def watched_page(playwright, hostile_dashboard):
    """A page whose every request is recorded."""
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"])
    ctx = b.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    requests: list[str] = []
    pg.on("request", lambda req: requests.append(req.url))
    yield pg, requests
    ctx.close()
    b.close()


# Nothing outside either: not even the favicon (app.py draws it; a Material page icon as
# favicon would be fetched from fonts.gstatic.com by every visitor).
def _outside(requests: list[str], url: str) -> list[str]:
    return [u for u in requests if not u.startswith((url + "/", "data:", "blob:")) and u != url]


def _links(page) -> list[str]:
    return page.eval_on_selector_all("a", "els => els.map(e => (e.getAttribute('href') || '') + ' ' + e.innerText)")


def test_hostile_labels_show_as_text(watched_page, hostile_dashboard, tracker):
    page, requests = watched_page
    url, labels, probe = hostile_dashboard
    tracker_url, tracker_hits = tracker

    # Match: a photo of "Jane` ![p](tracker) `Doe": named literally, the tracker never asked.
    open_page(page, url + "/Match")
    page.locator('input[type="file"]').first.set_input_files(str(probe))
    face_headers(page).first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    body = page.inner_text("body")
    assert best_matches(page)[0] == labels[0], body[:3000]
    assert body.count(labels[0]) >= 2, body[:3000]  # the best match and its hits
    assert page.locator(f'img[src^="{tracker_url}"]').count() == 0
    # No verdict of the page is a label's: each coloured verdict is one of the verdict words.
    coloured = page.locator('[data-testid="stMarkdownContainer"] span[style*="color"]').all_inner_texts()
    assert all(t.strip() in ("match", "possible", "no match", "too small to judge", "low quality")
               for t in coloured), coloured

    # Explore: every label in the legend (plotly renders HTML there), as written.
    open_page(page, url + "/Explore")
    page.locator(".legendtext").first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    legend = page.locator(".legendtext").all_text_contents()
    assert sorted(legend) == sorted(labels), legend

    # The Home page's admin tables and selectors (single-user mode: this session is the admin).
    open_page(page, url)
    no_exception(page)

    links = _links(page)
    assert not [h for h in links if "evil.example" in h or tracker_url in h or "click me" in h], links
    assert not _outside(requests, url), _outside(requests, url)
    assert tracker_hits == [], tracker_hits
