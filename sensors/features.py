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

import numba
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
        self.nn_mad = nan.copy()  # median |successive difference| of the accepted NN in rr_buf (ms)
        # the |successive differences| of rr_buf kept sorted (inf where a difference has no pair), updated as
        # the buffer shifts, and what follows from them while the buffer does not change
        self.dsort = np.full((n, max(c.rmssd_window - 1, 0)), np.inf)
        self.d_cnt = np.zeros(n, dtype=np.int64)  # finite differences in dsort
        self.rmssd = nan.copy()
        # the lanes whose buffer changed since their RMSSD was last computed (an update with rmssd=False
        # leaves it for the next one that asks for it: RMSSD is a function of the buffer alone)
        self.rmssd_stale = np.zeros(n, dtype=bool)
        self.last_ok = nan.copy()  # the newest settled interval, if it was accepted (else NaN)…
        self.last_ref = nan.copy()  # …and the reference before it
        self._all, self._no_rr, self._no_contact = np.ones(n, bool), np.empty((n, 0)), np.full(n, -1, np.int8)

    def rebaseline(self, t: float, mask: np.ndarray | None = None) -> None:
        """Start a new resting baseline at ``t`` (e.g. during a calm period)."""
        m = np.ones(self.n, dtype=bool) if mask is None else mask
        self.base_sum[m] = 0.0
        self.base_n[m] = 0.0
        self.base_start[m] = t
        self.base_frozen[m] = False

    def update(self, t: float, bpm: np.ndarray, rr: np.ndarray | None = None,
               contact: np.ndarray | None = None, mask: np.ndarray | None = None,
               rmssd: bool = True) -> FeatureFrame:
        """Advance the features to ``t`` with this step's readings.

        ``mask`` (bool over patients, optional): only these patients take part in the update;
        the others keep their state exactly as if no update had happened (the evaluator uses
        it to mirror a live session, where features advance only on samples and decisions).
        Their rows of the returned frame describe their unchanged state at ``t``.

        ``rmssd=False``: the frame's ``rmssd`` is None and its computation is left to the next
        update that asks for it, which gives the same figures (RMSSD depends on the buffered
        intervals alone); for a caller that reads no RMSSD from this frame (the evaluator's
        readings, between decisions).
        """
        if mask is not None:
            mask = np.asarray(mask, dtype=bool).reshape(self.n)
        return self._update(t, bpm, rr, contact, mask, rmssd)

    def rmssd_now(self) -> np.ndarray:
        """Every lane's RMSSD as its buffered intervals stand now (computing those an update with
        ``rmssd=False`` left): what the last update's frame would have held had it computed them."""
        _rmssd_stale_lanes(self.rr_buf, self.rmssd, self.d_cnt, self.rmssd_stale)
        return self.rmssd.copy()

    def _update(self, t: float, bpm: np.ndarray, rr: np.ndarray | None, contact: np.ndarray | None,
                active: np.ndarray | None = None, want_rmssd: bool = True) -> FeatureFrame:
        c = self.cfg
        n = self.n
        # contiguous arrays of fixed types: the kernel compiled (or loaded) at the bank's first update serves all
        bpm = np.ascontiguousarray(np.asarray(bpm, dtype=float).reshape(n))
        has_rr = rr is not None and rr.size > 0
        rr = np.ascontiguousarray(np.asarray(rr, dtype=float).reshape(n, -1)) if has_rr else self._no_rr
        contact = self._no_contact if contact is None else \
            np.ascontiguousarray(np.asarray(contact).reshape(n).astype(np.int8, copy=False))
        # the exponentials stay in numpy (its SIMD exp rounds a few arguments differently from the C
        # library's, which the kernel would use): the same figures as before the kernel, to the bit
        dt = np.maximum(t - self.t_last, 1e-6)
        a_slope = 1.0 - np.exp(-dt / c.slope_tau_s)
        a_quality = 1.0 - np.exp(-dt / c.quality_tau_s)
        hr_delta, rmssd, lost, since = np.empty(n), np.empty(n), np.empty(n, bool), np.empty(n)
        rejected, rejected_by = np.zeros(n, np.int32), np.zeros((n, len(REASONS)), np.int32)
        _update_lanes(float(t), bpm, rr, has_rr, contact, self._all if active is None else np.ascontiguousarray(active),
                      a_slope, a_quality,
                      self.t_last, self.t_valid, self.seen_valid, self.hr, self.slope, self.quality, self.base_sum,
                      self.base_n, self.base_start, self.base_frozen, self.baseline, self.rr_buf, self.dsort,
                      self.d_cnt, self.rmssd, self.rmssd_stale, want_rmssd, self.rr_mean,
                      self.rej_run, self.rej_ref, self.pend, self.nn_count, self.nn_mad, self.last_ok, self.last_ref,
                      c.min_bpm, c.max_bpm, c.min_rr_ms, c.max_rr_ms, c.rr_jump, c.rr_reanchor, c.hold_short,
                      c.ectopic_mad, c.ectopic_long, c.pair_tol, c.hr_beats, c.baseline_s, c.lost_after_s,
                      hr_delta, rmssd, lost, since, rejected, rejected_by)
        return FeatureFrame(np.full(n, t, dtype=float), self.hr.copy(), self.baseline.copy(), hr_delta,
                            self.slope.copy(), rmssd if want_rmssd else None, self.quality.copy(), lost, since,
                            rejected, rejected_by)


