"""Beat detection: exact beats on synthetic signals; any finite signal gives valid beat indices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sensors.beats import MIN_BEAT_S, BeatTracker, bpm_from_rr, detect_beats, rr_ms
from tests.sensors.waveforms import synthetic


@pytest.mark.parametrize("kind", ["ecg", "ppg"])
@pytest.mark.parametrize("bpm", [40, 90, 190])
def test_one_pass_finds_every_beat(kind, bpm):
    x, beats = synthetic(kind, bpm, 30, seed=bpm)
    idx = detect_beats(x, 250, kind)
    t = idx / 250
    # every true beat found once; the PPG peak lags the R wave by its systolic delay
    lag = 0.0 if kind == "ecg" else 0.18
    inner = beats[(beats > 1) & (beats < 29)]
    err = np.min(np.abs(t[None, :] - (inner[:, None] + lag)), axis=1)
    assert np.all(err < 0.03)
    assert abs(len(idx) - len(beats)) <= 1


def test_rr_and_bpm_helpers():
    assert rr_ms(np.array([0.0, 0.8, 1.6])).tolist() == pytest.approx([800.0, 800.0])
    assert bpm_from_rr(np.array([800.0, 1600.0, 800.0])) == pytest.approx(75.0)  # one missed beat
    assert np.isnan(bpm_from_rr(np.array([np.nan])))


def test_bad_settings():
    with pytest.raises(ValueError):
        BeatTracker(250, "eeg")
    with pytest.raises(ValueError):
        BeatTracker(20, "ecg")


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(0, 3000), elements=st.floats(-1e3, 1e3)), st.sampled_from(["ecg", "ppg"]))
def test_any_finite_signal_gives_valid_beats(x, kind):
    idx = detect_beats(x, 250, kind)
    assert np.all((idx >= 0) & (idx < max(len(x), 1)))
    assert np.all(np.diff(idx) >= int(MIN_BEAT_S * 250) - 2 * int(0.06 * 250))
    tr = BeatTracker(250, kind)
    for b in tr.push(x):
        assert b.rr_ms > 0 and np.isfinite(b.bpm)
