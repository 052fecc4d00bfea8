"""No traceback reaches a user: unreadable folders and files, a file given as a folder, in real
child processes. As root, permissions are bypassed, so the child runs without the capabilities
that bypass them (setpriv); the test skips with a reason when that is not possible."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from tests.conftest import ROOT, cli_env, run_cli, signal_a_running_session

pytestmark = pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                                reason="running as root without setpriv: permissions cannot be denied")


def run_denied(*args):
    """``exposure ARGS`` as a process that file permissions apply to."""
    import subprocess
    import sys

    pre = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run([*pre, sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=cli_env(PYTHONDONTWRITEBYTECODE="1"), cwd=ROOT)


def one_line(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exposure: error:"), p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec") / "D"
    run_cli("run", "--display", "none", "--console", "off", "--speed", "max", "--duration", "1m",
            "--sessions-dir", d, check=True)
    return d, next(d.glob("*.session"))


def test_an_unreadable_sessions_folder_is_one_line_for_every_command(tmp_path, recorded):
    d, path = recorded
    locked = tmp_path / "locked"
    shutil.copytree(d, locked)
    os.chmod(locked, 0)
    try:
        for args in (["sessions"], ["replay", path.stem, "--speed", "max"], ["report", path.stem, "--out",
                     tmp_path / "r.html"], ["export", path.stem, "--out", tmp_path / "X"]):
            one_line(run_denied(*args, "--sessions-dir", locked), "cannot read sessions dir", "permission denied")
    finally:
        os.chmod(locked, stat.S_IRWXU)


def test_an_unreadable_session_file_is_reported_as_unreadable_not_corrupt(tmp_path, recorded):
    d, path = recorded
    here = tmp_path / "D"
    shutil.copytree(d, here)
    f = here / path.name
    os.chmod(f, 0)
    p = run_denied("sessions", "--sessions-dir", here)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    assert f"cannot read {f}: permission denied" in p.stderr and "corrupt" not in p.stderr
    assert "none yet" not in p.stdout and "none readable" in p.stdout
    one_line(run_denied("report", path.stem, "--out", tmp_path / "r.html", "--sessions-dir", here),
             "cannot read", "permission denied")


def test_a_sessions_dir_that_is_a_file_says_so(tmp_path, recorded):
    _, path = recorded
    for args in (["sessions"], ["replay", "x"], ["report", "x", "--out", tmp_path / "r.html"],
                 ["run", "--display", "none", "--console", "off", "--duration", "1m"]):
        one_line(run_cli(*args, "--sessions-dir", path), "is a file, not a folder")


def test_a_defect_is_one_line_and_its_traceback_only_with_verbose(tmp_path, monkeypatch, capsys):
    # a defect cannot be produced on purpose from outside; this one is injected into one command
    import signal

    import engine.cli as cli
    import engine.store.files as files

    monkeypatch.setattr(signal, "signal", lambda *a: None)  # main() would take over the test's SIGTERM

    def broken(_):
        raise RuntimeError("something we did not foresee\nsecond line")

    monkeypatch.setattr(files, "list_sessions", broken)  # what "exposure sessions" calls
    assert cli.main(["sessions", "--sessions-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["exposure: internal error (RuntimeError: something we did not foresee); "
                                        "run again with -v to see where, and report it"]
    assert cli.main(["-v", "sessions", "--sessions-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("exposure: internal error")


def test_a_negative_duration_gets_its_own_words(tmp_path):
    for cmd in (["run", "--display", "none", "--console", "off"], ["demo"]):
        one_line(run_cli(*cmd, "--duration", "-5m", "--sessions-dir", tmp_path / "D"),
                 "--duration '-5m': a duration must be positive")


def test_a_display_that_does_not_open_is_recorded_as_such_not_as_interrupted(tmp_path):
    env = cli_env()
    for k in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(k, None)
    d = tmp_path / "D"
    p = run_cli("run", "--display", "window", "--duration", "1m", "--console", "off", "--sessions-dir", d, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    import json

    listed = json.loads(run_cli("sessions", "--sessions-dir", d, "--json", check=True).stdout)
    assert len(listed) == 1 and listed[0]["ended"].startswith("could not start: the window display did not open")
    assert "interrupted" not in listed[0]["ended"]


def test_sigterm_is_recorded_as_sigterm_not_ctrl_c(tmp_path):
    import json
    import signal

    d = tmp_path / "D"
    rc, err = signal_a_running_session(d, signal.SIGTERM)
    assert rc == 0, err
    listed = json.loads(run_cli("sessions", "--sessions-dir", d, "--json", check=True).stdout)
    assert listed[0]["ended"] == "terminated (SIGTERM)"
    assert "Traceback" not in err
