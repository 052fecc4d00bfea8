"""Replay: logged sessions re-derive to the same decisions; counterfactual replays; replay://."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.research.replay import ReplaySession, counterfactual, load_log, rederive
from engine.store.files import SessionReader, list_sessions, table_digests
from policy.controllers import Ladder, register_controller
from tests.conftest import ROOT, cli_env, run_cli
from tests.engine.research_sessions import record

register_controller("ladder-60", lambda: Ladder(step_s=60.0))


def _only_session(d: Path) -> Path:
    infos, problems = list_sessions(d)
    assert not problems
    assert len(infos) == 1
    return infos[0].path


@pytest.mark.parametrize("speed, duration", [("20", "2m"), ("max", "20m")])
def test_session_recorded_by_the_cli_replays_to_the_same_decisions(tmp_path, speed, duration):
    d = tmp_path / "s"
    run_cli("run", "--controller", "ladder", "--display", "none", "--speed", speed, "--duration", duration,
            "--console", "off",
            "--seed", "5", "--sessions-dir", d, check=True)
    path = _only_session(d)
    with SessionReader(path) as r:
        n_logged = r.count("decisions")
        controller_decisions = sum(1 for x in r.records("decisions") if x["who"] in ("baseline", "shield"))
    assert controller_decisions >= 20  # a decision every 5 s
    p = run_cli("replay", path.stem, "--sessions-dir", d, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["match"] is True
    assert doc["decisions_logged"] == doc["decisions_replayed"] == n_logged
    assert doc["mismatches"] == 0
    assert doc["max_observation_difference"] == 0.0
    assert doc["problems"] == []


@pytest.mark.parametrize("jitter", [0.0, 0.4])
def test_therapist_commands_and_irregular_ticks_replay_exactly(tmp_path, jitter):
    """Frame-like irregular ticks, every kind of command, SUDS asked and answered."""
    path = record(tmp_path, jitter=jitter)
    log = load_log(path)
    assert {c["type"] for c in log.commands} >= {"set_level", "hold", "auto", "pause", "resume", "suds",
                                                   "ask_suds", "annotate", "event", "set_intensity"}
    assert any(not c["accepted"] for c in log.commands)  # the refused resume
    assert len(log.suds) >= 3
    res = rederive(log)
    assert res.match, [m.line() for m in res.mismatches[:5]]
    assert res.n_replayed == len(log.decisions) > 100
    # (the shield is not asked for: in this session it never changes where the target goes, and
    # a step down it would make at the floor is not an intervention)
    assert {d["who"] for d in log.decisions} >= {"baseline", "therapist"}
    assert res.max_obs_diff == 0.0


def test_a_decision_that_differs_from_the_record_is_reported(tmp_path):
    path = record(tmp_path, duration_s=600.0, script=())
    with SessionReader(path) as r:
        decs = r.records("decisions")
    k = next(i for i, d in enumerate(decs) if d["reason"] == "next rung of the ladder")
    db = sqlite3.connect(path)
    rowid = db.execute("SELECT rowid FROM decisions ORDER BY rowid LIMIT 1 OFFSET ?", (k,)).fetchone()[0]
    db.execute("UPDATE decisions SET target_after = target_after + 0.05 WHERE rowid = ?", (rowid,))
    # a record that differs from what this software re-derives, written whole (checksums to match):
    # a mismatch, not damage
    db.execute("UPDATE meta SET value = ? WHERE key = 'digests'", (json.dumps(table_digests(db)),))
    db.commit()
    db.close()
    res = rederive(load_log(path))
    assert not res.match
    assert res.mismatches[0].index == k
    assert res.mismatches[0].logged["target_after"] == pytest.approx(decs[k]["target_after"] + 0.05)
    assert res.mismatches[0].replayed["target_after"] == decs[k]["target_after"]
    p = run_cli("replay", str(path), "--sessions-dir", tmp_path)
    assert p.returncode == 1
    assert "MISMATCH" in p.stdout and f"#{k} " in p.stdout


def test_the_ramp_does_not_depend_on_the_tick_rate(tmp_path):
    """A session ticked at 4 Hz and at 64 Hz (a frame loop) decides the same, at the same intensity,
    level and time at level: the ramp follows the changes of target, not the ticks."""
    a = load_log(record(tmp_path / "a", duration_s=900.0, tick_s=0.25))
    b = load_log(record(tmp_path / "b", duration_s=900.0, tick_s=1 / 64))
    da = [(d["t"], d["target_after"], d["obs"]["time_at_level"], d["obs"]["intensity"]) for d in a.decisions
          if d["who"] == "baseline"]
    db = [(d["t"], d["target_after"], d["obs"]["time_at_level"], d["obs"]["intensity"]) for d in b.decisions
          if d["who"] == "baseline"]
    assert len(da) == len(db) > 100
    assert {d[1] for d in da} != {0.0}  # it climbed
    for x, y in zip(da, db, strict=True):
        assert x == pytest.approx(y, abs=1e-9)


def test_counterfactual_with_the_logged_controller_agrees_everywhere(tmp_path):
    path = record(tmp_path, duration_s=900.0, script=())
    res = counterfactual(load_log(path), "ladder")
    assert len(res.rows) >= 170
    assert res.differing == []
    assert res.summary()["agreement"] == 1.0


def test_counterfactual_with_another_controller_shows_where_it_differs(tmp_path, capsys):
    path = record(tmp_path, duration_s=900.0, script=())
    log = load_log(path)
    res = counterfactual(log, "ladder-60")
    s = res.summary()
    assert res.controller == "ladder-60" and res.logged_controller == "ladder"
    assert s["alt_top_level"] > s["logged_top_level"]  # a rung a minute climbs faster than one per 3 min
    first = res.differing[0]
    assert first["alt_action"] == "raise" and first["logged_action"] == "hold"
    assert first["alt_level"] == first["logged_level"] + 1
    assert first["alt_reason"] == "next rung of the ladder"
    # the logged HR it decided on is the logged one (open-loop)
    logged = {d["t"]: d["obs"]["hr"] for d in log.decisions if d["who"] == "baseline"}
    assert first["hr"] == logged[first["t"]]

    out = tmp_path / "cf"
    rc = main(["replay", str(path), "--controller", "ladder-60", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert text.startswith("OPEN-LOOP counterfactual")
    assert f"{len(res.differing)} differ from what ladder did" in text
    rows = (out / "counterfactual.csv").read_text().splitlines()
    assert len(rows) == len(res.rows) + 1
    png = (out / "counterfactual.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_counterfactual_names_an_unknown_controller(tmp_path):
    path = record(tmp_path, duration_s=60.0, script=())
    p = run_cli("replay", str(path), "--controller", "nope", "--sessions-dir", tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("exposure: error: controller 'nope' cannot be rebuilt")


def test_replay_source_feeds_the_logged_signal_at_its_times(tmp_path):
    """A session run on replay://X sees X's samples at their times: with X's controller and tick
    grid, it makes X's decisions."""
    d = tmp_path / "s"
    run_cli("run", "--controller", "ladder", "--display", "none", "--speed", "max", "--duration", "10m",
            "--console", "off",
            "--seed", "9", "--sessions-dir", d, check=True)
    x = _only_session(d)
    p = run_cli("run", "--controller", "ladder", "--sensor", f"replay://{x.stem}", "--display", "none",
                "--speed", "max", "--duration",
                "10m", "--console", "off", "--seed", "9", "--sessions-dir", d, check=True)
    y = Path(p.stdout.split()[-1])
    with SessionReader(x) as a, SessionReader(y) as b:
        sa, sb = a.rows("samples"), b.rows("samples")
        assert [r[:5] for r in sa] == [r[:5] for r in sb]
        assert {r[5] for r in sb} == {f"replay://{x.stem}"}
        key = lambda r: (r["t"], r["who"], r["target_after"], r["reason"])  # noqa: E731
        assert [key(r) for r in a.records("decisions")] == [key(r) for r in b.records("decisions")]
        ev = [e for e in b.records("events") if e["kind"] == "disconnected"]
    assert len(ev) == 1 and "end of the replayed log" in ev[0]["detail"]


