"""The live webcam when the browser cannot give the page a camera (issue 10): no camera,
the camera blocked for the site, a page not served securely. Each time the Match page must
say what is wrong and what to do, in words, before and after START.

Real Chromium, real dashboard (test_browser.py's ``server``): Chromium's flags choose
whether a (fake) camera exists; the Chrome DevTools Protocol sets the site's camera
permission to "denied" as a user's "Block" does; a host name mapped to 127.0.0.1 makes an
http page that is not this machine's (browsers give the camera only to https or localhost).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from test_browser import CHROMIUM, MODEL_WAIT_MS, VIEWPORT, _webrtc_frame, browser_gallery, open_page, server  # noqa: F401

pytestmark = pytest.mark.browser

BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-quic"]
ELSEWHERE = "faces.example.test"  # resolves to 127.0.0.1 in this browser only


@pytest.fixture(scope="module")
def pw():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (make browser)")
        pytest.skip("chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _launch(pw, *, camera: bool):
    args = BASE_ARGS + [f"--host-resolver-rules=MAP {ELSEWHERE} 127.0.0.1"]
    if camera:
        args.append("--use-fake-device-for-media-stream")  # a test-pattern camera
    return pw.chromium.launch(executable_path=CHROMIUM, args=args)


def _webcam_mode(page, url: str) -> None:
    open_page(page, url + "/Match")
    mode = page.get_by_text("Live webcam", exact=True)
    try:
        mode.wait_for(timeout=30_000)
    except Exception:
        raise AssertionError(page.inner_text("body")[-2000:]) from None
    mode.click()


def _says(page, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=30_000)


def _press_start_then_still_says(page, text: str) -> None:
    _, start = _webrtc_frame(page)
    start.click()
    page.wait_for_timeout(2000)
    _says(page, text)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_no_camera_says_connect_one(pw, server):
    from components.webcam import CAMERA_PROBLEMS

    b = _launch(pw, camera=False)
    try:
        ctx = b.new_context(viewport=VIEWPORT, permissions=["camera"])
        page = ctx.new_page()
        _webcam_mode(page, server)
        _says(page, "No camera found")
        assert CAMERA_PROBLEMS["none"] in page.inner_text("body")
        _press_start_then_still_says(page, "No camera found")
        # The other problems are not claimed.
        body = page.inner_text("body")
        assert "blocked" not in body and "HTTPS" not in body
    finally:
        b.close()


def test_camera_blocked_for_the_site_says_how_to_allow_it(pw, server):
    from components.webcam import CAMERA_PROBLEMS

    b = _launch(pw, camera=True)
    try:
        ctx = b.new_context(viewport=VIEWPORT)
        page = ctx.new_page()
        # What a user's "Block" in the camera prompt leaves behind.
        cdp = ctx.new_cdp_session(page)
        ctx_id = cdp.send("Target.getTargetInfo")["targetInfo"]["browserContextId"]

        def camera(setting: str) -> None:
            cdp.send("Browser.setPermission", {"permission": {"name": "camera"}, "setting": setting,
                                               "origin": server, "browserContextId": ctx_id})

        camera("denied")
        _webcam_mode(page, server)
        _says(page, "The camera is blocked for this site")
        assert CAMERA_PROBLEMS["denied"] in page.inner_text("body")
        _press_start_then_still_says(page, "The camera is blocked for this site")
        # Allowing it (as the message says) makes the message go away.
        camera("granted")
        page.get_by_text("The camera is blocked for this site").first.wait_for(state="detached", timeout=30_000)
    finally:
        b.close()


def test_plain_http_from_elsewhere_says_use_https(pw, server):
    from components.webcam import CAMERA_PROBLEMS

    port = int(re.search(r":(\d+)$", server).group(1))
    b = _launch(pw, camera=True)
    try:
        ctx = b.new_context(viewport=VIEWPORT, permissions=["camera"])
        page = ctx.new_page()
        _webcam_mode(page, f"http://{ELSEWHERE}:{port}")
        assert page.evaluate("() => window.isSecureContext") is False
        _says(page, "No camera for this page")
        assert CAMERA_PROBLEMS["insecure"] in page.inner_text("body")
        _press_start_then_still_says(page, "No camera for this page")
        # The same browser on this machine's own address has a camera: no message there.
        page2 = ctx.new_page()
        _webcam_mode(page2, server)
        page2.wait_for_timeout(4000)
        assert not any(t.split(":")[0] in page2.inner_text("body") for t in CAMERA_PROBLEMS.values())
    finally:
        b.close()
