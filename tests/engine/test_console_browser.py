"""The console in real headless Chromium (Playwright), clicking the real buttons of the real page
against a real session running on a speed-limited simulated clock."""

from __future__ import annotations

import json
import math
import time

import pytest

from engine.console.server import TOKEN_ENV
from tests.engine.console_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    base_url,
    live_console,
    records,
    register_test_controllers,
    running_session,
)

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1440, "height": 960})
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser):
    p = browser.new_page()
    p.errors = []
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    p.set_default_timeout(WAIT_MS)
    yield p
    p.close()


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def _until(cond, what: str, timeout_s: float = 60.0):
    """Poll a condition on the session (a real background thread runs it)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _text(page, sel: str) -> str:
    return (page.text_content(sel) or "").strip()


def _wait_text(page, sel: str, value: str) -> None:
    page.wait_for_function("([s, v]) => document.querySelector(s).textContent.trim() === v", arg=[sel, value])


def _fmt(t: float) -> str:
    t = max(0, math.floor(t))
    h, m, s = t // 3600, (t % 3600) // 60, t % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def test_therapist_sees_the_heart_rate_move_takes_over_pauses_resumes_and_stops(tmp_path, page):
    with running_session(tmp_path) as (s, clock, result):
        page.goto(s.console.url)
        # the token left the address bar (it stays in this tab's sessionStorage)
        page.wait_for_function("() => location.hash === ''")
        page.wait_for_function("() => /^\\d+$/.test(document.querySelector('#v-bpm').textContent)")
        assert _text(page, "#m-session") == s.id and _text(page, "#m-patient") == "P017"
        first = _text(page, "#v-bpm")
        page.wait_for_function("v => { const x = document.querySelector('#v-bpm').textContent;"
                               " return /^\\d+$/.test(x) && x !== v; }", arg=first)
        # frozen between two ticks, the page shows exactly what the session core holds
        clock.freeze()
        snap = s.core.snapshot()
        _wait_text(page, "#m-elapsed", f"{_fmt(snap['t'])} / {_fmt(3600)}")
        assert _text(page, "#v-bpm") == f"{snap['bpm']:.0f}"
        assert _text(page, "#v-baseline") == f"{snap['baseline']:.0f}"
        assert _text(page, "#v-level") == str(snap["level"])
        assert _text(page, "#v-intensity") == f"{snap['intensity'] * 100:.0f}"
        assert _text(page, "#v-mode") == "auto" and _text(page, "#v-connection") == "streaming"
        assert page.get_attribute("#btn-auto", "aria-pressed") == "true"
        clock.release()

        page.click("#btn-manual")
        _wait_text(page, "#v-mode", "manual")
        assert s.core.snapshot()["mode"] == "manual"
        page.select_option("#sel-level", "4")
        page.click("#btn-level")
        _until(lambda: s.core.target == pytest.approx(s.hierarchy.levels[4].intensity), "set level 4")
        _wait_text(page, "#d-who", "therapist")
        assert "set level 4" in _text(page, "#d-reason")

        page.click("#btn-pause")
        _wait_text(page, "#v-mode", "paused")
        assert page.is_enabled("#btn-resume") and not page.is_enabled("#btn-pause")
        page.click("#btn-resume")
        _wait_text(page, "#v-mode", "manual")
        # the patient's own "stop at any time" key is a pause: the therapist sees who paused
        s.core.push_command({"type": "pause"}, origin="patient")
        _wait_text(page, "#v-mode-sub", "calm scene, by patient")
        page.click("#btn-resume")
        _wait_text(page, "#v-mode", "manual")

        page.fill("#in-suds", "45")
        page.click("#btn-suds")
        page.wait_for_function("() => document.querySelector('#suds').textContent.includes('45')")

        page.click("#btn-stop")
        assert page.is_visible("#stop-confirm")
        page.click("#btn-stop-confirm")
        _wait_text(page, "#v-mode", "stopped")
        page.wait_for_function("() => document.querySelector('#banner').textContent.includes('Session ended')")
        _until(lambda: "reason" in result, "the session to end")
        assert result["reason"] == "stopped by therapist"
        assert not page.is_enabled("#btn-stop") and not page.is_enabled("#btn-manual")
        listed = page.eval_on_selector_all("#commands tr",
                                           "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert [r[1:] for r in listed[:3]] == [["therapist", "stop", "applied"], ["therapist", "SUDS 45", "applied"],
                                               ["therapist", "resume", "applied"]]
        assert ["patient", "pause", "applied"] in [r[1:] for r in listed]
        assert page.errors == []

    rows = records(s.path, "commands")
    assert [(r["type"], r["origin"]) for r in rows] == [
        ("manual", "therapist"), ("set_level", "therapist"), ("pause", "therapist"), ("resume", "therapist"),
        ("pause", "patient"), ("resume", "therapist"), ("suds", "therapist"), ("stop", "therapist")]
    assert all(r["accepted"] == 1 for r in rows)
    assert json.loads(rows[1]["payload"]) == {"type": "set_level", "level": 4}
    suds = records(s.path, "suds")
    assert [(x["value"], x["origin"]) for x in suds] == [(45.0, "therapist")]


def test_a_stop_clicked_while_the_controller_raises_intensity_wins_at_the_next_tick(tmp_path, page):
    register_test_controllers()
    with running_session(tmp_path, controller="test-climb") as (s, clock, result):
        page.goto(s.console.url)
        page.wait_for_function("() => document.querySelector('#m-controller').textContent === 'test-climb'")
        _until(lambda: s.core.intensity > 0.05 and s.core.target > s.core.intensity + 0.05, "a rising intensity")
        # between two ticks: the controller has asked for more and the intensity is ramping up
        clock.freeze()
        t_frozen, x_frozen = s.core.t, s.core.intensity
        assert s.core.target > x_frozen and s.core.snapshot()["mode"] == "auto"
        page.click("#btn-stop")
        page.click("#btn-stop-confirm")
        page.wait_for_function("() => document.querySelector('#cmd-status').textContent.startsWith('stop: sent')")
        assert s.core.t == t_frozen  # the click only queued it
        clock.release()
        _until(lambda: "reason" in result, "the session to end")
        assert result["reason"] == "stopped by therapist"
        _wait_text(page, "#v-mode", "stopped")

    tick = s.cfg.tick_s
    stop = [r for r in records(s.path, "commands") if r["type"] == "stop"]
    assert len(stop) == 1 and stop[0]["origin"] == "therapist" and stop[0]["accepted"] == 1
    t_stop = stop[0]["t"]
    assert t_stop == pytest.approx(t_frozen + tick)  # applied at the very next tick
    decisions = records(s.path, "decisions")
    before = [d for d in decisions if d["t"] < t_stop]
    after = [d for d in decisions if d["t"] >= t_stop]
    # the controller was raising the target up to the tick before the stop…
    climbs = [d for d in before if d["name"] == "test-climb"]
    assert climbs and climbs[-1]["t"] == pytest.approx(t_frozen)
    assert max(d["target_after"] for d in before) > x_frozen
    # …and at the stop's tick only the stop decided: no controller decision, intensity to zero
    assert [(d["who"], d["reason"], d["target_after"]) for d in after] == [("therapist", "stop", 0.0)]
    scene = records(s.path, "scene")
    assert all(r["intensity"] == 0.0 for r in scene if r["t"] >= t_stop)
    rising = [r["intensity"] for r in scene if r["t"] <= t_frozen][-5:]
    assert rising == sorted(rising) and rising[-1] > rising[0]


def test_without_the_token_the_page_shows_nothing_and_a_wrong_token_is_refused(tmp_path, page):
    with live_console(tmp_path) as (s, h, c):
        seen = []
        page.on("response", lambda r: seen.append((r.url.split(str(h.port), 1)[1], r.status)))
        page.goto(base_url(h) + "/")
        page.wait_for_selector("#locked", state="visible")
        assert page.is_hidden("#app")
        body = page.content()
        assert s.id not in body and "P017" not in body and "ladder" not in body
        page.fill("#token-input", "not-the-token-0123456789")
        page.click("#token-form button")
        page.wait_for_function("() => document.querySelector('#locked-msg').textContent.includes('refused')")
        assert page.is_hidden("#app") and s.id not in page.content()
        assert ("/api/state", 401) in seen
        assert all(status == 401 for path, status in seen if path.startswith("/api"))
        # the right token opens it
        page.fill("#token-input", h.token)
        page.click("#token-form button")
        _wait_text(page, "#m-session", s.id)
        assert page.is_visible("#app") and page.is_hidden("#locked")
        # the patient's view appears once the runner provides an image
        assert page.is_hidden("#mirror") and "No rendered scene" in _text(page, "#mirror-none")
        s.mirror_png = _png(32, 18)
        page.wait_for_function("() => { const m = document.querySelector('#mirror');"
                               " return !m.hidden && m.complete && m.naturalWidth === 32; }")
        assert page.errors == []


def _png(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([40, 90, 160]) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _start_cli(tmp_path, *extra, env=None):
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--display", "none", "--speed", "10",
                             "--duration", "30m", "--patient", "P017", "--sessions-dir", str(tmp_path / "s"),
                             "--console", "127.0.0.1:0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env or cli_env())
    lines = {}
    for line in proc.stdout:
        key, _, value = line.partition(": ")
        lines[key] = value.strip()
        if key == "console token":
            break
    return proc, lines


def test_exposure_run_prints_a_url_that_opens_the_console_and_nobody_else_gets_in(tmp_path, page):
    import httpx

    proc, lines = _start_cli(tmp_path)
    try:
        url, token = lines["console"], lines["console token"]
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/#token={token}")
        base = url.split("/#")[0]
        assert not base.endswith(":0")
        with httpx.Client(base_url=base, timeout=30) as anon:
            assert anon.get("/api/state").status_code == 401
            assert anon.post("/api/command", json={"type": "stop"}).status_code == 401
            assert anon.get("/api/state", headers={"Authorization": "Bearer " + token[::-1]}).status_code == 401
        assert proc.poll() is None  # still running: the refused stop did nothing
        page.goto(url)
        page.wait_for_function("() => /^\\d+$/.test(document.querySelector('#v-bpm').textContent)")
        first = _text(page, "#v-bpm")
        page.wait_for_function("v => { const x = document.querySelector('#v-bpm').textContent;"
                               " return /^\\d+$/.test(x) && x !== v; }", arg=first)
        page.click("#btn-manual")
        _wait_text(page, "#v-mode", "manual")
        page.click("#btn-pause")
        _wait_text(page, "#v-mode", "paused")
        page.click("#btn-resume")
        _wait_text(page, "#v-mode", "manual")
        page.click("#btn-stop")
        page.click("#btn-stop-confirm")
        _wait_text(page, "#v-mode", "stopped")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "ended: stopped by therapist" in out
        assert page.errors == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _occupy(n: int):
    """n listening sockets on consecutive loopback ports."""
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20000, 60000)
        socks = []
        try:
            for p in range(base, base + n):
                sk = socket.socket()
                socks.append(sk)
                sk.bind(("127.0.0.1", p))
                sk.listen(1)
            return base, socks
        except OSError:
            for sk in socks:
                sk.close()
    raise RuntimeError("no free port range")


def test_a_busy_console_port_moves_to_the_next_free_one_and_the_url_says_so(tmp_path):
    base, socks = _occupy(2)
    try:
        proc, lines = _start_cli(tmp_path, "--console", f"127.0.0.1:{base}")
        try:
            assert lines["console"].startswith(f"http://127.0.0.1:{base + 2}/#token=")
        finally:
            proc.kill()
            proc.communicate()
    finally:
        for sk in socks:
            sk.close()


def test_when_every_nearby_port_is_busy_the_session_does_not_start_and_says_why(tmp_path):
    from engine.console.server import PORT_TRIES
    from tests.conftest import run_cli

    base, socks = _occupy(PORT_TRIES)
    try:
        p = run_cli("run", "--display", "none", "--duration", "1m", "--sessions-dir", str(tmp_path / "s"),
                    "--console", f"127.0.0.1:{base}", timeout=120)
    finally:
        for sk in socks:
            sk.close()
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"exposure: error: --console 127.0.0.1:{base}: ports")
    assert "all in use" in p.stderr


def test_the_api_page_renders_offline_from_the_console_alone(tmp_path, page):
    # every request that leaves the console's own address is refused, as in a clinic without internet
    with live_console(tmp_path) as (s, h, c):
        base = base_url(h)
        outside: list[str] = []

        def route(r):
            if r.request.url.startswith(base):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto(f"{base}/docs#token={h.token}")
        page.wait_for_selector("text=Send a therapist command")  # the operation, rendered by Swagger UI
        body = page.inner_text("body")
        assert "GET\n/api/state" in body and "OAS 3.1" in body
        assert outside == [] and page.errors == []
        page.unroute("**/*")
