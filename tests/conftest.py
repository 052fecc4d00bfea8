"""Shared test helpers: run the CLI in a real child process or in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = ROOT / "tests" / "fixtures"


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, check: bool = False,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``exposure ARGS`` as a real child process (python -m engine)."""
    p = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env or cli_env(), cwd=cwd or ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"exposure {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


@pytest.fixture
def sessions_dir(tmp_path) -> Path:
    d = tmp_path / "sessions"
    return d


@pytest.fixture
def cli():
    return run_cli


def load_json(text: str):
    return json.loads(text)


@pytest.fixture
def pty_device(tmp_path):
    """A serial HR device on a pseudo-terminal, published at a stable link (``.link``), plugged."""
    from tests.sensors.serial_device import PtyDevice

    d = PtyDevice(tmp_path / "ttyHR0")
    d.plug()
    yield d
    d.close()


def signal_a_running_session(d: Path, sig: int, wait_s: float = 120) -> tuple[int, str]:
    """Start ``exposure run`` in real time (ladder, 10 min) writing to ``d``, send ``sig`` once its
    session file exists (an event to wait for, not a speed), and return (exit status, stderr)."""
    import signal as _signal  # noqa: F401  (sig is a signal number)
    import time

    child = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--display", "none", "--console", "off", "--duration", "10m",
         "--speed", "1", "--sessions-dir", str(d), "--controller", "ladder"],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not (d.exists() and list(d.glob("*.session"))):
            time.sleep(0.1)
        time.sleep(1.0)
        child.send_signal(sig)
        _, err = child.communicate(timeout=wait_s)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode, err
