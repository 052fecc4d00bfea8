"""The Panda3D runner: a real session rendered offscreen, driven by the core, behaviour logged."""

from __future__ import annotations

import json
import sqlite3

import pytest

pytest.importorskip("panda3d")

from engine.render.panda_runner import PatientUI, frame_dt, resolve_display  # noqa: E402
from engine.session.clock import SimClock
from engine.session.live import ConfigError, Session, SessionConfig  # noqa: E402
from scenes.host import InputFrame  # noqa: E402


def test_auto_display_never_picks_the_headset():
    assert resolve_display("auto", {"DISPLAY": ":1"}) == "window"
    assert resolve_display("auto", {}) == "offscreen"
    assert resolve_display("headset", {}) == "headset"
    assert frame_dt("1") is None and frame_dt("max") == 0.25 and frame_dt("3") == pytest.approx(0.1)


def test_offscreen_run_drives_the_scene_and_logs_behaviour(cli, sessions_dir):
    p = cli("run", "--display", "offscreen", "--speed", "max", "--duration", "2m", "--console", "off",
            "--sessions-dir", sessions_dir, "--scene", "crowds", timeout=600)
    assert p.returncode == 0, p.stderr
    assert "ended: completed" in p.stdout
    path = next(sessions_dir.glob("*.session"))
    with sqlite3.connect(path) as c:
        rows = c.execute("select t, intensity, behaviour from scene order by t").fetchall()
        feats = c.execute("select look_away from features").fetchall()
    assert rows[-1][0] == pytest.approx(120.0, abs=0.5)
    b = [json.loads(r[2]) for r in rows if r[2]]
    assert len(b) > 100
    assert all(0.0 <= x["look_away"] <= 1.0 for x in b if "look_away" in x)
    assert {"look_at_people", "nearest_person_m", "intensity_shown"} <= set(b[-2])
    # the intensity the scene shows is the core's
    logged = [(json.loads(r[2]), r[1]) for r in rows if r[2]]
    shown = [(x["intensity_shown"], i) for x, i in logged if "intensity_shown" in x]
    assert shown and all(abs(a - c) < 0.05 for a, c in shown)
    assert sum(f[0] is not None for f in feats) > 0.9 * len(feats)


def test_headset_without_runtime_is_one_clear_error(cli, sessions_dir):
    from tests.conftest import cli_env

    no_runtime = cli_env(XR_RUNTIME_JSON=str(sessions_dir / "no-such-runtime.json"))  # even where CI built one
    p = cli("run", "--display", "headset", "--duration", "10s", "--console", "off", "--sessions-dir", sessions_dir,
            env=no_runtime)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exposure: error: --display headset")
    assert not list(sessions_dir.glob("*.session"))  # nothing was started


def test_suds_prompt_and_pause_key_push_patient_commands(tmp_path):
    from scenes.host import Host

    s = Session(SessionConfig(display="offscreen", speed="max", sessions_dir=tmp_path, console=None,
                              duration_s=60))
    host = Host("offscreen", (160, 100))
    try:
        ui = PatientUI(host.aspect2d, host.aspect)
        core = s.core
        core.push_command({"type": "ask_suds"}, origin="therapist")
        core.tick(1.0)
        assert core.suds_pending_since == 1.0
        ui.update(core, InputFrame())
        assert not ui.suds.isHidden()
        for k in ("4", "5"):
            ui.update(core, InputFrame(pressed={k}))
        ui.update(core, InputFrame(pressed={"arrow_up"}))
        sent = ui.update(core, InputFrame(pressed={"enter"}))
        assert sent == [{"type": "suds", "value": 55.0}]
        core.tick(2.0)
        assert core.suds_pending_since is None and core.suds_last == 55.0
        assert core.suds_history[-1]["origin"] == "patient"
        ui.update(core, InputFrame())
        assert ui.suds.isHidden()
        ui.update(core, InputFrame(pressed={"p"}))
        core.tick(3.0)
        assert core.arbiter.paused
        assert ui.update(core, InputFrame(pressed={"p"})) == []  # already paused: nothing more sent
    finally:
        host.close()
        s.close("test")


def test_ctrl_c_during_frames_ends_cleanly(tmp_path):
    from engine.render.panda_runner import Runner

    s = Session(SessionConfig(display="offscreen", speed="max", sessions_dir=tmp_path, console=None,
                              duration_s=600), clock=SimClock())
    r = Runner(s, "offscreen", size=(160, 100))
    calls = {"n": 0}
    real = r.host.render_frame

    def interrupt():
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        real()

    r.host.render_frame = interrupt
    try:
        assert r.run() == "interrupted (Ctrl-C)"
        assert r.frames == 5 and s.mirror_png and s.mirror_png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        r.close()
        s.close("interrupted (Ctrl-C)")
    assert s.core.end_reason == "interrupted (Ctrl-C)"


def test_config_error_on_unknown_display_mode(tmp_path):
    from engine.render.panda_runner import run_rendered

    cfg = SessionConfig(display="none", sessions_dir=tmp_path, console=None)
    with pytest.raises(ConfigError):
        run_rendered(cfg, None, lambda s, o: None)


def test_a_stop_command_ends_the_rendered_session(tmp_path):
    from engine.render.panda_runner import Runner
    from engine.session.clock import SimClock

    s = Session(SessionConfig(display="offscreen", speed="max", sessions_dir=tmp_path, console=None,
                              duration_s=600), clock=SimClock())
    r = Runner(s, "offscreen", size=(160, 100))
    try:
        for _ in range(3):
            r.clock.tick()
            r.tm.step()
        s.core.push_command({"type": "stop"}, origin="therapist")
        assert r.run() == "stopped by therapist"
        assert s.clock.now() < 2.0  # within a frame or two of the command, not at the duration
    finally:
        r.close()
        s.close("stopped")


@pytest.mark.skipif(not __import__("shutil").which("xvfb-run"), reason="needs xvfb-run (Debian: xvfb)")
def test_window_mode_under_xvfb(sessions_dir):
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    p = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, "-m", "engine", "run",
                        "--display", "window", "--speed", "max", "--duration", "20s", "--console", "off",
                        "--sessions-dir", str(sessions_dir)], capture_output=True, text=True, timeout=300,
                       env=cli_env(), cwd=ROOT)
    assert p.returncode == 0, p.stderr
    path = next(sessions_dir.glob("*.session"))
    with sqlite3.connect(path) as c:
        display = c.execute("select value from meta where key = 'display'").fetchone()[0]
        b = [json.loads(r[0]) for r in c.execute("select behaviour from scene where behaviour is not null")]
    assert "window" in display
    assert len(b) >= 15 and all("look_down" in x and "edge_distance_m" in x for x in b if "scene" not in x)


def test_an_injected_event_reaches_the_scene_within_a_frame(tmp_path):
    from engine.render.panda_runner import Runner
    from engine.session.clock import SimClock

    s = Session(SessionConfig(display="offscreen", speed="max", sessions_dir=tmp_path, console=None,
                              duration_s=600), clock=SimClock())
    r = Runner(s, "offscreen", size=(160, 100))
    try:
        r.clock.tick()
        r.tm.step()
        s.core.push_command({"type": "event", "kind": "gust"}, origin="therapist")
        r.clock.tick()
        r.tm.step()
        assert [k for _, k in r.stage.exposure.events] == ["gust"]
        assert r.stage.exposure.gust > 0.9
        r.clock.tick()
        r.tm.step()
        assert len(r.stage.exposure.events) == 1  # delivered once, not every frame
    finally:
        r.close()
        s.close("test")
