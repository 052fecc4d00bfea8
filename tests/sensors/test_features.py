"""Feature values: baseline, delta, slope, RMSSD, artefact rejection, quality, loss of signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.features import FeatureBank, FeatureConfig
from tests.fixtures import make_features_reference as features_reference

NAN = np.nan


def feed(bank, t, bpm, rr=(), contact=-1):
    r = np.full((1, max(1, len(rr))), NAN)
    r[0, :len(rr)] = rr
    return bank.update(t, np.array([bpm], dtype=float), r, np.array([contact], dtype=np.int8))


def test_baseline_then_delta():
    b = FeatureBank(1)
    for t in range(1, 121):
        f = feed(b, float(t), 70.0 if t % 2 else 72.0)
    assert f.baseline[0] == pytest.approx(71.0)
    for t in range(121, 200):
        f = feed(b, float(t), 95.0)
    assert f.baseline[0] == pytest.approx(71.0)  # frozen after baseline_s
    assert f.hr[0] == 95.0 and f.hr_delta[0] == pytest.approx(24.0)
    b.rebaseline(200.0)
    for t in range(201, 260):
        f = feed(b, float(t), 80.0)
    assert f.baseline[0] == pytest.approx(80.0)


def test_slope_follows_a_ramp():
    b = FeatureBank(1)
    for t in range(1, 80):
        f = feed(b, float(t), 60.0 + 0.5 * t)
    assert f.hr_slope[0] == pytest.approx(0.5, abs=0.01)
    for t in range(80, 160):
        f = feed(b, float(t), 100.0)
    assert abs(f.hr_slope[0]) < 0.01


def test_rmssd_value():
    b = FeatureBank(1)
    rr = [800.0, 850.0] * 10
    for i, x in enumerate(rr):
        f = feed(b, float(i + 1), 73.0, [x])
    assert f.rmssd[0] == pytest.approx(50.0)
    assert f.rejected_rr[0] == 0


def _steady(b, n=10, rr=800.0, bpm=75.0):
    for i in range(n):
        f = feed(b, float(i + 1), bpm, [rr])
    return f, float(n)


def test_missed_and_extra_beats_and_short_spikes_are_rejected():
    b = FeatureBank(1)
    _, t = _steady(b)
    f = feed(b, t + 1, 75.0, [1600.0])  # a missed beat
    assert f.rejected_reasons() == {"missed": 1}
    f = feed(b, t + 2, 75.0, [400.0, 400.0])  # an extra beat splits one interval
    assert f.rejected_reasons() == {"extra": 2}
    f = feed(b, t + 3, 75.0, [120.0])  # a spurious short interval: settled with the next one
    assert f.rejected_rr[0] == 0
    f = feed(b, t + 4, 75.0, [680.0])  # …which it split from a normal one
    assert f.rejected_reasons() == {"extra": 2}
    f = feed(b, t + 5, 75.0, [1200.0])  # too long, and no whole multiple of the reference
    assert f.rejected_reasons() == {"long": 1}
    for k in range(4):
        f = feed(b, t + 6 + k, 75.0, [810.0 if k % 2 else 790.0])
    assert f.rejected_rr[0] == 0
    # RMSSD only over successive accepted intervals: in the 16-interval window, 5 differences of
    # 0 among the 800s and 3 of 20 ms; none across the artefacts
    assert f.rmssd[0] == pytest.approx(np.sqrt(3 * 20.0 ** 2 / 8))
    assert f.hr[0] == pytest.approx(60000.0 / np.mean([800.0, 790.0, 810.0, 790.0, 810.0]))


def test_ectopic_beat_and_its_pause_stay_out_of_hr_and_rmssd():
    b = FeatureBank(1)
    f, t = _steady(b)
    assert f.rmssd[0] == pytest.approx(0.0)
    f = feed(b, t + 1, 75.0, [600.0])  # premature (25 % early)…
    assert f.rejected_rr[0] == 0 and f.hr[0] == pytest.approx(75.0)
    f = feed(b, t + 2, 75.0, [1000.0])  # …and the compensatory pause
    assert f.rejected_reasons() == {"ectopic": 2}
    assert f.hr[0] == pytest.approx(75.0) and f.rmssd[0] == pytest.approx(0.0)
    # a premature beat without a full pause (sum 1.95 references) is ectopic as well
    f = feed(b, t + 3, 75.0, [640.0])
    f = feed(b, t + 4, 75.0, [920.0])
    assert f.rejected_reasons() == {"ectopic": 2}
    # one too close to the rhythm to be held (7.5 % early) is taken back when its pause comes
    f = feed(b, t + 4.5, 75.0, [740.0])
    assert f.rejected_rr[0] == 0 and b.rr_buf[0, -1] == 740.0
    f = feed(b, t + 4.7, 75.0, [1000.0])
    assert f.rejected_reasons() == {"ectopic": 2}
    assert 740.0 not in b.rr_buf[0] and f.hr[0] == pytest.approx(75.0)
    # a merely short interval (sinus arrhythmia) is accepted once the next one shows no pattern
    f = feed(b, t + 5, 75.0, [690.0])
    f = feed(b, t + 6, 75.0, [760.0])
    assert f.rejected_rr[0] == 0 and np.nanmin(b.rr_buf) == 690.0


def test_hr_comes_from_accepted_rr_not_the_device_bpm():
    b = FeatureBank(1)
    f, t = _steady(b, rr=800.0, bpm=90.0)  # a device whose bpm disagrees with its own RR
    assert f.hr[0] == pytest.approx(75.0) and f.baseline[0] == pytest.approx(75.0)
    f = feed(b, t + 1, 140.0, [1600.0])  # a missed beat with a bpm built from it: HR holds
    assert f.hr[0] == pytest.approx(75.0) and f.rejected_reasons() == {"missed": 1}
    f = feed(b, t + 2, 66.0)  # no RR in this reading: the reported bpm it is
    assert f.hr[0] == pytest.approx(66.0)


def test_real_change_of_rhythm_without_bpm_is_followed():
    b = FeatureBank(1)
    for i in range(10):
        feed(b, float(i + 1), NAN, [800.0])
    rej = []
    for i in range(10):
        rej.append(int(feed(b, float(11 + i), NAN, [560.0 + (i % 2) * 10]).rejected_rr[0]))
    cfg = FeatureConfig()
    # each short interval waits for the next one (no ectopic or extra pattern), then is judged alone
    assert rej == [0] + [1] * (cfg.rr_reanchor - 1) + [0] * (10 - cfg.rr_reanchor)
    assert b.rr_mean[0] == pytest.approx(565.0, abs=10.0)
    # alternating missed beats never form such a run
    b = FeatureBank(1)
    for i in range(10):
        feed(b, float(i + 1), NAN, [800.0])
    rej = [int(feed(b, float(11 + i), NAN, [1600.0 if i % 2 == 0 else 800.0]).rejected_rr[0]) for i in range(12)]
    assert rej == [1, 0] * 6


def test_contact_and_bounds_and_loss_of_signal():
    b = FeatureBank(1)
    f = feed(b, 1.0, 72.0, contact=0)
    assert np.isnan(f.hr[0]) and f.quality[0] == 0.0
    for t in range(2, 40):
        f = feed(b, float(t), 72.0, contact=1)
    q = f.quality[0]
    assert 0.95 < q <= 1.0 and not f.lost[0]
    f = feed(b, 40.0, 260.0)  # out of bounds: not valid
    assert f.hr[0] == 72.0
    f = b.update(44.0, np.array([NAN]))
    assert not f.lost[0] and f.since_valid[0] == pytest.approx(5.0)
    f = b.update(45.5, np.array([NAN]))
    assert f.lost[0] and f.quality[0] == 0.0 and f.since_valid[0] == pytest.approx(6.5)
    f = feed(b, 46.0, 72.0)
    assert not f.lost[0]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 400), st.lists(st.floats(0, 4000), max_size=3),
                          st.sampled_from([-1, 0, 1])), min_size=1, max_size=40), st.integers(2, 5))
def test_vectorised_equals_one_by_one(stream, n):
    """N patients in one bank give exactly what N banks of one give (the evaluator vs live)."""
    banks = [FeatureBank(1) for _ in range(n)]
    big = FeatureBank(n)
    for i, (bpm, rr, contact) in enumerate(stream):
        t = float(i + 1)
        bpms = np.array([bpm + k for k in range(n)])
        rrs = np.full((n, 3), NAN)
        for k in range(n):
            rrs[k, :len(rr)] = [x * (1 + 0.1 * k) for x in rr]
        cs = np.array([contact] * n, dtype=np.int8)
        fb = big.update(t, bpms, rrs, cs)
        for k in range(n):
            f1 = banks[k].update(t, bpms[k:k + 1], rrs[k:k + 1], cs[k:k + 1])
            for name in ("hr", "baseline", "hr_slope", "rmssd", "quality", "lost", "rejected_rr", "rejected_by"):
                a, c = getattr(fb, name)[k], getattr(f1, name)[0]
                assert np.array_equal(a, c, equal_nan=True) or a == pytest.approx(c), name


def test_the_kernel_gives_the_numpy_features_to_the_bit():
    """A hard stream (artefacts of every kind, lost contact, gaps, masked updates) gives exactly the frames
    the numpy FeatureBank gave before the compiled kernel (stored: tests/fixtures/make_features_reference.py)."""
    ref = np.load(Path(__file__).parents[1] / "fixtures" / "features_reference.npz")
    got = features_reference.run(FeatureBank(features_reference.N))
    for k in features_reference.FIELDS:
        assert np.array_equal(got[k], ref[k], equal_nan=True), k
    # the stream exercises every rejection reason, loss of signal and its recovery
    assert (ref["rejected_by"].sum(axis=(0, 1)) > 0).all()
    assert ref["lost"].any() and not ref["lost"][-1].all()


def _from_buffer(buf: np.ndarray) -> tuple[float, float]:
    """RMSSD and the median |successive difference| of one lane's RR buffer, by numpy from scratch."""
    d = np.diff(buf)
    d = d[~np.isnan(d)]
    rmssd = float(np.sqrt(np.mean(d * d))) if len(d) >= 2 else NAN
    mad = float(np.median(np.abs(d))) if len(d) >= 4 else NAN
    return rmssd, mad


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(300, 1800), st.floats(0.5, 1.6), st.integers(0, 3), st.booleans(),
                          st.floats(0, 9)), min_size=1, max_size=80))
