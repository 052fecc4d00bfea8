"""The course report (``exposure report --course P --scene S``) opens in headless Chromium with its
plot decoded, and its table is the course as the store reads it."""

from __future__ import annotations

import stat

import pytest

from engine.session.live import Session, SessionConfig
from engine.store.course import read_course
from tests.conftest import run_cli
from tests.engine.console_support import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sessions")
    for _ in range(3):
        cfg = SessionConfig(scene="heights", sensor="sim://?seed=4", controller="suds", display="none",
                            duration_s=900.0, speed="max", patient="P017", sessions_dir=d, seed=4)
        Session(cfg).run_headless()
    return d


def test_course_report_opens_in_chromium_with_its_plot(course_dir, tmp_path):
    pw_api = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "course.html"
    p = run_cli("report", "--course", "P017", "--scene", "heights", "--out", out, "--sessions-dir", course_dir)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    c = read_course(course_dir, "P017", "heights")
    assert [s.index for s in c.sessions] == [1, 2, 3]
    assert any(s.return_of_fear is not None for s in c.sessions[1:])  # the suds protocol measured it
    with pw_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        imgs = page.evaluate("Array.from(document.images).map(i => ({ok: i.complete, w: i.naturalWidth,"
                             " h: i.naturalHeight}))")
        rows = page.evaluate("Array.from(document.querySelectorAll('tr')).slice(1)"
                             ".map(r => Array.from(r.cells).map(c => c.textContent))")
        b.close()
    assert len(imgs) == 1 and imgs[0]["ok"] and imgs[0]["w"] > 800 and imgs[0]["h"] > 800
    assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
    assert len(rows) == 3
    for row, s in zip(rows, c.sessions, strict=True):
        assert row[0] == str(s.index) and row[9] == s.id
        assert row[3].startswith(f"L{s.start_level} ") and row[4].startswith(f"L{s.highest_level} ")
        assert row[5] == ("–" if s.peak_suds is None else f"{s.peak_suds:.0f}")
        assert row[7] == ("–" if s.return_of_fear is None else f"{s.return_of_fear:+.0f}")


def test_course_report_of_no_course_is_one_line(tmp_path):
    p = run_cli("report", "--course", "P404", "--out", tmp_path / "x.html", "--sessions-dir", tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no course of patient 'P404'" in p.stderr