def test_replay_source_from_shifts_times(tmp_path):
    from engine.research.replay_source import ReplaySource

    path = record(tmp_path, duration_s=300.0, script=())
    src = ReplaySource("replay://x", path, t_from=120.0)
    got = src.poll(10.0)
    log = load_log(path)
    want = [s for s in log.samples if 120.0 <= s.t <= 130.0]
    assert [(s.t + 120.0, s.bpm, s.rr_ms) for s in got] == [(s.t, s.bpm, s.rr_ms) for s in want]
    assert src.poll(10.0) == []


def test_reenactment_shows_the_logged_intensity_at_every_logged_time(tmp_path):
    path = record(tmp_path, jitter=0.2)
    log = load_log(path)
    rs = ReplaySession(log, display="offscreen", speed="max")
    checked = 0
    for row in log.scene[:-1]:  # the last row is written at the end, after a stop
        rs.step(row["t"])
        assert rs.core.intensity == row["intensity"], row
        assert rs.core.level == row["level"]
        assert rs.core.arbiter.paused == bool(row["paused"])
        checked += 1
    assert checked > 1000
    seek = ReplaySession(log, display="offscreen", speed="max", t_from=910.0)
    assert seek.core.arbiter.paused  # paused 900–960 s in the script
    assert seek.core.snapshot()["t"] == 910.0


