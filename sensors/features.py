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

Heart rate: whenever a reading carries RR intervals, ``hr`` is 60000 / the mean of the last
``hr_beats`` accepted normal-to-normal (NN) intervals, not the device's bpm (which may be built from
rejected intervals); a reading without RR uses the reported bpm. The baseline is built from ``hr``.

RR intervals are classified one by one against a running reference (a mean of accepted NN), after
the Kubios scheme of Lipponen & Tarvainen (2019, J Med Eng Technol 43:173) reduced to what can be
decided one interval late, vectorised over patients:

- an interval ``hold_short`` shorter than the reference (or ``ectopic_mad`` median absolute
  successive NN differences, where this heart varies more) waits for the next one: the pair is
  *ectopic* when the next is as much longer (``ectopic_long``) and the two sum to two references (a
  premature beat and its compensatory pause), *extra* when they sum to one reference (a split
  interval: an interpolated ectopic beat or a spurious detection); otherwise the short one is
  judged alone. A long interval right after an accepted one shorter than its reference makes both
  *ectopic*: the short one is taken back out of the NN intervals (it reached one HR update at most);
- *missed*: an interval within ``pair_tol`` of a whole multiple (≥ 2) of the reference;
- *long* / *short*: outside ``min_rr_ms``…``max_rr_ms``, or more than ``rr_jump`` from the reference
  (20 %, the rule of Malik et al. 1989), unless the reported bpm agrees with the new interval or
  ``rr_reanchor`` rejected intervals in a row agree with one another (a real change of rhythm:
  accepted, the reference re-anchored).

Rejected intervals count per reason (``FeatureFrame.rejected_by``, :data:`REASONS`) and are left
out of HR and of RMSSD (a rejected interval breaks the chain of successive differences). After a
loss of signal the intervals start afresh: no difference, and no HR, spans the gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Why an RR interval was left out of HR and RMSSD (counted per update in ``FeatureFrame.rejected_by``).
REASONS = ("ectopic", "missed", "extra", "long", "short")
R_ECTOPIC, R_MISSED, R_EXTRA, R_LONG, R_SHORT = range(len(REASONS))


@dataclass(frozen=True)
class FeatureConfig:
    min_bpm: float = 30.0
    max_bpm: float = 220.0
    min_rr_ms: float = 273.0  # 220 bpm
    max_rr_ms: float = 2000.0  # 30 bpm
    rr_jump: float = 0.20  # reject an RR differing by more than 20 % from the reference (Malik et al. 1989)
    rr_reanchor: int = 4  # this many consecutive rejected RR that agree with each other: a real change
    hold_short: float = 0.12  # an RR this much shorter than the reference waits for the next one…
    ectopic_mad: float = 4.0  # …or this many median absolute successive differences of NN, if more
    ectopic_long: float = 0.12  # a short-then-long pair is ectopic when the long one is this much longer
    pair_tol: float = 0.2  # a pair summing to 2 references (ectopic) or 1 (extra) within this share of one
    hr_beats: int = 5  # HR is 60000 / the mean of the last this many accepted NN intervals (of rmssd_window)
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
    rejected_by: np.ndarray  # (N, len(REASONS)): the same, per reason

    def rejected_reasons(self, i: int = 0) -> dict[str, int]:
        """One patient's intervals rejected by this update, per reason (only the reasons that occurred)."""
        return {r: int(v) for r, v in zip(REASONS, self.rejected_by[i], strict=True) if v}

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