def test_sorted_differences_follow_the_buffer(stream):
    """The differences kept sorted as the buffer shifts (ectopic take-backs, losses, masked lanes) give the
    RMSSD and the median absolute difference that computing them afresh from the buffer gives."""
    b = FeatureBank(2)
    t = 0.0
    for rr0, jitter, k, masked, gap in stream:
        t += 1.0 + (gap if gap > 7 else 0.0)  # now and then a gap longer than the loss of signal
        rr = np.full((2, 3), NAN)
        rr[:, :k] = [rr0 * jitter ** (j % 2) for j in range(k)]
        f = b.update(t, np.array([60000.0 / rr0] * 2), rr, np.ones(2, np.int8),
                     mask=np.array([True, not masked]))
        for i in range(2):
            rmssd, mad = _from_buffer(b.rr_buf[i])
            assert np.array_equal(f.rmssd[i], rmssd, equal_nan=True) or f.rmssd[i] == pytest.approx(rmssd, rel=1e-12)
            assert np.array_equal(b.nn_mad[i], mad, equal_nan=True) or b.nn_mad[i] == pytest.approx(mad, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(300, 1800), st.floats(0.5, 1.6), st.integers(0, 3), st.booleans(),
                          st.booleans(), st.floats(0, 9)), min_size=1, max_size=80))
