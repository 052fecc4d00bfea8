"""`exposure sensors stream serial://…?format=waveform --json` on a real ECG with frequent ventricular
ectopic beats, sent through a pseudo-terminal as the device would: every sample carries the RR intervals
left out per reason, the heart rate comes from the accepted ones, and a summary by reason ends the run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sensors.beats import BeatTracker
from sensors.features import FeatureBank
from tests.engine.sensors_cli_helpers import StreamChild
from tests.sensors.beat_reference import load


@pytest.fixture
def device(pty_device):
    """The serial device on a pseudo-terminal (conftest's one pty fixture)."""
    return pty_device


def _send(device, data: bytes) -> None:
    """Send as a device does; the stream stops reading after --count samples and closes the port."""
    try:
        device.write(data, timeout=5.0)
    except OSError:
        pass


def test_stream_real_ecg_with_ectopic_beats(device):
    x, fs = load("ecg_mitdb208")
    x = x[int(130 * fs):int(180 * fs)]  # 50 s with ectopic beats at 136, 139, 143, 146, 149, 160 and 165 s
    child = StreamChild("sensors", "stream", f"serial://{device.link}?format=waveform&fs={fs:g}&signal=ecg",
                        "--count", "60", "--json")
    lines = "".join(f"{int(v)}\r\n" for v in x).encode()
    try:
        child.wait_for(lambda: child.count("connected") >= 1)
        writer = threading.Thread(target=_send, args=(device, lines), daemon=True)
        writer.start()
        rc = child.finish(300)
        writer.join(30)
    finally:
        if not child.proc.stdout.closed:
            child.finish(10)  # (kills the child if still running, and closes its pipes)
    assert rc == 0, child.other
    s = child.samples
    assert len(s) == 60 and all("rr_rejected_by" in d for d in s)
    by = {}
    for d in s:
        assert d["rr_rejected"] == sum(d["rr_rejected_by"].values())
        for k, v in d["rr_rejected_by"].items():
            by[k] = by.get(k, 0) + v
    assert by.get("ectopic", 0) >= 2, by
    # the heart rate is that of the accepted intervals, exactly as the direct path computes it
    tr, bank, hr = BeatTracker(fs, "ecg"), FeatureBank(1), []
    for b in tr.push(x)[:60]:
        hr.append(bank.update(b.t, np.array([round(b.bpm, 1)]), np.array([[round(b.rr_ms, 1)]])).hr[0])
    assert [d["hr"] for d in s] == pytest.approx(hr, abs=1e-3)
    summary = [ln for ln in child.other if ln.startswith("exposure: RR intervals left out")]
    assert summary and f"ectopic {by['ectopic']}" in summary[0], child.other
