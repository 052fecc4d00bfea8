"""A silent heart-rate source is said on the terminal within seconds, again while it lasts, and
in the end-of-session summary."""

from __future__ import annotations

import logging

import pytest

from engine.session.clock import SimClock
from engine.session.live import Session, SessionConfig
from engine.session.watch import SignalWatch
from engine.store.files import SessionReader
from tests.conftest import run_cli


def test_the_watch_warns_after_seconds_repeats_and_totals(caplog):
    w = SignalWatch("ble://Polar", t0=0.0)
    with caplog.at_level(logging.WARNING, logger="engine.session"):
        for k in range(0, 41):  # 10 s of silence at the start (ticks of 0.25 s) ...
            w.update(k * 0.25, 0)
        for k in range(41, 200):  # ... samples from 10.25 s to 50 s ...
            w.update(k * 0.25, k)
        for k in range(200, 441):  # ... then 60 s of silence
            w.update(k * 0.25, 199)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0].startswith("no heart-rate signal from ble://Polar: never received a sample")
    assert caplog.records[0].levelno == logging.WARNING
    assert "is back after 10 s without" in msgs[1]
    later = [m for m in msgs[2:]]
    assert len(later) == 2 and "no sample for 5 s" in later[0] and "no sample for 35 s" in later[1]
    assert w.no_signal_s == pytest.approx(10.25 + 60.25, abs=0.01)
    assert w.summary() == "no signal for 1:10 of 1:50 (64%) in 2 spell(s)"


def test_a_sensor_that_never_connects_is_said_on_the_terminal_and_in_the_summary(tmp_path, caplog):
    cfg = SessionConfig(scene="heights", sensor="serial:///dev/ttyUSB9?baud=115200&format=csv", controller="ladder",
                        display="none", duration_s=70.0, speed="1", patient="P017", sessions_dir=tmp_path / "s",
                        console=None, seed=1).validated()
    s = Session(cfg, clock=SimClock())  # session time, simulated: the port fails on the I/O loop meanwhile
    with caplog.at_level(logging.WARNING, logger="engine.session"):
        s.run_headless()
    warned = [r for r in caplog.records if r.name == "engine.session" and "no heart-rate signal" in r.getMessage()]
    assert len(warned) == 3  # at 5 s, 35 s, 65 s of session time
    assert "never received a sample" in warned[0].getMessage()
    assert s.watch.summary() == "no signal: not one sample from serial:///dev/ttyUSB9?baud=115200&format=csv in 1:10"
    with SessionReader(s.path) as r:
        assert r.meta["no_signal_s"] == pytest.approx(70.0)
        assert r.meta["no_signal"].startswith("no signal: not one sample")


def test_sensors_stream_gives_up_after_the_timeout_with_one_line(tmp_path):
    p = run_cli("sensors", "stream", "serial:///dev/ttyUSB9", "--timeout", "1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("exposure: error: no sample from serial:///dev/ttyUSB9 in 1 s")
