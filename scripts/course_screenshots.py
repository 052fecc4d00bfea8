"""Make docs/images/console_course.png and docs/images/course_report.png: a course of a virtual patient.

    python scripts/course_screenshots.py [--out-dir docs/images]

Runs three 20-minute sessions of patient P017 on the virtual patient (``--speed max``, the SUDS
protocol), writes the course report and screenshots it in Debian's Chromium (Playwright), then
starts a fourth session with its console and screenshots the console's course panel.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_output import console_address  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN = [sys.executable, "-m", "engine", "run", "--display", "none", "--patient", "P017", "--controller", "suds",
       "--sensor", "sim://?seed=4", "--seed", "4"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs/images")
    ap.add_argument("--port", default="8798")
    a = ap.parse_args()
    sessions = tempfile.mkdtemp()
    for _ in range(3):
        subprocess.run([*RUN, "--speed", "max", "--duration", "20m", "--console", "off", "--sessions-dir", sessions],
                       check=True, cwd=ROOT)
    report = Path(sessions) / "course.html"
    subprocess.run([sys.executable, "-m", "engine", "report", "--course", "P017", "--scene", "heights",
                    "--out", str(report), "--sessions-dir", sessions], check=True, cwd=ROOT)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1200, "height": 1500})
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(a.out_dir / "course_report.png"), full_page=False)
        proc = subprocess.Popen([*RUN, "--speed", "20", "--duration", "45m", "--sessions-dir", sessions,
                                 "--console", f"127.0.0.1:{a.port}"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        url, token = console_address(proc.stdout)
        api = httpx.Client(base_url=url.split("/#")[0], headers={"Authorization": f"Bearer {token}"})
        try:
            page = b.new_page(viewport={"width": 1440, "height": 1200})
            page.goto(url)
            while api.get("/api/state").json()["t"] < 420:
                time.sleep(0.1)
            time.sleep(5.5)  # the panel refreshes every 5 s
            page.locator(".coursecard").screenshot(path=str(a.out_dir / "console_course.png"))
        finally:
            proc.terminate()
            proc.wait(30)
            b.close()


if __name__ == "__main__":
    main()
