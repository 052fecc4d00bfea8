"""Beat detection edge cases on synthetic signals: wide beats, big dicrotic waves, flat lines, noise."""

from __future__ import annotations

import numpy as np
import pytest

from sensors.beats import BeatTracker, detect_beats
from tests.sensors.waveforms import synthetic

FS = 250.0


def _wide_beats(x: np.ndarray, beats: np.ndarray, every: int = 3) -> np.ndarray:
    """Replace every ``every``-th beat's QRS by a wide (≈ 160 ms), negative, slow ventricular complex."""
    t = np.arange(x.size) / FS
    y = x.copy()
    for b in beats[1::every]:
        m = np.abs(t - b) < 0.25
        y[m] -= 1.0 * np.exp(-0.5 * ((t[m] - b) / 0.008) ** 2)  # remove the narrow R
        y[m] += -1.4 * np.exp(-0.5 * ((t[m] - b) / 0.045) ** 2)  # a wide, deep complex
    return y


def _stream(x, kind, fs=FS):
    tr = BeatTracker(fs, kind)
    out, status = [], []
    for i in range(0, x.size, 25):
        out += tr.push(x[i:i + 25])
        status.append(tr.status)
    return out, status, tr


def test_wide_ventricular_beats_are_found_as_well_as_narrow_ones():
    x, beats = synthetic("ecg", 75, 60, fs=FS, seed=3)
    y = _wide_beats(x, beats)
    idx = detect_beats(y, FS, "ecg") / FS
    inner = beats[(beats > 1) & (beats < 59)]
    err = np.min(np.abs(idx[None, :] - inner[:, None]), axis=1)
    assert np.all(err < 0.06), inner[err >= 0.06]  # every beat, wide ones within 60 ms of their centre
    assert len(idx) == pytest.approx(len(beats), abs=1)


@pytest.mark.parametrize("bpm", [55, 80, 120])
def test_a_dicrotic_wave_as_high_as_the_pulse_does_not_double_the_rate(bpm, monkeypatch):
    import tests.sensors.waveforms as w

    monkeypatch.setattr(w, "PPG_WAVES", [(0.18, 0.07, 1.0), (0.42, 0.06, 0.8)])
    x, beats = w.synthetic("ppg", bpm, 40, fs=100.0, seed=bpm)
    got, _, _ = _stream(x, "ppg", fs=100.0)
    bpms = np.array([b.bpm for b in got[5:]])
    assert bpms.size > 10 and np.all(np.abs(bpms - bpm) < 0.1 * bpm), bpms


@pytest.mark.parametrize("seed", range(5))
def test_noise_without_a_finger_gives_no_beat(seed):
    x = np.random.default_rng(seed).normal(512, 3, int(60 * 100)).round()  # an idle optical sensor
    got, status, _ = _stream(x, "ppg", fs=100.0)
    assert got == [] and status[-1] in ("no-beats", "shape", "rate")


def test_flat_line_stops_beats_and_no_interval_spans_it():
    x, beats = synthetic("ecg", 70, 60, fs=FS, seed=5)
    x[int(20 * FS):int(32 * FS)] = 0.0  # lead off: the amplifier at a rail for 12 s
    got, status, tr = _stream(x, "ecg")
    t = np.array([b.t for b in got])
    assert not np.any((t > 20) & (t < 32))
    assert "flat" in status and status[-1] == ""
    # after the gap the chain restarts: no interval longer than a normal one is reported
    assert max(b.rr_ms for b in got) < 1.2 * 60000 / 70
    assert np.sum(t > 32) >= 20  # and beats come back
