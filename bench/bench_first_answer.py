"""The first and the second answer of a dashboard just started as ``make run`` starts it.

``facesearch serve`` starts on a new data folder (the three photos of ``photos/people``
ingested first) with an empty embedding cache; ``--after`` seconds after it answers its
health check (a person arriving), headless Chromium opens the Match page and uploads one
CelebA photo, then another (one face each): each time is from the upload to the photo's
results on screen. ``--model``: the default model (``FACESEARCH_MODEL``) for the run.
With ``--baseline ROOT`` each round first runs the checkout at ROOT the same way (an
older commit, whose dashboard loaded the models on the first upload).

    python -m bench.bench_first_answer [--baseline /tmp/old] [--rounds 3] [--model sface] [--after 3]

Last line: ``first answer: X s, second Y s (baseline first Z s, second W s)``, medians.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESEARCH_DATA", ROOT.parent / "shared" / "data"))
CHROMIUM = "/usr/bin/chromium"
PHOTOS = [DATA / "celeba" / "img_celeba" / n for n in ("000461.jpg", "000724.jpg")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_idle(page) -> None:
    page.wait_for_timeout(200)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || getComputedStyle(document.querySelector('[data-testid=\"stStatusWidget\"]')).visibility === 'hidden'",
        timeout=300_000)


def one_run(root: Path, tmp: Path, pw, model: str, after: float) -> tuple[float, float]:
    """(first, second) seconds from an upload to its results, on a dashboard of ``root``."""
    home, cache = tmp / "home", tmp / "cache"
    env = {**os.environ, "FACESEARCH_HOME": str(home), "FACESEARCH_CACHE": str(cache), "PYTHONPATH": str(root),
           "ANONYMIZED_TELEMETRY": "False", "FACESEARCH_MODEL": model}
    env.pop("FACESEARCH_CHROMA_URL", None)
    r = subprocess.run([sys.executable, "-m", "facesearch", "ingest", str(DATA / "photos" / "people"), "--quiet"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    cache_after_ingest = tmp / "cache-empty"  # the uploads' photos are not in it either way (searches skip it)
    env["FACESEARCH_CACHE"] = str(cache_after_ingest)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "facesearch", "serve", "--port", str(port), "--",
                             "--server.headless", "true", "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the dashboard did not start")
            time.sleep(0.2)
        time.sleep(after)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/Match", wait_until="domcontentloaded")
            page.wait_for_selector('input[type="file"]', state="attached", timeout=120_000)
            _wait_idle(page)
            times = []
            for photo in PHOTOS:
                t0 = time.perf_counter()
                page.locator('input[type="file"]').first.set_input_files(str(photo))
                page.locator("h3").filter(has_text=photo.name).first.wait_for(timeout=300_000)
                _wait_idle(page)
                times.append(time.perf_counter() - t0)
            return times[0], times[1]
        finally:
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="an older checkout to run the same way first")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="sface")
    ap.add_argument("--after", type=float, default=3.0, help="seconds between the health check and the page")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    results: dict[str, list[tuple[float, float]]] = {"ours": [], "baseline": []}
    load0 = os.getloadavg()[0]
    with sync_playwright() as pw:
        for i in range(args.rounds):
            for name, root in (("baseline", args.baseline), ("ours", ROOT)):
                if root is None:
                    continue
                with tempfile.TemporaryDirectory(prefix="fs-first-") as tmp:
                    first, second = one_run(root.resolve(), Path(tmp), pw, args.model, args.after)
                results[name].append((first, second))
                print(f"round {i + 1} {name:<8} first {first:.2f} s, second {second:.2f} s", flush=True)
    load1 = os.getloadavg()[0]

    def med(name: str, j: int) -> float:
        return statistics.median(r[j] for r in results[name])

    base = (f" (baseline first {med('baseline', 0):.2f} s, second {med('baseline', 1):.2f} s)"
            if results["baseline"] else "")
    print(f"model {args.model}, page opened {args.after:g} s after the health check; load {load0:.1f}-{load1:.1f}")
    print(f"first answer: {med('ours', 0):.2f} s, second {med('ours', 1):.2f} s{base}")


if __name__ == "__main__":
    main()