# ---------------------------------------------------------------------------------------------- the kernel
# One feature update, compiled (numba) and written per lane: the only implementation, run by the live
# session with N = 1 and by the evaluator over thousands of lanes. A per-lane loop rather than numpy over
# lanes because the RR rules branch per interval (about 100 array operations and temporaries an update in
# numpy, most of them on a handful of lanes). Floating-point operations are written in the order numpy
# evaluated them before (sums pairwise as numpy sums a row), so the figures are the same to the bit.
@numba.njit(cache=True, inline="always")
def _pairwise_sum(a, n):
    """numpy's sum of ``a[:n]`` (its pairwise summation: 8 partial sums for n ≥ 8), to the bit, n ≤ 128."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    while i < n - (n % 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return res


@numba.njit(cache=True, inline="always")
def _dev(ref, share, ectopic_mad, nn_mad):
    """How far from the reference an interval must be to count as premature or late: ``share`` of it,
    or ``ectopic_mad`` median absolute successive NN differences where this heart varies more (fmax)."""
    a, b = share * ref, ectopic_mad * nn_mad
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


@numba.njit(cache=True, inline="always")
def _absdiff(a, b):
    """|b − a| as the sorted differences hold it: inf where either is NaN (no pair sorts last)."""
    d = b - a
    return np.inf if math.isnan(d) else abs(d)


@numba.njit(cache=True)
def _resort(ds, i):
    """Insertion sort of lane ``i``'s differences (after a change the shifts below do not cover)."""
    for j in range(1, ds.shape[1]):
        v = ds[i, j]
        m = j - 1
        while m >= 0 and ds[i, m] > v:
            ds[i, m + 1] = ds[i, m]
            m -= 1
        ds[i, m + 1] = v


@numba.njit(cache=True, inline="always")
def _rmssd_lane(i, rr_buf, tmp, rmssd_c, d_cnt, rmssd_stale):
    """RMSSD of lane ``i``'s buffered intervals (successive differences across an artefact left out),
    and how many differences there are."""
    w = rr_buf.shape[1]
    cnt = 0
    for j in range(w - 1):
        d = rr_buf[i, j + 1] - rr_buf[i, j]
        if math.isnan(d):
            tmp[j] = 0.0
        else:
            tmp[j] = d * d
            cnt += 1
    rmssd_c[i] = math.sqrt(_pairwise_sum(tmp, w - 1) / max(cnt, 1)) if cnt >= 2 else np.nan
    d_cnt[i] = cnt
    rmssd_stale[i] = False