def test_replay_of_a_session_killed_mid_run_checks_what_was_recorded(tmp_path):
    d = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--controller", "ladder",
                             "--display", "none", "--speed", "50",
                             "--duration", "45m", "--console", "off", "--sessions-dir", str(d)],
                            env=cli_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        path = Path(line.split("→")[1].strip())
        n = 0
        while n < 15 and proc.poll() is None:
            time.sleep(0.2)
            with SessionReader(path) as r:
                n = r.count("decisions")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    p = run_cli("replay", path.stem, "--sessions-dir", d, "--json")
    doc = json.loads(p.stdout)
    assert p.returncode == 0, doc
    assert doc["match"] and doc["decisions_logged"] >= 15
    s = run_cli("sessions", "--sessions-dir", d, "--json", check=True)
    assert "incomplete" in json.loads(s.stdout)[0]["ended"]


def test_a_log_with_nothing_intact_cannot_be_replayed_and_says_so():
    from engine.research.replay import ReplayError, SessionLog

    empty = SessionLog(Path("x.session"), {"scene": "heights"}, [], [], [], [], [], [], [], 0.0)
    with pytest.raises(ReplayError, match="nothing to replay"):
        rederive(empty)


def test_rendered_replay_offscreen_shows_the_logged_intensity(tmp_path):
    from engine.session.clock import SimClock

    Runner = importlib.import_module("engine.render.panda_runner").Runner  # noqa: N806

    path = record(tmp_path, duration_s=120.0, script=((30.0, {"type": "set_level", "level": 4}),))
    log = load_log(path)
    rs = ReplaySession(log, display="offscreen", speed="max", t_from=20.0, clock=SimClock())
    runner = Runner(rs, "offscreen")
    try:
        assert runner.run() == "completed"
        assert runner.frames >= 300  # 100 s at 0.25 s a frame
        assert runner.stage.exposure.intensity == pytest.approx(rs.core.intensity, abs=0.05)
        assert rs.mirror_png is not None and rs.mirror_png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        runner.close()
    assert rs.core.level == log.scene[-1]["level"] == 4
    assert rs.core.intensity == log.scene[-1]["intensity"]
    p = run_cli("replay", str(path), "--display", "offscreen", "--speed", "max", "--from", "1m",
                "--sessions-dir", tmp_path)
    assert p.returncode == 0, p.stderr
    assert "from 01:00 at speed max (offscreen)" in p.stdout
    assert re.search(r"replay ended at 01:5\d: completed; 2\d\d frames shown", p.stdout), p.stdout


def test_a_reenactment_ignores_commands_from_outside_the_log(tmp_path):
    """A key pressed in a re-enactment's window cannot change what is replayed."""
    path = record(tmp_path, duration_s=300.0, script=((100.0, {"type": "set_level", "level": 2}),))
    log = load_log(path)
    rs = ReplaySession(log, display="offscreen", speed="max")
    rs.step(50.0)
    assert rs.core.push_command({"type": "pause"}, origin="patient") is None
    assert rs.core.push_command({"type": "stop"}) is None
    for row in log.scene[:-1]:
        if row["t"] > 50.0:
            rs.step(row["t"])
            assert (rs.core.intensity, rs.core.level, bool(row["paused"])) == (row["intensity"], row["level"], False)
    assert rs.core.ignored_commands == 2
    assert rs.core.arbiter.mode == "manual"  # from the logged set_level, not the ignored pause
