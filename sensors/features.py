"""Signal processing and features: one implementation, vectorised over N patients.

The live session runs it with N = 1, one update per sample (and an update with no sample on
ticks where none came, so that loss of signal is noticed); the gymnasium env and the
evaluator run it over thousands of virtual patients at once, one update per simulated
second. The same arithmetic everywhere, so a policy sees in a session what it saw in training.

Inputs per update, each an array over patients:
    bpm      reported heart rate, NaN where no sample arrived this step
    rr       RR intervals in ms, shape (N, K), NaN-padded (K ≤ 3 for a chest strap)
    contact  1 contact, 0 no contact, -1 not reported

Outputs (:class:`FeatureFrame`):
    hr         accepted heart rate (bpm), NaN while no valid reading has been seen
    baseline   resting HR: mean of the valid HR in the first ``baseline_s`` seconds (or a
               calm period named with :meth:`FeatureBank.rebaseline`), then frozen
    hr_delta   hr − baseline (bpm)
    hr_slope   smoothed rate of change of HR (bpm/s)
    rmssd      root mean square of successive RR differences over the last
               ``rmssd_window`` intervals (ms), leaving out differences across a rejected
               one (an artefact breaks the chain); NaN until 2 successive differences
    quality    signal quality in [0, 1]: a moving share of valid readings and accepted RR
    lost       True when no valid reading came for ``lost_after_s`` seconds: loss of signal
               is a state, never just a missing number
    since_valid  seconds since the last valid reading

RR artefact rejection: physiological bounds (``min_rr_ms``…``max_rr_ms``: spurious short
intervals), then a jump test against a running reference (a missed beat doubles an interval,
an extra beat splits one); a jump is accepted when the reported bpm agrees with it, or when
``rr_reanchor`` rejected intervals in a row agree with one another (a real change of rhythm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureConfig:
    min_bpm: float = 30.0
    max_bpm: float = 220.0
    min_rr_ms: float = 273.0  # 220 bpm
    max_rr_ms: float = 2000.0  # 30 bpm
    rr_jump: float = 0.25  # reject an RR differing by more than 25% from the recent mean
    rr_reanchor: int = 4  # this many consecutive rejected RR that agree with each other: a real change
    baseline_s: float = 120.0
    rmssd_window: int = 16
    slope_tau_s: float = 8.0
    quality_tau_s: float = 10.0
    lost_after_s: float = 5.0


@dataclass(frozen=True)
class FeatureFrame:
    t: np.ndarray
    hr: np.ndarray
    baseline: np.ndarray
    hr_delta: np.ndarray
    hr_slope: np.ndarray
    rmssd: np.ndarray
    quality: np.ndarray
    lost: np.ndarray
    since_valid: np.ndarray
    rejected_rr: np.ndarray  # RR intervals rejected by this update, per patient

    def row(self, i: int = 0) -> dict:
        """One patient's features as plain floats (for logging and display)."""
        return {
            "t": float(self.t[i]),
            "hr": finite_or_none(self.hr[i]),
            "baseline": finite_or_none(self.baseline[i]),
            "hr_delta": finite_or_none(self.hr_delta[i]),
            "hr_slope": finite_or_none(self.hr_slope[i]),
            "rmssd": finite_or_none(self.rmssd[i]),
            "quality": float(self.quality[i]),
            "lost": bool(self.lost[i]),
            "since_valid": finite_or_none(self.since_valid[i]),
        }


def finite_or_none(x) -> float | None:
    """A number as a plain float, or None where it is NaN or infinite (JSON has neither): the one
    NaN → None rule for logs, the console and the CLI."""
    x = float(x)
    return x if math.isfinite(x) else None


