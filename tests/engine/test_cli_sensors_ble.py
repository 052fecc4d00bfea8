"""Done-when: `exposure sensors stream "ble://Polar H10" --count 40 --json` against a stand-in strap
prints exactly the HR and RR the strap sent, skips malformed notifications, survives a link loss
followed by a failed connect, and streams again promptly once the strap comes back."""

from __future__ import annotations

import struct

import pytest

from sensors.parsers import parse_hr_measurement
from tests.engine.sensors_cli_helpers import StreamChild
from tests.sensors.bluez_standin import BlueZStandIn

BAD = [b"", b"\x11\x48", b"\x16\x48\x54", b"\x08\x48\x01", b"\x06\x00\x05"]  # truncated, trailing, 0 bpm…


def payloads(n: int) -> tuple[list[bytes], set[bytes]]:
    """Valid notifications of every flag combination, with a malformed one every 6th."""
    out, bad = [], set()
    for i in range(n):
        if i % 6 == 5:
            b = BAD[(i // 6) % len(BAD)]
            out.append(b)
            bad.add(b)
            continue
        hr = 55 + (i * 7) % 90
        rr = [int(60 / hr * 1024) + k for k in range(i % 3)]
        flags = (i % 2) | (0x06 if i % 4 < 2 else 0x04 if i % 4 == 2 else 0) | (0x08 if i % 5 == 0 else 0)
        flags |= 0x10 if rr else 0
        b = bytes([flags]) + (struct.pack("<H", hr) if flags & 1 else bytes([hr]))
        if flags & 0x08:
            b += struct.pack("<H", 100 + i)
        b += b"".join(struct.pack("<H", r) for r in rr)
        out.append(b)
    return out, bad


@pytest.fixture
def strap(tmp_path):
    s = BlueZStandIn(tmp_path / "bluez").start()
    yield s
    s.stop()


def test_stream_ble_survives_link_loss_and_failed_connect(strap, capsys):
    sent, bad = payloads(400)
    strap.feed(sent, 0.05)
    child = StreamChild("sensors", "stream", "ble://Polar H10", "--count", "40", "--json",
                        env={**strap.env(), **_pythonpath()})
    try:
        child.wait_for(lambda: len(child.samples) >= 12)
        # the strap goes away: link lost, no longer advertising, and its next connect will fail
        strap.fail_next_connects(1)
        strap.advertise(False)
        scans = len(strap.events("scan-start"))
        strap.drop_link()
        child.wait_for(lambda: "disconnected" in child.kinds())
        assert strap.wait_for(lambda: len(strap.events("scan-start")) > scans, 30)  # looking for it
        strap.advertise(True)  # the strap comes back
        t_back = strap.events("advertise")[-1][0]
        rc = child.finish(90)
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.finish(10)
    assert rc == 0, child.other
    # exactly what the strap delivered, malformed ones skipped, in order
    delivered = [d for _, d in strap.events("notify")]
    good = [parse_hr_measurement(b) for b in delivered if b not in bad]
    assert len(child.samples) == 40
    got = [(s["bpm"], s["rr_ms"], s["contact"]) for s in child.samples]
    assert got == [(float(m.bpm), list(m.rr_ms), m.contact) for m in good[:40]]
    assert all(set(s) >= {"t", "bpm", "rr_ms", "contact", "quality"} for s in child.samples)
    # every malformed notification delivered before the 40th good one was rejected, with a reason
    upto = [b for b in delivered[:delivered.index(next(b for b in delivered if b not in bad and
                                                        parse_hr_measurement(b) == good[39])) + 1]]
    rejected = [e for e in child.events if e["event"] == "rejected"]
    assert len(rejected) == sum(b in bad for b in upto) > 0
    assert all(e["reason"] in ("empty", "truncated", "trailing", "impossible-bpm") for e in rejected)
    # link loss, then a failed connect, then connected again
    k = [x for x in child.kinds() if x != "rejected"]
    assert k[0] == "connected"
    assert k[1:] == ["disconnected", "reconnecting", "connect_failed", "reconnecting", "connected"], k
    # robust "within 5 s": after the strap came back there was exactly one failed connect, and the
    # only waits the source chose were its announced backoff delays (≤ 2 s, the cap)
    after = [w for t, w, _ in strap.log if t >= t_back and w in ("connect-failed", "connect", "subscribe")]
    assert after[:3] == ["connect-failed", "connect", "subscribe"]
    delays = [e["delay"] for e in child.events if e["event"] == "reconnecting"]
    assert delays == [0.5, 1.0]
    first = next(t for t, w, _ in strap.log if w == "notify" and t > t_back)
    with capsys.disabled():
        print(f"\n[ble] streaming again {first - t_back:.2f} s (stand-in time) after the strap came back")


def _pythonpath() -> dict:
    from tests.conftest import cli_env
    return {"PYTHONPATH": cli_env()["PYTHONPATH"]}
