"""Any input a device can send becomes a sample or one counted rejection with a reason; the stream
goes on. Out-of-order timestamps are rejected too."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.ble import BLESource
from sensors.serial_source import SerialSource
from sensors.source import open_source


@given(st.binary(max_size=30))
def test_any_notification_is_a_sample_or_a_counted_rejection(b):
    src = BLESource("ble://x", "x")
    evs = []
    src.on_event = evs.append
    s = src._sample(1.0, 2.0, b)
    if s is None:
        assert sum(src.rejected.values()) == 1 and len(evs) == 1 and evs[0].detail["bytes"] == b.hex()
    else:
        assert not src.rejected and s.t == 1.0 and s.wall == 2.0
        assert math.isnan(s.bpm) or 20 <= s.bpm <= 300
        assert all(150 <= r <= 3500 for r in s.rr_ms)


@given(st.sampled_from(["line", "csv"]), st.binary(max_size=60))
def test_any_serial_line_is_a_sample_or_a_counted_rejection(fmt, raw):
    src = SerialSource(f"serial://x?format={fmt}", "x", fmt=fmt)
    src.on_event = lambda ev: None
    s = src._sample(("line", 3.0, raw + b"\n"))
    if s is None:
        assert sum(src.rejected.values()) == 1
    else:
        assert not src.rejected and s.t == 3.0 and 20 <= s.bpm <= 300
        assert fmt == "csv" or s.rr_ms == ()


@pytest.fixture
def device(pty_device):
    """The serial device on a pseudo-terminal (conftest's one pty fixture)."""
    return pty_device


def test_out_of_order_timestamps_are_rejected(device):
    now = [10.0]
    src = open_source(f"serial://{device.link}?format=line", clock=lambda: now[0])
    step = threading.Semaphore(0)

    def write():
        for t, v in [(10.0, 70), (5.0, 71), (11.0, 72), (12.0, 73)]:
            now[0] = t
            device.line(str(v))
            assert step.acquire(timeout=30)

    def on_event(ev):
        if ev.kind == "connected":
            threading.Thread(target=write, daemon=True).start()
        elif ev.kind == "rejected":
            step.release()

    src.on_event = on_event
    got = []

    async def go():
        it = src.stream()
        src.on_event = on_event
        try:
            async for s in it:
                got.append(s)
                step.release()
                if len(got) == 3:
                    break
        finally:
            await it.aclose()
    asyncio.run(asyncio.wait_for(go(), 60))
    assert [(s.t, s.bpm) for s in got] == [(10.0, 70.0), (11.0, 72.0), (12.0, 73.0)]
    assert src.rejected == {"out-of-order": 1}
