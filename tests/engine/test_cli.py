"""The `exposure` CLI end to end, in real child processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from engine.store.files import SCHEMA_VERSION
from tests.conftest import ROOT, cli_env, run_cli, signal_a_running_session


def test_done_when_run_sessions_export(tmp_path):
    d, x = tmp_path / "D", tmp_path / "X"
    p = run_cli("run", "--display", "none", "--sensor", "sim://?seed=3", "--controller", "ladder",
                "--duration", "20m", "--speed", "max", "--sessions-dir", d, "--console", "off", check=True)
    assert "ended: completed" in p.stdout
    listed = json.loads(run_cli("sessions", "--sessions-dir", d, "--json", check=True).stdout)
    assert len(listed) == 1
    s = listed[0]
    assert s["controller"] == "ladder" and s["scene"] == "heights" and s["ended"] == "completed"
    assert s["duration_s"] == pytest.approx(1200.0)
    assert s["patient"] == "anon"
    p = run_cli("export", s["id"], "--format", "csv", "--out", x, "--sessions-dir", d, check=True)
    with open(x / "samples.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 1000 and len(rows) == s["samples"]
    assert set(rows[0]) == {"t", "wall", "bpm", "rr_ms", "contact", "source"}
    ts = [float(r["t"]) for r in rows]
    assert ts == sorted(ts) and 0 < ts[0] < 60 and ts[-1] <= 1200
    assert all(40 <= float(r["bpm"]) <= 200 for r in rows if r["contact"] == "1")
    with open(x / "decisions.csv") as fh:
        dec = list(csv.DictReader(fh))
    changes = [r for r in dec if r["target_before"] != r["target_after"]]
    assert any(r["who"] == "baseline" and r["reason"] == "next rung of the ladder" for r in changes)
    for kind in ("features", "commands", "suds", "events", "scene"):
        assert (x / f"{kind}.csv").exists()


def test_parquet_export_has_typed_columns(tmp_path):
    import pyarrow.parquet as pq

    d, x = tmp_path / "D", tmp_path / "X"
    run_cli("run", "--display", "none", "--duration", "3m", "--speed", "max", "--sessions-dir", d,
            "--console", "off", "--controller", "ladder", check=True)
    sid = json.loads(run_cli("sessions", "--sessions-dir", d, "--json").stdout)[0]["id"]
    run_cli("export", sid, "--format", "parquet", "--out", x, "--sessions-dir", d, check=True)
    t = pq.read_table(x / "samples.parquet")
    assert str(t.schema.field("bpm").type) == "double"
    assert str(t.schema.field("contact").type) == "bool"
    assert t.num_rows > 100


def test_demo_prints_what_happened(tmp_path):
    p = run_cli("demo", "--sessions-dir", tmp_path, check=True)
    out = p.stdout
    assert "heart rate: baseline" in out and "highest level reached" in out
    assert "who changed the intensity" in out and "log:" in out
    log = out.split("log: ")[1].split()[0]
    assert os.path.exists(log)


def test_every_command_has_help():
    p = run_cli("--help", check=True)
    cmds = [c for c in ("run", "demo", "sessions", "export") if c in p.stdout]
    assert len(cmds) == 4
    for c in cmds:
        h = run_cli(c, "--help", check=True)
        assert "usage: exposure " + c in h.stdout


@pytest.mark.parametrize("args, needle", [
    (["run", "--scene", "jungle"], "unknown scene 'jungle'"),
    (["run", "--controller", "magic"], "unknown controller 'magic'"),
    (["run", "--sensor", "carrier-pigeon://x"], "unknown sensor scheme"),
    (["run", "--sensor", "nonsense"], "has no scheme"),
    (["run", "--patient", "Jane Doe"], "pseudonymous"),
    (["run", "--duration", "forever"], "not a duration"),
    (["export", "nope", "--out", "X"], "no session 'nope'"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, needle):
    p = run_cli(*args, "--sessions-dir", tmp_path / "D", "--display", "none", "--console", "off")\
        if args[0] == "run" else run_cli(*args, "--sessions-dir", tmp_path / "D")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("exposure: error:") and needle in lines[0]


def test_unwritable_sessions_dir(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    p = run_cli("run", "--display", "none", "--console", "off", "--speed", "max", "--duration", "1m",
                "--sessions-dir", f / "sub")
    assert p.returncode == 2 and "cannot create sessions dir" in p.stderr
    assert f.read_text() == "x"


def test_newer_schema_and_corrupt_files_are_one_line(tmp_path):
    d = tmp_path / "D"
    run_cli("run", "--display", "none", "--console", "off", "--speed", "max", "--duration", "1m",
            "--sessions-dir", d, check=True)
    path = next(d.glob("*.session"))
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")  # as a newer version writes it: header and meta
    db.execute(f"UPDATE meta SET value = '{SCHEMA_VERSION + 5}' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    p = run_cli("export", path.stem, "--out", tmp_path / "X", "--sessions-dir", d)
    assert p.returncode == 2 and "upgrade exposure" in p.stderr and len(p.stderr.splitlines()) == 1
    p = run_cli("sessions", "--sessions-dir", d)
    assert p.returncode == 0 and "newer than this software" in p.stderr


def test_speed_needs_a_simulated_sensor(tmp_path):
    p = run_cli("run", "--display", "none", "--console", "off", "--speed", "max",
                "--sensor", "serial:///dev/ttyNOPE", "--sessions-dir", tmp_path)
    assert p.returncode == 2
    assert "--speed" in p.stderr or "serial" in p.stderr


def _committed_max_t(path):
    """What a reader sees committed in the file right now (WAL included)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT MAX(t), MAX(wall), COUNT(*) FROM samples").fetchone()
        finally:
            db.close()
        return row
    except sqlite3.OperationalError:
        return (None, None, 0)


