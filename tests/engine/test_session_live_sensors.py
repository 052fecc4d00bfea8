"""Done-when: a live session on `--sensor ble://…` holds intensity (never raises it) while the strap
is gone, and carries on when it comes back. Checked in the session file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from engine.session.live import Session, SessionConfig
from engine.store.files import SessionReader, list_sessions
from policy.controllers import Controller, Proposal, controller_names
from tests.conftest import ROOT, cli_env
from tests.sensors.bluez_standin import BlueZStandIn

URL = "ble://Polar H10?scan=1"


class Eager(Controller):
    """Proposes a rise at every decision, whatever it sees: only the shield and the core stop it."""

    name = "eager-test"
    decision_interval = 1.0
    REASONS = ("up",)

    def propose(self, obs) -> Proposal:
        return Proposal(np.full(len(obs.t), 0.05), np.zeros(len(obs.t), dtype=int), self.REASONS)


@pytest.fixture
def strap(tmp_path):
    s = BlueZStandIn(tmp_path / "bluez").start()
    s.feed([bytes([0x16, 70 + i % 3, 0x57, 0x03]) for i in range(2000)], 0.1)
    yield s
    s.stop()


def _outage(strap, before: int = 100, after: int = 30) -> None:
    """Stream ``before`` notifications, take the strap away for five scans, bring it back and wait
    for ``after`` more notifications to be delivered."""
    assert strap.wait_for(lambda: len(strap.events("notify")) >= before, 120)
    strap.advertise(False)
    strap.drop_link()
    n = len(strap.events("scan-start"))
    assert strap.wait_for(lambda: len(strap.events("scan-start")) >= n + 5, 120)  # ≥ 5 s of no signal
    strap.advertise(True)
    back = len(strap.events("notify"))
    assert strap.wait_for(lambda: len(strap.events("notify")) >= back + after, 120)


def _check(path, expect_raise: bool) -> None:
    with SessionReader(path) as r:
        decisions = r.records("decisions")
        events = r.records("events")
        feats = r.records("features")
        samples = r.records("samples")
    kinds = [e["kind"] for e in events]
    assert kinds.count("connected") == 2 and "disconnected" in kinds and "reconnecting" in kinds
    assert len(samples) >= 120  # the last few in flight at the stop may not be ingested
    obs = [(d, json.loads(d["obs"]) if isinstance(d["obs"], str) else d["obs"]) for d in decisions]
    lost = [(d, o) for d, o in obs if o and o.get("lost")]
    assert lost, "the session never saw the signal as lost"
    for d, _ in lost:
        assert d["target_after"] <= d["target_before"], d
    holds = [d for d in decisions if d["reason"].startswith("signal lost")]
    if expect_raise:
        # the controller did push up whenever it could: the holds above are the shield's doing
        assert any(d["target_after"] > d["target_before"] for d, o in obs if o and not o.get("lost"))
        assert holds
    # loss of signal is a state in the log, and it ended when the strap came back
    last_lost = max(d["t"] for d, _ in lost)
    assert any(d["t"] > last_lost and not o["lost"] for d, o in obs if o)
    assert max(f["t"] for f in feats) > last_lost


def test_live_session_holds_while_the_strap_is_gone_in_process(strap, tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", strap.bus_address)
    import policy.controllers

    controller_names()  # load the built-in controllers first, then add ours for this test only
    monkeypatch.setitem(policy.controllers._CONTROLLERS, "eager-test", Eager)
    cfg = SessionConfig(sensor=URL, controller="eager-test", display="none", duration_s=600.0,
                        sessions_dir=tmp_path / "s", console=None)
    session = Session(cfg)
    th = threading.Thread(target=session.run_headless, daemon=True)
    th.start()
    try:
        _outage(strap)
    finally:
        session.stop_event.set()
        th.join(30)
    assert not th.is_alive()
    _check(session.path, expect_raise=True)


def test_live_run_command_holds_while_the_strap_is_gone(strap, tmp_path):
    d = tmp_path / "sessions"
    p = subprocess.Popen([sys.executable, "-m", "engine", "run", "--display", "none", "--console", "off",
                          "--sensor", URL, "--controller", "ladder", "--duration", "10m", "--patient", "P001",
                          "--sessions-dir", str(d)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**cli_env(), "DBUS_SYSTEM_BUS_ADDRESS": strap.bus_address})
    try:
        _outage(strap, after=70)  # the ladder decides every 5 s: see one after the return
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    infos, problems = list_sessions(d)
    assert len(infos) == 1 and not problems
    assert "terminated (SIGTERM)" in out
    _check(infos[0].path, expect_raise=False)