@numba.njit(cache=True)
def _rmssd_stale_lanes(rr_buf, rmssd_c, d_cnt, rmssd_stale):
    """The RMSSD of every lane left stale by an update with ``want_rmssd`` False."""
    tmp = np.empty(rr_buf.shape[1])
    for i in range(rr_buf.shape[0]):
        if rmssd_stale[i]:
            _rmssd_lane(i, rr_buf, tmp, rmssd_c, d_cnt, rmssd_stale)


@numba.njit(cache=True)
def _update_lanes(t, bpm, rr, has_rr, contact, active, a_slope, a_quality,
                  t_last, t_valid, seen_valid, hr, slope, quality, base_sum, base_n, base_start, base_frozen,
                  baseline, rr_buf, ds, d_cnt, rmssd_c, rmssd_stale, want_rmssd, rr_mean, rej_run, rej_ref, pend,
                  nn_count, nn_mad, last_ok, last_ref,
                  min_bpm, max_bpm, min_rr, max_rr, rr_jump, rr_reanchor, hold_short, ectopic_mad, ectopic_long,
                  pair_tol, hr_beats, baseline_s, lost_after_s,
                  out_delta, out_rmssd, out_lost, out_since, out_rejected, counts):
    """Advance the lanes in ``active`` to ``t`` with their readings (see the module's doc); the others keep
    their state. Every lane's outputs describe its state at ``t``; with ``want_rmssd`` False the RMSSD of
    the lanes whose buffer changed is marked stale rather than computed (``out_rmssd`` is then not valid
    for them), and the next update with ``want_rmssd`` computes every stale lane's, active or not."""
    n, w = rr_buf.shape
    nn_changed = np.zeros(2, np.bool_)  # [0]: a new NN interval, [1]: the buffer changed
    tmp = np.empty(w)

    # The rules for one interval are inner functions of this kernel (numba inlines them) that use its arrays
    # directly: written as functions taking the arrays as arguments, each call bound every array to a new
    # name, and each binding cost an atomic increment and decrement of the array's reference count
    # (numba's runtime) — about 20 atomic operations an interval, a sixth of the kernel's time.
    def replace_diff(i, old, new):
        """One difference of lane ``i``'s sorted row of ``ds``, ``old``, becomes ``new``; the row stays
        sorted. The median of the differences is then what sorting them afresh gives (the same numbers), at
        O(w) per beat rather than O(w²) per update."""
        m = ds.shape[1]
        k = 0
        while k < m and ds[i, k] != old:
            k += 1
        if k == m:  # not there (cannot happen while the row mirrors the buffer): sort afresh
            ds[i, m - 1] = new
            _resort(ds, i)
            return
        if new >= old:
            while k + 1 < m and ds[i, k + 1] < new:
                ds[i, k] = ds[i, k + 1]
                k += 1
        else:
            while k > 0 and ds[i, k - 1] > new:
                ds[i, k] = ds[i, k - 1]
                k -= 1
        ds[i, k] = new

    def finalise(i, x, ok, reset):
        """Interval ``x`` of lane ``i`` is settled: accepted where ``ok``, else an artefact (NaN in the
        buffer: RMSSD uses successive differences only, an artefact breaks the chain)."""
        ref = rr_mean[i]
        last_ok[i] = x if ok else np.nan
        last_ref[i] = ref
        if w >= 2:  # the oldest difference leaves the window, one between the last interval and x enters
            replace_diff(i, _absdiff(rr_buf[i, 0], rr_buf[i, 1]), _absdiff(rr_buf[i, w - 1], x if ok else np.nan))
        nn_changed[1] = True
        for j in range(w - 1):
            rr_buf[i, j] = rr_buf[i, j + 1]
        rr_buf[i, w - 1] = x if ok else np.nan
        if ok:
            rr_mean[i] = x if (math.isnan(ref) or reset) else 0.8 * ref + 0.2 * x
            nn_count[i] += 1
            nn_changed[0] = True

    def judge(i, x, got, bpm_i):
        """Accept or reject interval ``x`` of lane ``i`` on its own: bounds, missed beat, jump."""
        # A long interval after an accepted one that was shorter than its reference: a premature beat too
        # close to the rhythm to be held, and its pause. Both are ectopic; the short one leaves the NN
        # intervals again (it reached at most one HR update).
        lr = np.inf if math.isnan(last_ref[i]) else last_ref[i]
        if last_ok[i] < lr and x > lr + _dev(lr, ectopic_long, ectopic_mad, nn_mad[i]) and x < (2.0 - pair_tol) * lr:
            if w >= 2:
                replace_diff(i, _absdiff(rr_buf[i, w - 2], rr_buf[i, w - 1]), np.inf)
            rr_buf[i, w - 1] = np.nan
            rr_mean[i] = last_ref[i]
            nn_changed[0] = True
            counts[i, R_ECTOPIC] += 2
            finalise(i, x, False, False)
            return
        in_bounds = x >= min_rr and x <= max_rr
        ref = rr_mean[i]
        have_ref = not math.isnan(ref)
        refv = ref if have_ref else 1.0
        mult = np.rint(x / refv)
        missed = have_ref and mult >= 2 and abs(x - mult * refv) <= pair_tol * refv
        jump = have_ref and abs(x - refv) > rr_jump * refv
        # When the reported bpm disagrees with the old reference but agrees with x, the rhythm really
        # changed: accept and re-anchor.
        agrees_bpm = got and abs(60000.0 / (x if in_bounds else 1.0) - bpm_i) < 0.2 * bpm_i
        ok = in_bounds and (not jump or agrees_bpm) and not missed
        # A run of rejected intervals that agree with one another is a real change of rhythm the reference
        # has not followed (e.g. no bpm reported): re-anchor on it. Missed or extra beats do not form such
        # runs: a normal beat breaks them.
        jumped = in_bounds and not ok
        if jumped:
            r = rej_ref[i]
            if not math.isnan(r) and abs(x - r) <= 0.5 * rr_jump * r:
                rej_run[i] += 1
                rej_ref[i] = 0.5 * r + 0.5 * x
            else:
                rej_run[i] = 1
                rej_ref[i] = x
            if rej_run[i] >= rr_reanchor:
                ok = True
                jump = True
                rej_run[i] = 0
                rej_ref[i] = np.nan
        else:
            rej_run[i] = 0
            rej_ref[i] = np.nan
        if not ok:
            if missed:
                counts[i, R_MISSED] += 1
            elif x > max_rr or (have_ref and x > refv):
                counts[i, R_LONG] += 1
            else:
                counts[i, R_SHORT] += 1
        finalise(i, x, ok, jump)

    for i in range(n):
        if active[i]:
            dt = max(t - t_last[i], 1e-6)
            t_last[i] = t
            b = bpm[i]
            got = not math.isnan(b)
            valid = got and b >= min_bpm and b <= max_bpm and contact[i] != 0
            nn_changed[0] = False
            nn_changed[1] = False
            had_rr = False
            n_rr = 0
            if has_rr:
                if seen_valid[i] and t - t_valid[i] > lost_after_s:  # after a loss, start afresh
                    pend[i] = np.nan
                    for j in range(w):
                        rr_buf[i, j] = np.nan  # no interval, and no successive difference, spans a loss
                    for j in range(w - 1):
                        ds[i, j] = np.inf
                    nn_changed[1] = True
                    nn_mad[i] = np.nan
                for k in range(rr.shape[1]):
                    x = rr[i, k]
                    if math.isnan(x):
                        continue
                    n_rr += 1
                    if contact[i] == 0:
                        continue
                    had_rr = True
                    # classify one interval; a short one waits for the next
                    consumed = False
                    p = pend[i]
                    if not math.isnan(p):
                        ref = rr_mean[i]
                        refv = np.inf if math.isnan(ref) else ref
                        pair_sum = p + x
                        ect = x > refv + _dev(refv, ectopic_long, ectopic_mad, nn_mad[i]) and \
                            abs(pair_sum - 2.0 * refv) <= pair_tol * refv
                        ext = not ect and abs(pair_sum - refv) <= pair_tol * refv
                        if ect or ext:
                            counts[i, R_ECTOPIC if ect else R_EXTRA] += 2
                            finalise(i, p, False, False)
                            finalise(i, x, False, False)
                            consumed = True
                        else:
                            judge(i, p, got, b)
                        pend[i] = np.nan
                    if not consumed:
                        ref = rr_mean[i]
                        if not math.isnan(ref) and x < ref - _dev(ref, hold_short, ectopic_mad, nn_mad[i]):
                            pend[i] = x
                        else:
                            judge(i, x, got, b)
            rejected = 0
            for r in range(counts.shape[1]):
                rejected += counts[i, r]
            out_rejected[i] = rejected
            # Heart rate and its slope: from the accepted NN intervals whenever the reading carried RR
            # (60000 / their mean over the last hr_beats); a reading whose intervals were all rejected leaves
            # HR where it was.
            prev = hr[i]
            if valid and had_rr:
                new_hr = prev
                if nn_changed[0]:  # a new NN interval: HR from the last hr_beats of them
                    k = 0
                    for j in range(w - 1, -1, -1):
                        v = rr_buf[i, j]
                        if not math.isnan(v) and k < hr_beats:
                            k += 1
                            tmp[j] = v
                        else:
                            tmp[j] = 0.0
                    if k > 0:
                        new_hr = 60000.0 * k / max(_pairwise_sum(tmp, w), 1e-9)
            else:
                new_hr = b if valid else prev
            valid = valid and not math.isnan(new_hr)
            first = valid and not seen_valid[i]
            inst = (new_hr - prev) / max(dt, 1.0) if (valid and not first and not math.isnan(prev)) else 0.0
            if valid:
                slope[i] = slope[i] + a_slope[i] * (inst - slope[i])
                seen_valid[i] = True
                t_valid[i] = t
            hr[i] = new_hr
            # Baseline: running mean over the baseline window, then frozen.
            if valid and not base_frozen[i] and t - base_start[i] <= baseline_s:
                base_sum[i] += new_hr
                base_n[i] += 1.0
            if not base_frozen[i] and t - base_start[i] > baseline_s and base_n[i] > 0:
                base_frozen[i] = True
            baseline[i] = base_sum[i] / max(base_n[i], 1.0) if base_n[i] > 0 else np.nan
            # Quality: a moving share of valid readings with accepted RR.
            score = 1.0 if valid else 0.0
            if has_rr:
                score = score * ((1.0 - rejected / max(n_rr, 1)) if n_rr > 0 else 1.0)
            if got or t - t_valid[i] >= 1.0:
                quality[i] = quality[i] + a_quality[i] * (score - quality[i])
        # outputs (every lane)
        since = t - t_valid[i] if seen_valid[i] else np.inf
        lost = since > lost_after_s
        if lost and active[i]:
            quality[i] = 0.0
        out_since[i] = since
        out_lost[i] = lost
        out_delta[i] = hr[i] - baseline[i]
        changed = active[i] and nn_changed[1]  # else the buffer, so RMSSD, is as it was
        if changed and not want_rmssd:  # RMSSD left for later; the count of differences is needed now
            cnt = 0
            for j in range(w - 1):
                if not math.isnan(rr_buf[i, j + 1] - rr_buf[i, j]):
                    cnt += 1
            d_cnt[i] = cnt
            rmssd_stale[i] = True
        elif want_rmssd and (changed or rmssd_stale[i]):
            _rmssd_lane(i, rr_buf, tmp, rmssd_c, d_cnt, rmssd_stale)
        out_rmssd[i] = rmssd_c[i]
        if active[i] and has_rr:
            # this heart's own beat-to-beat variability for the next intervals' tests: the median absolute
            # successive difference of the accepted ones (the middle of the sorted differences), robust to
            # the artefacts that slipped through
            cnt = d_cnt[i]
            if cnt >= 4:
                lo, hi = ds[i, (cnt - 1) // 2], ds[i, min(cnt // 2, w - 2)]
                nn_mad[i] = lo if cnt % 2 == 1 else 0.5 * (lo + hi)
            else:
                nn_mad[i] = np.nan