def test_sigkill_loses_at_most_the_last_second(tmp_path):
    """A real-time session killed with SIGKILL: listed and exported afterwards, ≤ 1 s missing.

    The virtual strap stamps each sample with its wall time. We kill the child only once it
    has been streaming for a while, then compare the wall time of the kill with the newest
    sample that survived. The writer commits every 0.5 s and the strap sends one sample a
    second, so the gap may be up to 1 s (sample period) + 0.5 s (commit period) + one tick;
    anything beyond that, up to a margin for a loaded machine, would mean lost data.
    """
    d = tmp_path / "D"
    child = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--display", "none", "--console", "off",
         "--sensor", "sim://?seed=5&dropout=0", "--controller", "ladder", "--duration", "10m",
         "--speed", "1", "--sessions-dir", str(d)],
        cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        path = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = list(d.glob("*.session")) if d.exists() else []
            if files:
                path = files[0]
                _, _, n = _committed_max_t(path)
                if n >= 25:  # strap contact comes within 20 s; then some streaming
                    break
            time.sleep(0.2)
        assert path is not None, "the session file never appeared"
        seen_t, _, seen_n = _committed_max_t(path)
        assert seen_n >= 25
        time.sleep(1.3)  # kill at an arbitrary phase of the commit cycle
        kill_wall = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    max_t, max_wall, n = _committed_max_t(path)
    assert max_t >= seen_t and n >= seen_n, "data already committed was lost"
    gap = kill_wall - max_wall
    assert gap <= 1.0 + 0.5 + 0.25 + 0.75, f"{gap:.2f} s of samples lost before the kill"
    listed = json.loads(run_cli("sessions", "--sessions-dir", d, "--json", check=True).stdout)
    assert len(listed) == 1 and listed[0]["ended"].startswith("incomplete")
    assert listed[0]["samples"] == n
    x = tmp_path / "X"
    run_cli("export", listed[0]["id"], "--format", "csv", "--out", x, "--sessions-dir", d, check=True)
    with open(x / "samples.csv") as fh:
        assert len(list(csv.DictReader(fh))) == n


def test_ctrl_c_ends_cleanly_and_is_recorded(tmp_path):
    d = tmp_path / "D"
    rc, err = signal_a_running_session(d, signal.SIGINT, wait_s=60)
    assert rc == 0, err
    listed = json.loads(run_cli("sessions", "--sessions-dir", d, "--json", check=True).stdout)
    assert listed[0]["ended"] == "interrupted (Ctrl-C)"