class FeatureBank:
    """Feature state for N patients, updated in place."""

    def __init__(self, n: int = 1, config: FeatureConfig | None = None, t0: float = 0.0):
        self.n = n
        self.cfg = config or FeatureConfig()
        c = self.cfg
        nan = np.full(n, np.nan)
        self.t_last = np.full(n, t0, dtype=float)
        self.t_valid = np.full(n, t0, dtype=float)
        self.seen_valid = np.zeros(n, dtype=bool)
        self.hr = nan.copy()
        self.slope = np.zeros(n)
        self.quality = np.zeros(n)
        self.base_sum = np.zeros(n)
        self.base_n = np.zeros(n)
        self.base_start = np.full(n, t0, dtype=float)
        self.base_frozen = np.zeros(n, dtype=bool)
        self.baseline = nan.copy()
        self.rr_buf = np.full((n, c.rmssd_window), np.nan)
        self.rr_mean = nan.copy()
        self.rej_run = np.zeros(n, dtype=np.int32)  # consecutive jump-rejected RR that agree
        self.rej_ref = nan.copy()  # their running mean

    def rebaseline(self, t: float, mask: np.ndarray | None = None) -> None:
        """Start a new resting baseline at ``t`` (e.g. during a calm period)."""
        m = np.ones(self.n, dtype=bool) if mask is None else mask
        self.base_sum[m] = 0.0
        self.base_n[m] = 0.0
        self.base_start[m] = t
        self.base_frozen[m] = False

    def update(self, t: float, bpm: np.ndarray, rr: np.ndarray | None = None,
               contact: np.ndarray | None = None, mask: np.ndarray | None = None) -> FeatureFrame:
        """Advance the features to ``t`` with this step's readings.

        ``mask`` (bool over patients, optional): only these patients take part in the update;
        the others keep their state exactly as if no update had happened (the evaluator uses
        it to mirror a live session, where features advance only on samples and decisions).
        Their rows of the returned frame describe their unchanged state at ``t``.
        """
        if mask is not None:
            mask = np.asarray(mask, dtype=bool).reshape(self.n)
            if not mask.all():
                keep = ~mask
                saved = {k: v[keep].copy() for k, v in vars(self).items() if isinstance(v, np.ndarray)}
                frame = self._update(t, bpm, rr, contact)
                for k, v in saved.items():
                    getattr(self, k)[keep] = v
                return self._masked_frame(frame, t, keep)
        return self._update(t, bpm, rr, contact)

    def _masked_frame(self, f: FeatureFrame, t: float, keep: np.ndarray) -> FeatureFrame:
        since = np.where(self.seen_valid, t - self.t_valid, np.inf)
        lost = np.where(keep, since > self.cfg.lost_after_s, f.lost)
        d = np.diff(self.rr_buf[keep], axis=1)
        cnt = np.sum(~np.isnan(d), axis=1)
        with np.errstate(invalid="ignore"):
            r = np.sqrt(np.nansum(d * d, axis=1) / np.maximum(cnt, 1))
        rmssd = f.rmssd.copy()
        rmssd[keep] = np.where(cnt >= 2, r, np.nan)
        rej = f.rejected_rr.copy()
        rej[keep] = 0
        pick = lambda new, old: np.where(keep, old, new)  # noqa: E731
        return FeatureFrame(f.t, pick(f.hr, self.hr), pick(f.baseline, self.baseline),
                            pick(f.hr_delta, self.hr - self.baseline), pick(f.hr_slope, self.slope), rmssd,
                            pick(f.quality, self.quality), lost, np.where(keep, since, f.since_valid), rej)

    def _update(self, t: float, bpm: np.ndarray, rr: np.ndarray | None,
                contact: np.ndarray | None) -> FeatureFrame:
        c = self.cfg
        n = self.n
        bpm = np.asarray(bpm, dtype=float).reshape(n)
        dt = np.maximum(t - self.t_last, 1e-6)
        self.t_last[:] = t
        got = ~np.isnan(bpm)
        if contact is None:
            contact = np.full(n, -1, dtype=np.int8)
        contact = np.asarray(contact).reshape(n)
        in_range = (bpm >= c.min_bpm) & (bpm <= c.max_bpm)
        valid = got & in_range & (contact != 0)

        # RR artefact rejection: physiological bounds, then a jump test against the recent
        # mean (missed beats double an interval, extra beats split one).
        rejected = np.zeros(n, dtype=np.int32)
        if rr is not None and rr.size:
            rr = np.asarray(rr, dtype=float).reshape(n, -1)
            for k in range(rr.shape[1]):
                x = rr[:, k]
                present = ~np.isnan(x) & (contact != 0)
                ok = present & (x >= c.min_rr_ms) & (x <= c.max_rr_ms)
                ref = self.rr_mean
                have_ref = ~np.isnan(ref)
                jump = have_ref & (np.abs(x - ref) > c.rr_jump * np.where(have_ref, ref, 1.0))
                # When the reported bpm disagrees with the old reference but agrees with x, the
                # rhythm really changed: accept and re-anchor.
                agrees_bpm = got & (np.abs(60000.0 / np.where(ok, x, 1.0) - bpm) < 0.2 * bpm)
                in_bounds = ok.copy()
                ok &= ~jump | agrees_bpm
                # A run of rejected intervals that agree with one another is a real change of
                # rhythm the reference has not followed (e.g. no bpm reported): re-anchor on it.
                # Missed or extra beats do not form such runs: a normal beat breaks them.
                jumped = in_bounds & ~ok
                if jumped.any() or self.rej_run.any():  # (rej_run == 0 ⇔ rej_ref is NaN)
                    rr_ref = self.rej_ref
                    agree = jumped & ~np.isnan(rr_ref) & \
                        (np.abs(x - rr_ref) <= 0.5 * c.rr_jump * np.where(np.isnan(rr_ref), 1.0, rr_ref))
                    self.rej_run = np.where(jumped, np.where(agree, self.rej_run + 1, 1),
                                            np.where(present, 0, self.rej_run)).astype(np.int32)
                    self.rej_ref = np.where(jumped, np.where(agree, 0.5 * rr_ref + 0.5 * x, x),
                                            np.where(present, np.nan, self.rej_ref))
                    reanchor = jumped & (self.rej_run >= c.rr_reanchor)
                    ok |= reanchor
                    jump |= reanchor
                    self.rej_run[reanchor] = 0
                    self.rej_ref[reanchor] = np.nan
                bad = present & ~ok
                rejected += bad.astype(np.int32)
                # RMSSD uses successive differences only: an artefact breaks the chain (NaN).
                mark = ok | bad
                if mark.any():
                    self.rr_buf[mark, :-1] = self.rr_buf[mark, 1:]
                    self.rr_buf[mark, -1] = np.where(ok[mark], x[mark], np.nan)
                    self.rr_mean = np.where(ok, np.where(np.isnan(ref) | jump, x, 0.8 * ref + 0.2 * x),
                                            self.rr_mean)

        # Heart rate and its slope.
        prev = self.hr
        new_hr = np.where(valid, bpm, prev)
        first = valid & ~self.seen_valid
        a = 1.0 - np.exp(-dt / c.slope_tau_s)
        inst = np.where(valid & ~first & ~np.isnan(prev), (new_hr - prev) / np.maximum(dt, 1.0), 0.0)
        self.slope = np.where(valid, self.slope + a * (inst - self.slope), self.slope)
        self.hr = new_hr
        self.seen_valid |= valid
        self.t_valid = np.where(valid, t, self.t_valid)

        # Baseline: running mean over the baseline window, then frozen.
        in_window = valid & ~self.base_frozen & (t - self.base_start <= c.baseline_s)
        self.base_sum += np.where(in_window, bpm, 0.0)
        self.base_n += in_window
        closing = ~self.base_frozen & (t - self.base_start > c.baseline_s) & (self.base_n > 0)
        self.base_frozen |= closing
        self.baseline = np.where(self.base_n > 0, self.base_sum / np.maximum(self.base_n, 1), np.nan)

        # Quality: a moving share of valid readings with accepted RR.
        score = valid.astype(float)
        if rr is not None and rr.size:
            n_rr = np.sum(~np.isnan(rr), axis=1)
            score = score * np.where(n_rr > 0, 1.0 - rejected / np.maximum(n_rr, 1), 1.0)
        step = got | (t - self.t_valid >= 1.0)
        aq = 1.0 - np.exp(-dt / c.quality_tau_s)
        self.quality = np.where(step, self.quality + aq * (score - self.quality), self.quality)

        since = np.where(self.seen_valid, t - self.t_valid, np.inf)
        lost = since > c.lost_after_s
        self.quality = np.where(lost, 0.0, self.quality)

        d = np.diff(self.rr_buf, axis=1)
        cnt = np.sum(~np.isnan(d), axis=1)
        with np.errstate(invalid="ignore"):
            rmssd = np.sqrt(np.nansum(d * d, axis=1) / np.maximum(cnt, 1))
        rmssd = np.where(cnt >= 2, rmssd, np.nan)

        tt = np.full(n, t, dtype=float)
        return FeatureFrame(tt, self.hr.copy(), self.baseline.copy(), self.hr - self.baseline,
                            self.slope.copy(), rmssd, self.quality.copy(), lost, since, rejected)
