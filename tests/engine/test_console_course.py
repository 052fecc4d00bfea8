"""The console's course panel in real headless Chromium: a third session of P017 shows the two
before it (from their files) and itself (from the live core), where it started and why."""

from __future__ import annotations

import httpx
import pytest

from engine.console.server import TOKEN_ENV
from engine.session.live import Session, SessionConfig
from engine.store.course import read_course
from policy.step import course_start_level
from tests.engine.console_support import CHROMIUM, CHROMIUM_ARGS, base_url, live_console, running_session

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
WAIT_MS = 60_000


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def earlier_sessions(tmp_path, n: int = 2):
    """``n`` finished sessions of P017 (heights, ladder, 8 simulated minutes), where the console's
    sessions live."""
    for _ in range(n):
        cfg = SessionConfig(scene="heights", sensor="sim://?seed=3", controller="ladder", display="none",
                            duration_s=480.0, speed="max", patient="P017", sessions_dir=tmp_path / "sessions",
                            seed=3)
        Session(cfg).run_headless()
    return read_course(tmp_path / "sessions", "P017", "heights")


def test_course_endpoint_needs_the_token_and_lists_the_course(tmp_path):
    before = earlier_sessions(tmp_path)
    with live_console(tmp_path) as (s, h, c):
        assert httpx.get(base_url(h) + "/api/course", timeout=30).status_code == 401
        assert httpx.get(base_url(h) + "/api/course", headers={"Authorization": "Bearer nope"},
                         timeout=30).status_code == 401
        r = c.get("/api/course")
        assert r.status_code == 200
        j = r.json()
    assert j["course_id"] == before.course_id and j["index"] == 3 and not j["anonymous"]
    assert [x["index"] for x in j["sessions"]] == [1, 2, 3]
    assert [x["id"] for x in j["sessions"][:2]] == [x.id for x in before.sessions]
    assert j["sessions"][2]["current"] and j["sessions"][2]["id"] == s.id
    assert j["start_level"] == int(course_start_level(before.sessions[1].highest_level)) >= 1
    assert "one level below the highest level reached in session 2" in j["start_reason"]
    for got, want in zip(j["sessions"][:2], before.sessions, strict=True):
        assert got["highest_level"] == want.highest_level and got["peak_hr_rise"] == want.peak_hr_rise
        assert got["minutes"] == pytest.approx(8.0)


def test_course_panel_in_chromium(tmp_path):
    before = earlier_sessions(tmp_path)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1440, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(WAIT_MS)
        try:
            with running_session(tmp_path) as (s, clock, result):
                page.goto(s.console.url)
                page.wait_for_function("() => document.querySelectorAll('#course-sessions tr').length === 3")
                rows = page.evaluate("Array.from(document.querySelectorAll('#course-sessions tr'))"
                                     ".map(r => Array.from(r.cells).map(c => c.textContent))")
                start = page.text_content("#course-start")
                why = page.text_content("#course-why")
                tag = page.text_content("#course-id")
                current = page.get_attribute("#course-sessions tr:last-child", "class")
        finally:
            b.close()
    assert errors == []
    k = int(course_start_level(before.sessions[1].highest_level))
    assert start == f"Started at level {k} ({s.hierarchy.levels[k].name})"
    assert "one level below the highest level reached in session 2" in why
    assert tag == "session 3" and current == "current"
    for row, want in zip(rows[:2], before.sessions, strict=True):
        assert row[0] == str(want.index)
        assert row[1] == want.started_at[:16].replace("T", " ")
        assert row[2] == f"{want.minutes:.1f}"
        assert row[3] == f"{want.start_level} → {want.highest_level}"
        assert row[5] == f"+{want.peak_hr_rise:.0f} bpm"
    assert rows[2][0] == "3" and rows[2][1] == "now" and rows[2][3].startswith(f"{k} → ")