def test_rmssd_left_for_later_is_the_same_to_the_bit(stream):
    """Updates with rmssd=False (the simulator's readings) leave the bank where updates computing RMSSD
    leave it, and the RMSSD computed later (by an update that asks for it, or rmssd_now) is the one every
    update would have given, for lanes in and out of the update's mask."""
    eager, lazy = FeatureBank(2), FeatureBank(2)
    t = 0.0
    for rr0, jitter, k, masked, want, gap in stream:
        t += 1.0 + (gap if gap > 7 else 0.0)
        rr = np.full((2, 3), NAN)
        rr[:, :k] = [rr0 * jitter ** (j % 2) for j in range(k)]
        args = (t, np.array([60000.0 / rr0] * 2), rr, np.ones(2, np.int8))
        mask = np.array([True, not masked])
        fe = eager.update(*args, mask=mask)
        fl = lazy.update(*args, mask=mask, rmssd=want)
        assert (fl.rmssd is None) == (not want)
        if want:  # the lanes left stale by earlier updates too
            assert np.array_equal(fl.rmssd, fe.rmssd, equal_nan=True)
        elif gap < 3:  # now and then asked for between updates; otherwise left for a later update
            assert np.array_equal(lazy.rmssd_now(), fe.rmssd, equal_nan=True)
        for k_ in ("hr", "baseline", "hr_delta", "hr_slope", "quality", "lost", "since_valid", "rejected_by"):
            assert np.array_equal(getattr(fl, k_), getattr(fe, k_), equal_nan=True), k_
        assert np.array_equal(lazy.nn_mad, eager.nn_mad, equal_nan=True)
        assert np.array_equal(lazy.d_cnt, eager.d_cnt)
