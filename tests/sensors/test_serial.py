"""The serial source through real pseudo-terminals (and TCP), and the waveform path."""

from __future__ import annotations

import asyncio
import socket
import threading

import numpy as np
import pytest

from sensors.errors import SourceURLError
from sensors.reconnect import Backoff
from sensors.source import open_source
from tests.sensors.waveforms import synthetic


async def _run(src, n, on_event=None, timeout=60.0):
    out = []
    src.on_event = on_event or (lambda ev: None)

    async def go():
        it = src.stream()
        try:
            async for s in it:
                out.append(s)
                if len(out) >= n:
                    break
        finally:
            await it.aclose()
    await asyncio.wait_for(go(), timeout)
    return out


def _when_connected(write):
    """on_event that runs ``write`` in a thread once the source has opened the port."""
    def on_event(ev):
        if ev.kind == "connected":
            threading.Thread(target=_writer_ok(write), daemon=True).start()
    return on_event


@pytest.mark.parametrize("kind,bpm", [("ecg", 62), ("ecg", 128), ("ppg", 75), ("ppg", 150)])
def test_waveform_recovers_the_true_rate(pty_device, kind, bpm):
    fs = 250
    x, beats = synthetic(kind, bpm, 40, fs=fs, seed=bpm)
    lines = "".join(f"{v:.4f}\r\n" for v in x).encode()

    def write():
        for i in range(0, len(lines), 4096):
            pty_device.write(lines[i:i + 4096])

    src = open_source(f"serial://{pty_device.link}?format=waveform&fs={fs}&signal={kind}")
    n = int(30 * bpm / 60)
    got = asyncio.run(_run(src, n, _when_connected(write)))
    assert len(got) == n and src.rejected == {}
    # line the reported beats up with the true ones (the stream's clock starts at an unknown offset)
    rel = np.array([s.t for s in got]) - got[0].t
    err = [np.mean(np.min(np.abs(beats[:, None] - (b0 + rel)[None, :]), axis=0)) for b0 in beats]
    b0 = beats[int(np.argmin(err))]
    for s, r in zip(got, rel, strict=True):
        j = int(np.argmin(np.abs(beats - (b0 + r))))
        assert abs(beats[j] - (b0 + r)) < 0.02  # every beat found within 20 ms
        if j >= 6 and s is not got[0]:
            assert s.rr_ms[0] == pytest.approx((beats[j] - beats[j - 1]) * 1000, abs=25)
        if s in got[5:]:
            true_bpm = 60000 / np.median(np.diff(beats[j - 5:j + 1]) * 1000)
            assert s.bpm == pytest.approx(true_bpm, abs=2)


def _writer_ok(fn):
    def run():
        try:
            fn()
        except OSError:  # the test is over and the device gone
            pass
    return run


def test_line_format_junk_and_binary_noise_are_rejected(pty_device):
    lines = [b"72\r\n", b"\xff\xfe\x00\x01\r\n", b"73.5\n", b"\r\n", b"fast\r\n", b"0\r\n", b"74\r\n",
             b"x" * 2000 + b"\r\n", b"75\r\n"]

    def write():
        for ln in lines:
            pty_device.write(ln)

    src = open_source(f"serial://{pty_device.link}?format=line&baud=9600")
    got = asyncio.run(_run(src, 4, _when_connected(write)))
    assert [s.bpm for s in got] == [72.0, 73.5, 74.0, 75.0]
    assert all(s.rr_ms == () and s.contact is None for s in got)
    assert src.rejected == {"binary": 1, "empty": 1, "not-a-number": 1, "impossible-bpm": 1, "too-long": 1}


def test_socket_url(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    opened = threading.Event()

    def serve():
        c, _ = srv.accept()
        opened.wait(30)  # pyserial's socket:// open() discards what arrived before it returned
        c.sendall(b"61,983\n62,967.7\njunk\n63\n")
        c.recv(1)  # until the client goes
        c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    src = open_source(f"socket://127.0.0.1:{port}?format=csv")
    got = asyncio.run(_run(src, 3, lambda ev: ev.kind == "connected" and opened.set()))
    th.join(10)
    srv.close()
    assert [(s.bpm, s.rr_ms) for s in got] == [(61.0, (983.0,)), (62.0, (967.7,)), (63.0, ())]
    assert src.rejected == {"not-a-number": 1}


def test_reopen_after_unplug(pty_device):
    evs = []
    sent = iter(range(60, 90))

    def write():
        pty_device.line(str(next(sent)))
        pty_device.line(str(next(sent)))

    def on_event(ev):
        evs.append(ev)
        if ev.kind == "connected":
            threading.Thread(target=write, daemon=True).start()

    src = open_source(f"serial://{pty_device.link}?format=line")
    done = []

    async def go():
        it = src.stream()
        src.on_event = on_event
        try:
            async for s in it:
                done.append(s.bpm)
                if len(done) % 2 == 0 and len(done) < 6:
                    await asyncio.to_thread(pty_device.unplug)
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(pty_device.plug)
                if len(done) >= 6:
                    break
        finally:
            await it.aclose()
    asyncio.run(asyncio.wait_for(go(), 60))
    assert done == [60.0, 61.0, 62.0, 63.0, 64.0, 65.0]
    kinds = [e.kind for e in evs]
    assert kinds.count("connected") == 3 and kinds.count("disconnected") == 2


def test_bad_urls():
    for url, word in [("serial://", "port"), ("serial:///dev/x?format=xml", "format"),
                      ("serial:///dev/x?format=waveform", "fs="), ("serial:///dev/x?baud=fast", "number"),
                      ("serial:///dev/x?format=waveform&fs=10", "too low"), ("serial:///dev/x?parity=E", "parity"),
                      ("serial:///dev/x?format=waveform&fs=250&signal=eeg", "ecg or ppg")]:
        with pytest.raises(SourceURLError, match=word):
            open_source(url)


def test_backoff_doubles_to_its_cap_and_resets():
    b = Backoff(0.25, 1.0)
    assert [b.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.25
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
