"""The BLE source on bleak's real BlueZ backend, against the BlueZ stand-in on a private D-Bus."""

from __future__ import annotations

import asyncio
import json

import pytest

from sensors.ble import BLESource, scan
from sensors.parsers import parse_hr_measurement
from sensors.reconnect import Backoff
from sensors.source import open_source
from tests.conftest import FIXTURES_DIR
from tests.sensors.bluez_standin import BlueZStandIn

FIXTURES = json.loads((FIXTURES_DIR / "hr_measurement_2a37.json").read_text())["fixtures"]
# every real payload whose heart rate a living person can have
REAL = [bytes.fromhex(f["hex"]) for f in FIXTURES if 20 <= f["hr"] <= 300]


@pytest.fixture
def strap(tmp_path, monkeypatch):
    s = BlueZStandIn(tmp_path / "bluez").start()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", s.bus_address)
    yield s
    s.stop()


async def _take(src, n, on_sample=None, timeout=60.0):
    out = []

    async def run():
        it = src.stream()
        try:
            async for smp in it:
                out.append(smp)
                if on_sample is not None:
                    await on_sample(len(out))
                if len(out) >= n:
                    break
        finally:
            await it.aclose()
    await asyncio.wait_for(run(), timeout)
    return out


def _events(src):
    evs = []
    src.on_event = evs.append
    return evs


def test_real_payloads_arrive_exactly_and_garbage_is_rejected(strap):
    garbage = [b"", b"\x01\x3c", b"\x10\x3c\x11", b"\x06\x00\x01"]
    sent = REAL + garbage + REAL
    strap.feed(sent, 0.02)
    src = open_source("ble://polar h10", clock=lambda: 0.0)
    evs = _events(src)
    got = asyncio.run(_take(src, 2 * len(REAL)))
    want = [parse_hr_measurement(b) for b in REAL + REAL]
    assert [(s.bpm, s.rr_ms, s.contact) for s in got] == [(float(m.bpm), m.rr_ms, m.contact) for m in want]
    assert src.rejected == {"empty": 1, "truncated": 2, "trailing": 1}
    assert [e.kind for e in evs if e.kind != "rejected"][0] == "connected"
    con = next(e for e in evs if e.kind == "connected")
    assert con.detail["location"] == "chest" and con.detail["battery"] == 87
    assert con.detail["address"] == strap.address
    assert strap.events("disconnect")[-1][1] == "client disconnect"  # closed cleanly on exit


def test_by_address_and_scan(strap):
    strap.feed(REAL, 0.02)
    src = open_source(f"ble://{strap.address.lower()}")
    got = asyncio.run(_take(src, 3))
    assert [s.bpm for s in got] == [float(parse_hr_measurement(b).bpm) for b in REAL[:3]]
    found = asyncio.run(scan(1.0))
    assert [(f.name, f.address) for f in found] == [(strap.name, strap.address)]
    assert -70 < found[0].rssi < -50


def test_link_loss_and_failed_connects_reconnect_with_backoff(strap):
    delays = []

    async def fake_sleep(d):  # injected: record the backoff, do not wait it out
        delays.append(d)
        await asyncio.sleep(0)

    payloads = [bytes([0x16, 60 + i % 40, 0x00, 0x04]) for i in range(200)]
    strap.feed(payloads, 0.02)
    src = BLESource("ble://Polar", "Polar", sleep=fake_sleep, scan_timeout=2.0, backoff=Backoff(0.5, 2.0))
    evs = _events(src)

    async def act(n):
        if n == 5:
            strap.fail_next_connects(3)
            strap.drop_link()
    got = asyncio.run(_take(src, 15, act))
    kinds = [e.kind for e in evs if e.kind != "rejected"]
    assert kinds == ["connected", "disconnected", "reconnecting"] + ["connect_failed", "reconnecting"] * 3 \
        + ["connected"]
    assert delays == [0.5, 1.0, 2.0, 2.0]
    assert len(strap.events("connect-failed")) == 3
    # nothing lost or invented: the samples are exactly the payloads the strap delivered
    sent = [d for _, d in strap.events("notify")]
    assert [s.bpm for s in got] == [float(parse_hr_measurement(b).bpm) for b in sent[:15]]
    # the backoff starts over after a good connection
    assert src.backoff.next() == 0.5


def test_strap_gone_then_back(strap):
    delays = []

    async def fake_sleep(d):
        delays.append(d)
        await asyncio.sleep(0)

    strap.feed([bytes([0x10, 70, 0x00, 0x04])] * 100, 0.02)
    src = BLESource("ble://Polar", "Polar", sleep=fake_sleep, scan_timeout=0.3)
    evs = _events(src)

    tasks = []

    async def come_back():
        # two scans find nothing, then the strap advertises again
        await asyncio.to_thread(strap.wait_for, lambda: len(strap.events("scan-start")) >= 4)
        strap.advertise(True)

    async def act(n):
        if n == 3:
            strap.advertise(False)
            strap.drop_link()
            tasks.append(asyncio.create_task(come_back()))
    got = asyncio.run(_take(src, 6, act))
    assert len(got) == 6
    fails = [e for e in evs if e.kind == "connect_failed"]
    assert len(fails) >= 2 and all("not-found" in e.detail["error"] or "no heart-rate strap" in e.detail["error"]
                                   for e in fails)
    assert [e.kind for e in evs].count("connected") == 2


def test_bluez_dying_unannounced_is_noticed_and_survived(strap):
    """A bluetoothd crash announces nothing: the link looks up but goes silent. The source drops it
    after ``stale_s`` without notifications and reconnects once BlueZ is back."""
    strap.feed([bytes([0x10, 80, 0x00, 0x03])] * 400, 0.05)
    src = BLESource("ble://Polar", "Polar", scan_timeout=0.5, stale_s=1.0, backoff=Backoff(0.05, 0.2))
    evs = _events(src)
    tasks = []

    async def come_back():
        while sum(e.kind == "connect_failed" for e in evs) < 2:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(strap.restart)

    async def act(n):
        if n == 5:
            await asyncio.to_thread(strap.crash)
            tasks.append(asyncio.create_task(come_back()))
    got = asyncio.run(_take(src, 10, act))
    assert [s.bpm for s in got] == [80.0] * 10
    kinds = [e.kind for e in evs]
    assert kinds[:2] == ["connected", "disconnected"] and kinds[-1] == "connected"
    assert evs[1].detail["reason"] == "no notification for 1 s"
    assert kinds.count("connect_failed") >= 2