def _push(buf: np.ndarray, m: np.ndarray, v: np.ndarray) -> None:
    """Shift the rows ``m`` of ``buf`` left by one and put ``v`` at their end (all rows: no gather)."""
    if m.all():
        buf[:, :-1] = buf[:, 1:]
        buf[:, -1] = v
    else:
        buf[m, :-1] = buf[m, 1:]
        buf[m, -1] = v[m]


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
        self.pend = nan.copy()  # a short RR waiting for the next one (ectopic, extra or just short?)
        self.nn_count = np.zeros(n, dtype=np.int64)  # accepted NN intervals so far
        self._nn_changed = np.zeros(n, dtype=bool)  # (within an update) the NN intervals changed
        self.nn_mad = nan.copy()  # median |successive difference| of the accepted NN in rr_buf (ms)
        self.last_ok = nan.copy()  # the newest settled interval, if it was accepted (else NaN)…
        self.last_ref = nan.copy()  # …and the reference before it

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
        rej_by = f.rejected_by.copy()
        rej_by[keep] = 0
        pick = lambda new, old: np.where(keep, old, new)  # noqa: E731
        return FeatureFrame(f.t, pick(f.hr, self.hr), pick(f.baseline, self.baseline),
                            pick(f.hr_delta, self.hr - self.baseline), pick(f.hr_slope, self.slope), rmssd,
                            pick(f.quality, self.quality), lost, np.where(keep, since, f.since_valid), rej, rej_by)

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

        # RR intervals: classified one by one (see the module's doc); a short one waits for the next.
        rejected_by = np.zeros((n, len(REASONS)), dtype=np.int32)
        self._nn_changed = np.zeros(n, dtype=bool)
        if rr is not None and rr.size:
            rr = np.asarray(rr, dtype=float).reshape(n, -1)
            stale = self.seen_valid & (t - self.t_valid > c.lost_after_s)  # after a loss, start afresh
            self.pend[stale] = np.nan
            self.rr_buf[stale] = np.nan  # no interval, and no successive difference, spans a loss
            self.nn_mad[stale] = np.nan
            for k in range(rr.shape[1]):
                present = ~np.isnan(rr[:, k]) & (contact != 0)
                if present.any():
                    self._classify(rr[:, k], present, got, bpm, rejected_by)
        rejected = rejected_by.sum(axis=1).astype(np.int32)
        fresh_nn = self._nn_changed  # the accepted normal-to-normal intervals changed in this update
        had_rr = np.zeros(n, dtype=bool) if rr is None or not rr.size else \
            np.any(~np.isnan(rr), axis=1) & (contact != 0)

        # Heart rate and its slope.
        # HR from the accepted NN intervals whenever the reading carried RR (60000 / their mean over the
        # last ``hr_beats``); a reading whose intervals were all rejected leaves HR where it was.
        prev = self.hr
        acc = ~np.isnan(self.rr_buf)
        last = acc & (np.cumsum(acc[:, ::-1], axis=1)[:, ::-1] <= c.hr_beats)  # the last hr_beats accepted
        k = last.sum(axis=1)
        fresh_nn = fresh_nn & (k > 0)
        nn_hr = 60000.0 * k / np.maximum(np.where(last, self.rr_buf, 0.0).sum(axis=1), 1e-9)
        from_rr = valid & had_rr
        new_hr = np.where(from_rr, np.where(fresh_nn, nn_hr, prev), np.where(valid, bpm, prev))
        valid = valid & ~np.isnan(new_hr)
        first = valid & ~self.seen_valid
        a = 1.0 - np.exp(-dt / c.slope_tau_s)
        inst = np.where(valid & ~first & ~np.isnan(prev), (new_hr - prev) / np.maximum(dt, 1.0), 0.0)
        self.slope = np.where(valid, self.slope + a * (inst - self.slope), self.slope)
        self.hr = new_hr
        self.seen_valid |= valid
        self.t_valid = np.where(valid, t, self.t_valid)

        # Baseline: running mean over the baseline window, then frozen.
        in_window = valid & ~self.base_frozen & (t - self.base_start <= c.baseline_s)
        self.base_sum += np.where(in_window, new_hr, 0.0)
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
        if rr is not None and rr.size:
            # this heart's own beat-to-beat variability for the next intervals' tests: the median absolute
            # successive difference of the accepted ones, robust to the artefacts that slipped through
            a = np.sort(np.abs(d), axis=1)  # NaN (no pair) sorts last
            rows = np.arange(n)
            lo, hi = a[rows, np.maximum(cnt - 1, 0) // 2], a[rows, np.minimum(cnt // 2, a.shape[1] - 1)]
            self.nn_mad = np.where(cnt >= 4, np.where(cnt % 2 == 1, lo, 0.5 * (lo + hi)), np.nan)

        tt = np.full(n, t, dtype=float)
        return FeatureFrame(tt, self.hr.copy(), self.baseline.copy(), self.hr - self.baseline,
                            self.slope.copy(), rmssd, self.quality.copy(), lost, since, rejected, rejected_by)

    # ------------------------------------------------------------------ RR intervals
    def _classify(self, x: np.ndarray, present: np.ndarray, got: np.ndarray, bpm: np.ndarray,
                  counts: np.ndarray) -> None:
        """Take one RR interval per patient (where ``present``) and settle what can be settled."""
        c = self.cfg
        consumed = np.zeros(self.n, dtype=bool)
        p = self.pend
        hp = present & ~np.isnan(p)
        if hp.any():
            ref = self.rr_mean
            refv = np.where(np.isnan(ref), np.inf, ref)
            pair_sum = p + x
            ect = hp & (x > refv + self._dev(refv, c.ectopic_long)) & \
                (np.abs(pair_sum - 2.0 * refv) <= c.pair_tol * refv)
            ext = hp & ~ect & (np.abs(pair_sum - refv) <= c.pair_tol * refv)
            pair = ect | ext
            counts[:, R_ECTOPIC] += 2 * ect
            counts[:, R_EXTRA] += 2 * ext
            self._finalise(pair, p, np.zeros(self.n, dtype=bool))
            self._finalise(pair, x, np.zeros(self.n, dtype=bool))
            self._judge(hp & ~pair, p, got, bpm, counts)
            self.pend = np.where(hp, np.nan, self.pend)
            consumed = pair
        todo = present & ~consumed
        ref = self.rr_mean
        ref0 = np.where(np.isnan(ref), 0.0, ref)
        hold = todo & ~np.isnan(ref) & (x < ref0 - self._dev(ref0, c.hold_short))
        self.pend = np.where(hold, x, self.pend)
        self._judge(todo & ~hold, x, got, bpm, counts)

    def _judge(self, m: np.ndarray, x: np.ndarray, got: np.ndarray, bpm: np.ndarray, counts: np.ndarray) -> None:
        """Accept or reject interval ``x`` of the patients in ``m`` on its own: bounds, missed beat, jump."""
        if not m.any():
            return
        c = self.cfg
        # A long interval after an accepted one that was shorter than its reference: a premature beat
        # too close to the rhythm to be held, and its pause. Both are ectopic; the short one leaves
        # the NN intervals again (it reached at most one HR update).
        lr = np.where(np.isnan(self.last_ref), np.inf, self.last_ref)
        retro = m & (self.last_ok < lr) & (x > lr + self._dev(lr, c.ectopic_long)) & (x < (2.0 - c.pair_tol) * lr)
        if retro.any():
            self.rr_buf[retro, -1] = np.nan
            self.rr_mean = np.where(retro, self.last_ref, self.rr_mean)
            self._nn_changed |= retro
            counts[:, R_ECTOPIC] += 2 * retro
            self._finalise(retro, x, np.zeros(self.n, dtype=bool))
            m = m & ~retro
            if not m.any():
                return
        in_bounds = m & (x >= c.min_rr_ms) & (x <= c.max_rr_ms)
        ref = self.rr_mean
        have_ref = ~np.isnan(ref)
        refv = np.where(have_ref, ref, 1.0)
        with np.errstate(invalid="ignore"):
            mult = np.round(x / refv)
        missed = m & have_ref & (mult >= 2) & (np.abs(x - mult * refv) <= c.pair_tol * refv)
        jump = have_ref & (np.abs(x - refv) > c.rr_jump * refv)
        # When the reported bpm disagrees with the old reference but agrees with x, the rhythm really
        # changed: accept and re-anchor.
        agrees_bpm = got & (np.abs(60000.0 / np.where(in_bounds, x, 1.0) - bpm) < 0.2 * bpm)
        ok = in_bounds & (~jump | agrees_bpm) & ~missed
        # A run of rejected intervals that agree with one another is a real change of rhythm the
        # reference has not followed (e.g. no bpm reported): re-anchor on it. Missed or extra beats
        # do not form such runs: a normal beat breaks them.
        jumped = in_bounds & ~ok
        if jumped.any() or self.rej_run.any():  # (rej_run == 0 ⇔ rej_ref is NaN)
            rr_ref = self.rej_ref
            agree = jumped & ~np.isnan(rr_ref) & \
                (np.abs(x - rr_ref) <= 0.5 * c.rr_jump * np.where(np.isnan(rr_ref), 1.0, rr_ref))
            self.rej_run = np.where(jumped, np.where(agree, self.rej_run + 1, 1),
                                    np.where(m, 0, self.rej_run)).astype(np.int32)
            self.rej_ref = np.where(jumped, np.where(agree, 0.5 * rr_ref + 0.5 * x, x),
                                    np.where(m, np.nan, self.rej_ref))
            reanchor = jumped & (self.rej_run >= c.rr_reanchor)
            ok |= reanchor
            jump |= reanchor
            self.rej_run[reanchor] = 0
            self.rej_ref[reanchor] = np.nan
        bad = m & ~ok
        counts[:, R_MISSED] += bad & missed
        long_ = bad & ~missed & ((x > c.max_rr_ms) | (have_ref & (x > refv)))
        counts[:, R_LONG] += long_
        counts[:, R_SHORT] += bad & ~missed & ~long_
        self._finalise(m, x, ok, reset=jump)

    def _dev(self, ref: np.ndarray, share: float) -> np.ndarray:
        """How far from the reference an interval must be to count as premature or late: ``share`` of
        it, or ``ectopic_mad`` median absolute successive NN differences where this heart varies more."""
        with np.errstate(invalid="ignore"):
            return np.fmax(share * ref, self.cfg.ectopic_mad * self.nn_mad)

    def _finalise(self, m: np.ndarray, x: np.ndarray, ok: np.ndarray, reset: np.ndarray | None = None) -> None:
        """Interval ``x`` of the patients in ``m`` is settled: accepted where ``ok``, else an artefact."""
        if not m.any():
            return
        ok = m & ok
        ref = self.rr_mean
        self.last_ok = np.where(m, np.where(ok, x, np.nan), self.last_ok)
        self.last_ref = np.where(m, ref, self.last_ref)
        # RMSSD uses successive differences only: an artefact breaks the chain (NaN).
        _push(self.rr_buf, m, np.where(ok, x, np.nan))
        new_ref = np.isnan(ref) if reset is None else np.isnan(ref) | reset
        self.rr_mean = np.where(ok, np.where(new_ref, x, 0.8 * ref + 0.2 * x), ref)
        if ok.any():
            self.nn_count += ok
            self._nn_changed |= ok
