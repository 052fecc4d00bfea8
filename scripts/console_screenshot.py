"""Make docs/images/console.png: a simulated session driven through the console in headless Chromium.

    python scripts/console_screenshot.py [--out docs/images/console.png] [--speed 30]

Starts ``python -m engine run --display none`` on the virtual patient, opens the printed URL in
Debian's Chromium (Playwright), clicks through a therapist's session (take over, set levels,
record SUDS, ask for one, pause, resume, hand back to the controller, annotate) and takes a
screenshot. Session time is read from the console's own API.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs/images/console.png")
    ap.add_argument("--speed", default="30")
    ap.add_argument("--port", default="8799")
    a = ap.parse_args()
    sessions = tempfile.mkdtemp()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--display", "none", "--speed", a.speed,
                             "--duration", "45m", "--patient", "P017", "--seed", "11", "--sessions-dir", sessions,
                             "--console", f"127.0.0.1:{a.port}"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = token = None
    for line in proc.stdout:
        if line.startswith("console:"):
            url = line.split(None, 1)[1].strip()
        if line.startswith("console token:"):
            token = line.split(None, 2)[2].strip()
            break
    base = url.split("/#")[0]
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})

    def wait_t(t: float) -> None:
        while api.get("/api/state").json()["t"] < t:
            time.sleep(0.05)

    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                tempfile.mkdtemp(), executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1440, "height": 960})
            page = ctx.new_page()
            page.goto(url)
            wait_t(200)
            page.click("#btn-manual")
            page.select_option("#sel-level", "3")
            page.click("#btn-level")
            wait_t(420)
            page.fill("#in-suds", "35")
            page.click("#btn-suds")
            page.select_option("#sel-level", "5")
            page.click("#btn-level")
            wait_t(700)
            page.click("#btn-ask")
            wait_t(760)
            page.click("#btn-pause")
            wait_t(860)
            page.click("#btn-resume")
            page.click("#btn-auto")
            wait_t(900)
            page.fill("#in-note", "patient reports dizziness easing; breathing steady")
            page.click("#btn-note")
            wait_t(1150)
            page.fill("#in-suds", "40")
            page.click("#btn-suds")
            wait_t(1200)
            page.screenshot(path=str(a.out), full_page=True)
            ctx.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
