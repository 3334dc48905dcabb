"""End to end: the real dashboard in headless Chromium (Playwright).

One dashboard for the module, started as ``make run`` starts it (``facesearch serve``)
on a free port, with the session's FACESEARCH_HOME and its database server (so it sees
the gallery the fixture ingests, and what a CLI ingest adds while it runs). Chromium gets a fake camera
that plays a .y4m clip made from a CelebA photo, so the live-webcam path is exercised
through real WebRTC. Screenshots go to docs/screenshots/; the server log and failure
screenshots to tests/_artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT, celeba_split

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# The README's screenshots are written by `make screenshots` only: a test run must not
# change tracked files. Otherwise they go with the other artifacts.
SHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("FACESEARCH_SCREENSHOTS") == "1"
         else ROOT / "tests" / "_artifacts" / "screenshots")
ARTIFACTS = ROOT / "tests" / "_artifacts"
MODEL_WAIT_MS = 120_000  # first request loads TensorFlow and the models
VIEWPORT = {"width": 1400, "height": 1000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_gallery(settings):
    """The CelebA gallery of test_app.py (same photos, so ingest is a no-op if it ran)."""
    from facesearch.ingest.run import ingest

    gallery, probes = celeba_split(n_identities=10, n_gallery=3, n_probe=1)
    report = ingest(DATA / "celeba", items=gallery, settings=settings)
    assert not report.failed, report.failed
    # Obama and Biden, for the live webcam's group photo (the girl with them is nobody here).
    assert not ingest(DATA / "photos/people", settings=settings).failed
    return gallery, probes


@contextlib.contextmanager
def dashboard(env: dict, log_name: str, timeout: float = 120):
    """The dashboard as `make run` starts it (``facesearch serve``) on a free port with
    ``env``; yields its URL once healthy, stops it (and the server it started) after."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(ARTIFACTS / log_name, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "facesearch", "serve", "--port", str(port), "--",
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"facesearch serve exited with {proc.returncode}; see {ARTIFACTS / log_name}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not become healthy within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def need_chromium() -> None:
    """Chromium is needed: in CI (CI=true) its absence fails the test, elsewhere skips it."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (make browser)")
        pytest.skip("chromium is not installed (make browser)")


@pytest.fixture(scope="module")
def server(browser_gallery, session_home):
    need_chromium()
    env = {**os.environ, "FACESEARCH_HOME": str(session_home), "ANONYMIZED_TELEMETRY": "False"}
    with dashboard(env, "streamlit.log") as url:
        yield url


def write_y4m(rgb: np.ndarray, path: Path, frames: int = 10, size: tuple[int, int] = (640, 480)) -> Path:
    """A still photo as a YUV 4:2:0 .y4m clip (what Chromium's fake camera plays).

    rgb: ``(h, w, 3)`` uint8, letterboxed into ``size`` (w, h), both even.
    """
    import cv2

    W, H = size
    h, w = rgb.shape[:2]
    s = min(W / w, H / h)
    nw, nh = int(w * s) // 2 * 2, int(h * s) // 2 * 2
    canvas = np.zeros((H, W, 3), np.uint8)
    x0, y0 = (W - nw) // 2, (H - nh) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
    yuv = cv2.cvtColor(canvas, cv2.COLOR_RGB2YUV_I420)  # (H * 3/2, W): Y plane, then U, then V
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n")
            f.write(yuv.tobytes())
    return path


@pytest.fixture(scope="module")
def webcam_clip(browser_gallery):
    from facesearch.imaging.decode import load_image

    gallery, _ = browser_gallery
    item = gallery[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return write_y4m(load_image(item.path).rgb, ARTIFACTS / "webcam.y4m"), item.identity


@pytest.fixture(scope="module")
def playwright():
    """One Playwright for the module: its sync API runs one event loop per thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


def chromium_with_camera(playwright, clip: Path):
    """Headless Chromium whose fake camera plays ``clip`` (a .y4m file)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ])


@contextlib.contextmanager
def plain_page(playwright, shot: str):
    """A page of a fresh headless Chromium (no camera) for one test; its last state is kept
    as ``tests/_artifacts/<shot>`` for post-mortems."""
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    pg = b.new_context(viewport=VIEWPORT).new_page()
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / shot), full_page=True)
        except Exception:
            pass
        b.close()


@pytest.fixture(scope="module")
def browser(playwright, webcam_clip):
    b = chromium_with_camera(playwright, webcam_clip[0])
    yield b
    b.close()


@pytest.fixture
def page(browser, server, request):
    ctx = browser.new_context(viewport=VIEWPORT, permissions=["camera"])
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    # The last state of every test, for post-mortems (tests/_artifacts is gitignored).
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / (re.sub(r"[^\w.-]+", "_", request.node.name) + ".png")), full_page=True)
    except Exception:
        pass
    ctx.close()


def wait_idle(page, timeout_ms: int = MODEL_WAIT_MS) -> None:
    """Until the script run finishes (Streamlit's "Running…" status widget is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || getComputedStyle(document.querySelector('[data-testid=\"stStatusWidget\"]')).visibility === 'hidden'",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]


def open_page(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=60_000)
    wait_idle(page)


def face_headers(page):
    return page.locator("h3").filter(has_text=re.compile(r"^\s*Face \d+\s*$"))


def best_matches(page) -> list[str]:
    """The best identity of each face block, read from the rendered text (the label as
    written, spaces and punctuation included: it is shown as text, never as Markdown)."""
    return re.findall(r"Best match:[ \t]*([^\n]+?)[ \t]+(?:match|possible|no match), similarity",
                      page.inner_text("body"))


def shot(page, name: str) -> None:
    """A screenshot of the whole page. Streamlit scrolls inside its own container, so
    ``full_page`` alone gives the viewport: grow the viewport to the content first."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    js = ("() => Math.max(...Array.from(document.querySelectorAll("
          "'[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"], section'))"
          ".map(e => e.scrollHeight), document.body.scrollHeight)")
    height = VIEWPORT["height"]
    for _ in range(4):  # images load and reflow after a resize: grow until it settles
        h = int(min(max(page.evaluate(js), VIEWPORT["height"]), 8000))
        if h <= height and height > VIEWPORT["height"]:
            break
        height = max(h, height)
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    page.set_viewport_size(VIEWPORT)


# -- tests -----------------------------------------------------------------------------------------
def test_home(page, server, settings):
    open_page(page, server)
    page.get_by_text("Identities").first.wait_for()
    body = page.inner_text("body")
    assert settings.model in body and "Faces" in body and str(settings.home) in body
    # The page menu: each page by its title (the first one read "app" before), with an icon.
    links = page.locator('[data-testid="stSidebarNav"]').get_by_role("link")
    assert [t.split()[-1] for t in links.all_inner_texts()] == ["Home", "Match", "Explore", "Evaluate", "People"]
    assert page.title() == "Home"
    # .streamlit/config.toml runs the toolbar in viewer mode: no Deploy button for visitors.
    assert page.get_by_role("button", name="Deploy").count() == 0
    no_exception(page)
    shot(page, "home.png")


def test_match_upload_probe(page, server, browser_gallery):
    _, probes = browser_gallery
    probe = probes[0]
    open_page(page, server + "/Match")
    page.locator('input[type="file"]').first.set_input_files(str(probe.path))
    face_headers(page).first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    assert best_matches(page)[0] == probe.identity, page.inner_text("body")[:3000]
    shot(page, "match.png")


def test_match_group_photo(page, server):
    open_page(page, server + "/Match")
    page.locator('input[type="file"]').first.set_input_files(str(DATA / "photos/group/obama_and_biden.jpg"))
    face_headers(page).first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    assert face_headers(page).count() == 3
    shot(page, "match_group.png")


def _webrtc_frame(page, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for fr in page.frames:
            if fr is page.main_frame:
                continue
            try:
                btn = fr.get_by_role("button", name=re.compile(r"^start$", re.I))
                if btn.count():
                    return fr, btn.first
            except Exception:
                continue
        page.wait_for_timeout(500)
    raise AssertionError("the streamlit-webrtc START button never appeared")


def test_live_webcam_names_the_face(page, server, webcam_clip):
    _, identity = webcam_clip
    open_page(page, server + "/Match")
    page.get_by_text("Live webcam", exact=True).click()
    _, start = _webrtc_frame(page)
    start.click()
    pattern = re.compile(rf"Recognised\b.*\b{re.escape(identity)}\b")
    page.get_by_text(pattern).first.wait_for(timeout=MODEL_WAIT_MS)
    no_exception(page)
    page.wait_for_timeout(1500)  # let a few annotated frames reach the <video>
    shot(page, "webcam.png")


def _live_parts(page) -> list[list[str]]:
    """Each status line of the live webcam on the page now, split into its faces."""
    lines = [t for t in page.locator('[data-testid="stText"]').all_inner_texts() if t.startswith("Recognised")]
    return [ln.split("\n")[0].removeprefix("Recognised — ").split(" · ") for ln in lines]


def test_live_webcam_names_only_the_gallery_people(server, playwright):
    """The group photo on the fake camera, through real WebRTC: Obama and Biden are named
    (they are in the gallery), the girl beside them never is, in any pass, while her box
    and theirs stay on screen (photos/group/obama_and_biden.jpg; the gallery holds
    photos/people and CelebA identities, none of them her)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    from facesearch.imaging.decode import load_image

    clip = write_y4m(load_image(DATA / "photos/group/obama_and_biden.jpg").rgb, ARTIFACTS / "group.y4m")
    b = chromium_with_camera(playwright, clip)
    try:
        ctx = b.new_context(viewport=VIEWPORT, permissions=["camera"])
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        open_page(page, server + "/Match")
        page.get_by_text("Live webcam", exact=True).click()
        _, start = _webrtc_frame(page)
        start.click()
        named: dict[str, int] = {}
        passes: list[list[str]] = []
        deadline = time.monotonic() + MODEL_WAIT_MS / 1000
        # Until both men are named and names were read 24 times (a dozen readings or more).
        while time.monotonic() < deadline:
            for parts in _live_parts(page):
                if not passes or parts != passes[-1]:
                    passes.append(parts)
                for part in parts:
                    m = re.match(r"Face \d+: (.+?) \(", part)
                    if m:
                        named[m.group(1)] = named.get(m.group(1), 0) + 1
            if {"obama", "biden"} <= set(named) and sum(named.values()) >= 24:
                break
            page.wait_for_timeout(250)
        no_exception(page)
        ctx.close()
    finally:
        b.close()
    assert passes, "the live webcam never reported a pass"
    assert set(named) == {"obama", "biden"}, (named, passes[-5:])
    assert any(len(p) == 3 for p in passes), passes[-5:]


def test_explore_maps_every_gallery_face_by_identity(page, server, settings):
    """The map holds one point per gallery face, coloured, named in the legend and
    hovered by its identity, as the database holds them now."""
    from store import FaceGallery, list_galleries

    open_page(page, server + "/Explore")
    _map_size(page)
    g = next(g for g in list_galleries(settings) if g["model"] == settings.model and g["detector"] == settings.detector)
    gal = FaceGallery(settings.model, g["dim"], settings.detector, settings)
    ids, idents = [i for i, _ in gal.iter_metadata()], gal.identities()
    # The map is the first plotly chart; plotly draws it after the caption appears.
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?.data?.length > 0")
    traces = page.evaluate("""() => document.querySelector('.js-plotly-plot').data
        .filter(t => t.mode === 'markers' && t.name !== 'query').map(t => [t.name, t.customdata])""")
    assert sorted(c[0] for _, cd in traces for c in cd) == sorted(ids)
    assert {name: len(cd) for name, cd in traces} == idents
    assert all(c[1] == name for name, cd in traces for c in cd), "each point's hover names its identity"
    if len(idents) <= 25:  # more groups than that are colours without a legend
        page.locator(".legendtext").first.wait_for()
        assert sorted(page.locator(".legendtext").all_text_contents()) == sorted(idents)
    no_exception(page)
    shot(page, "explore.png")


def test_evaluate_shows_the_models_precision_and_recall(page, server, settings):
    """Run the page's default comparison (FIW, the default model) on 20 pairs per task:
    the kinship figures it shows are the core's for the same pairs."""
    from facesearch.evaluation.vectors import default_path
    from facesearch.evaluation.pairs import evaluate

    open_page(page, server + "/Evaluate")
    limit = page.get_by_role("spinbutton", name="Pairs per task (0 = all)")
    limit.fill("20")
    limit.press("Tab")
    wait_idle(page)
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Side by side").first.wait_for(timeout=3 * MODEL_WAIT_MS)
    wait_idle(page)
    page.locator('[data-testid="stRadio"] label').filter(has_text=re.compile("^kinship$")).click()
    wait_idle(page)
    no_exception(page)
    # Its tables (side by side, by relation type) fit the 1,400 px window: no sideways scrolling.
    widths = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller'))
        .map(e => [e.scrollWidth, e.clientWidth])""")
    assert len(widths) == 2 and all(sw <= cw for sw, cw in widths), widths
    metrics = [t.split() for t in page.locator('[data-testid="stMetric"]').all_inner_texts()]
    shown = [{" ".join(m[:-1]): m[-1] for m in metrics[i:i + 5]} for i in range(0, len(metrics), 5)]

    cmp = evaluate("fiw", str(default_path("fiw")), [settings.model], settings, seed=0, limit=20)
    expected = []
    for r in (r for r in cmp.results if r.task == "kinship" and r.ok):
        pt = r.at(round(float(r.summary["best_f1"]["threshold"]), 3))  # the slider starts at the best F1
        expected.append({"precision": f"{pt['precision']:.3f}", "recall": f"{pt['recall']:.3f}",
                         "F1": f"{pt['f1']:.3f}", "false match rate": f"{pt['fpr']:.3f}"})
    assert expected, cmp.results
    assert [{k: v for k, v in s.items() if k in expected[0]} for s in shown] == expected, (shown, expected)
    shot(page, "evaluate.png")


def _newcomer(n_photos: int = 4):
    """A CelebA identity outside the browser gallery (celeba_split's first 10) with
    enough photos: (identity, photos)."""
    from facesearch.datasets.registry import load_images

    by_id: dict[str, list] = {}
    for im in load_images(DATA / "celeba", "celeba"):
        by_id.setdefault(im.identity, []).append(im.path)
    ids = sorted(by_id, key=lambda i: (-len(by_id[i]), i))
    ident = next(i for i in ids[10:] if len(by_id[i]) >= n_photos)
    return ident, by_id[ident][:n_photos]


def _map_size(page) -> int:
    page.get_by_text(re.compile(r"faces in [\d.]+ s\.")).first.wait_for(timeout=MODEL_WAIT_MS)
    m = re.search(r"([\d,]+) faces in [\d.]+ s\.", page.inner_text("body"))
    assert m, page.inner_text("body")[:2000]
    return int(m.group(1).replace(",", ""))


def test_cli_ingest_while_dashboard_runs_is_seen(page, server, tmp_path):
    """A CLI ingest in another process, with the dashboard open: the Match page names the
    new person and Explore maps the new faces (one database server, no stale index)."""
    open_page(page, server + "/Explore")
    no_exception(page)
    before = _map_size(page)
    ident, photos = _newcomer()
    name = f"newcomer_{ident}"
    folder = tmp_path / "new" / name
    folder.mkdir(parents=True)
    for p in photos[:-1]:
        (folder / p.name).symlink_to(p)
    r = subprocess.run([sys.executable, "-m", "facesearch", "ingest", str(folder.parent), "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    added = int(re.search(r"(\d+) faces added", r.stdout).group(1))
    assert added >= 2, r.stdout
    open_page(page, server + "/Match")
    page.locator('input[type="file"]').first.set_input_files(str(photos[-1]))
    face_headers(page).first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    assert best_matches(page)[0] == name, page.inner_text("body")[:3000]
    open_page(page, server + "/Explore")
    no_exception(page)
    assert _map_size(page) == before + added


def test_models_load_as_the_dashboard_starts(browser, browser_gallery, session_home, settings, tmp_path):
    """`make run` loads the default model and detector in the dashboard's own process as
    it starts, before any page is opened: the log says so, Home shows no loading note,
    and the first upload is answered (an empty embedding cache: it really detects and embeds)."""
    need_chromium()
    env = {**os.environ, "FACESEARCH_HOME": str(session_home), "FACESEARCH_CACHE": str(tmp_path / "cache"),
           "ANONYMIZED_TELEMETRY": "False"}
    log = ARTIFACTS / "streamlit-warm.log"
    with dashboard(env, log.name) as url:
        done = f"face models {settings.model} / {settings.detector} loaded in"
        deadline = time.monotonic() + MODEL_WAIT_MS / 1000
        while done not in log.read_text(errors="replace"):  # no page opened yet
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        ctx = browser.new_context(viewport=VIEWPORT)
        try:
            pg = ctx.new_page()
            open_page(pg, url)
            pg.get_by_text("Identities").first.wait_for()
            assert "Loading the face models" not in pg.inner_text("body")
            open_page(pg, url + "/Match")
            pg.locator('input[type="file"]').first.set_input_files(str(DATA / "photos/group/obama_and_biden.jpg"))
            face_headers(pg).first.wait_for(timeout=MODEL_WAIT_MS)
            wait_idle(pg)
            no_exception(pg)
            assert face_headers(pg).count() == 3
            assert {"biden", "obama"} <= set(best_matches(pg)), pg.inner_text("body")[:3000]
        finally:
            ctx.close()
    assert log.read_text(errors="replace").count(done) == 1


@pytest.fixture
def own_dashboard(tmp_path):
    """A second dashboard, as `make run` starts it, on an empty data folder and an empty
    embedding cache (so its ingest really detects and embeds, slowly enough to stop)."""
    home = tmp_path / "home"
    env = {**os.environ, "FACESEARCH_HOME": str(home), "FACESEARCH_CACHE": str(tmp_path / "cache"),
           "ANONYMIZED_TELEMETRY": "False"}
    with dashboard(env, "streamlit-own.log") as url:
        yield url, home
    # The server `serve` started stops with it.
    assert not (home / "chroma-server.json").exists()


def _ingest_progress(page) -> tuple[int, int] | None:
    m = re.search(r"Ingested [^\n]*?: ([\d,]+)/([\d,]+)", page.inner_text("body"))
    return (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else None


def test_home_ingest_runs_in_the_background_and_stops(page, own_dashboard):
    url, home = own_dashboard
    open_page(page, url)
    folder = page.get_by_role("textbox", name="Folder on the server")
    folder.fill(str(DATA / "celeba"))
    folder.press("Tab")
    limit = page.get_by_role("spinbutton", name="Limit (0 = every photo)")
    limit.fill("300")
    limit.press("Tab")
    wait_idle(page)
    page.get_by_role("button", name="Ingest folder").click()
    deadline = time.monotonic() + MODEL_WAIT_MS / 1000
    while True:
        prog = _ingest_progress(page)
        if prog and prog[0] >= 10:
            break
        assert time.monotonic() < deadline, page.inner_text("body")[:2000]
        page.wait_for_timeout(200)
    # The page answers while the ingest runs: the progress moves between polls.
    page.wait_for_timeout(1500)
    assert _ingest_progress(page)[0] > prog[0]
    page.get_by_role("button", name="Stop").click()
    page.get_by_text(re.compile("stopped on request")).first.wait_for(timeout=60_000)
    no_exception(page)
    m = re.search(r"(\d+) photos processed \(0 already done\)", page.inner_text("body"))
    stopped_at = int(m.group(1))
    assert 10 <= stopped_at < 300
    # Run again: it goes on from where it stopped.
    wait_idle(page)
    page.get_by_role("button", name="Ingest folder").click()
    page.get_by_text(re.compile(rf"\({stopped_at} already done\)")).first.wait_for(timeout=MODEL_WAIT_MS)
    no_exception(page)
    assert f"{300 - stopped_at} photos processed ({stopped_at} already done)" in page.inner_text("body")


def test_several_sessions_at_once(browser, server, browser_gallery):
    """Four browser sessions upload four people's photos at the same time; each page
    names its own person."""
    _, probes = browser_gallery
    probes = probes[:4]
    contexts = [browser.new_context(viewport=VIEWPORT) for _ in probes]
    try:
        pages = [c.new_page() for c in contexts]
        for pg in pages:
            pg.set_default_timeout(60_000)
            open_page(pg, server + "/Match")
        for pg, probe in zip(pages, probes):  # no waiting in between: the uploads overlap
            pg.locator('input[type="file"]').first.set_input_files(str(probe.path))
        for pg, probe in zip(pages, probes):
            face_headers(pg).first.wait_for(timeout=MODEL_WAIT_MS)
            wait_idle(pg)
            no_exception(pg)
            assert best_matches(pg)[0] == probe.identity, pg.inner_text("body")[:2000]
    finally:
        for c in contexts:
            c.close()
