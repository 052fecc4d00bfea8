"""exposure run --lsl: a pylsl inlet receives the HR stream (and markers) of a running session."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store.files import SessionReader
from tests.conftest import ROOT, cli_env

pylsl = pytest.importorskip("pylsl")
LostError = pytest.importorskip("pylsl.util").LostError


def _pull_until_exit(inlets, proc, limit_s: float = 60.0):
    """Pull every inlet until the session's process ends (inlets do not recover: a closed
    outlet ends its stream instead of blocking)."""
    got = [([], []) for _ in inlets]
    live = list(range(len(inlets)))
    deadline = time.monotonic() + limit_s
    while live and time.monotonic() < deadline:
        for i in list(live):
            try:
                chunk, ts = inlets[i].pull_chunk(timeout=0.0)
            except LostError:
                live.remove(i)
                continue
            got[i][0].extend(chunk)
            got[i][1].extend(ts)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    return got


def test_an_inlet_receives_the_hr_of_a_running_session(tmp_path):
    d = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--controller", "ladder",
                             "--display", "none", "--speed", "10",
                             "--duration", "90s", "--console", "off", "--lsl", "--seed", "4",
                             "--sessions-dir", str(d)],
                            env=cli_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        sid = first.split()[1]
        path = Path(first.split("→")[1].strip())
        found = pylsl.resolve_byprop("source_id", f"exposure-{sid}-hr", timeout=15)
        assert len(found) == 1, proc.stderr.read() if proc.poll() is not None else "no HR stream"
        info = found[0]
        assert (info.name(), info.type(), info.channel_count()) == ("ExposureHR", "HeartRate", 1)
        hr = pylsl.StreamInlet(info, recover=False)
        hr.open_stream(timeout=10)
        mk_info = pylsl.resolve_byprop("source_id", f"exposure-{sid}-markers", timeout=10)
        markers = pylsl.StreamInlet(mk_info[0], recover=False)
        markers.open_stream(timeout=10)
        full = hr.info(timeout=5)
        ch = full.desc().child("channels").child("channel")
        assert ch.child_value("label") == "bpm" and ch.child_value("unit") == "bpm"
        assert full.desc().child_value("session_id") == sid
        (values, stamps), (marks, _) = _pull_until_exit([hr, markers], proc)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with SessionReader(path) as r:
        logged = [s["bpm"] for s in r.records("samples") if s["bpm"] is not None]
        decisions = [x for x in r.records("decisions") if x["target_after"] != x["target_before"]]
    got = [v[0] for v in values]
    # the inlet joined a few samples in and the last ones may still be in flight when the
    # process exits; in between it received every logged HR, in order
    assert len(got) >= 40
    starts = [i for i in range(len(logged) - len(got) + 1) if logged[i:i + len(got)] == got]
    assert starts, (got[:5], logged[:10])
    assert len(logged) - (starts[0] + len(got)) <= 5
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # LSL timestamps increase
    kinds = [json.loads(m[0])["kind"] for m in marks]
    assert "end" in kinds
    assert kinds.count("decision") <= len(decisions)


def test_lsl_outlets_tap_the_log_without_changing_it(tmp_path):
    """The tap forwards every record unchanged: a session with --lsl logs what one without logs."""
    from engine.research.lsl import start_lsl
    from engine.session.clock import SimClock
    from engine.session.live import Session, SessionConfig

    rows = []
    for lsl_on in (False, True):
        cfg = SessionConfig(sensor="sim://?seed=8", controller="ladder", duration_s=400.0, speed="max",
                            sessions_dir=tmp_path / str(lsl_on), console=None, seed=8)
        s = Session(cfg, clock=SimClock())
        if lsl_on:
            pub = start_lsl(s)
            s.extras.append(pub)
        s.run_headless()
        if lsl_on:
            assert pub.errors == 0 and pub.stopped
            assert s.core.writer is s.writer  # the writer is given back on stop
        with SessionReader(s.path) as r:
            rows.append({"samples": [x[:1] + x[2:] for x in r.rows("samples")],  # all but wall time
                         "decisions": r.rows("decisions"), "scene": r.rows("scene")})
    assert rows[0]["decisions"] and rows[0] == rows[1]
