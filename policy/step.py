"""One session dynamics for live and simulated sessions.

The live session core (engine/core.py) and the vectorised simulator below (used by the
gymnasium env and the evaluator) share these pure functions: how intensity ramps toward
its target at bounded rates, how a shielded proposal moves the target, how loss of signal
holds it, how the hierarchy level is tracked.

:class:`BatchSession` runs L lanes of virtual patients through exactly what a headless live
session does (``engine.session.Session.run_headless`` with ``--speed max``), tick for tick:
the session ticks every ``tick_s`` (0.25 s); the virtual patient advances on whole seconds
and sees the intensity of the last tick before each second; features advance only on
samples and at decisions; a controller decides every ``decision_interval`` seconds and its
proposal passes through the safety shield; a SUDS question is answered ``SUDS_DELAY_S``
later. So the ``sim://`` source in a live session, the env and the evaluator give identical
trajectories for the same patient and controller (tests/policy/test_patients_identity.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from policy.controllers import Controller, Proposal
from policy.observation import Observation
from policy.shield import SafetyShield, ShieldResult
from policy.sim.patient import model
from policy.sim.patient.scene_table import SceneTable
from sensors.features import FeatureBank, FeatureConfig

#: defaults shared with engine.core.CoreConfig and engine.session
RAMP_UP_PER_S = 0.02
RAMP_DOWN_PER_S = 0.10
MAX_HR_ESTIMATE = 180.0  # 208 − 0.7·age; 180 ≈ age 40 when the age is not given
SUDS_DELAY_S = 5.0  # a simulated patient answers a SUDS question this long after it is asked
TICK_S = 0.25


# ---------------------------------------------------------------------------------------- pure pieces
def ramp(x, target, up_rate, down_rate, dt):
    """Intensity after ``dt`` seconds moving toward ``target`` at bounded rates."""
    return np.where(x < target, np.minimum(target, x + up_rate * dt),
                    np.where(x > target, np.maximum(target, x - down_rate * dt), x))


def level_entry(anchor_x, anchor_t, old_level, new_level, levels, up_rate, down_rate, now):
    """When the ramp from ``anchor_x`` (set at ``anchor_t``) crossed into ``new_level``.

    Computed from the last change of target alone, never from when ticks happened, so a replay
    that visits only the logged times sees the same time-at-level as the live session that
    ticked once a frame. Where the level did not change, returns NaN.
    """
    levels = np.asarray(levels, dtype=float)
    new_level = np.asarray(new_level)
    old_level = np.asarray(old_level)
    nxt = np.minimum(new_level + 1, len(levels) - 1)
    up = (new_level > old_level) & (np.asarray(up_rate) > 0)
    down = (new_level < old_level) & (down_rate > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_up = anchor_t + (levels[new_level] - 1e-9 - anchor_x) / np.where(up, up_rate, 1.0)
        t_down = anchor_t + (anchor_x - (levels[nxt] - 1e-9)) / (down_rate if down_rate > 0 else 1.0)
    t_in = np.where(up, t_up, np.where(down, t_down, now))
    t_in = np.minimum(now, np.maximum(anchor_t, t_in))
    return np.where(new_level != old_level, t_in, np.nan)


def retarget(target, delta):
    """The target after a (shielded) change, kept in [0, 1]."""
    return np.minimum(1.0, np.maximum(0.0, target + delta))


def lost_hold(target, intensity, lost):
    """While the signal is lost nothing raises intensity: a rising target is held where it is."""
    return np.where(lost & (target > intensity), intensity, target)


def signal_lost(seen_valid, t_valid, now, lost_after_s):
    """Loss of signal at ``now``: no valid reading yet, or none for ``lost_after_s``."""
    return ~seen_valid | (now - t_valid > lost_after_s)


@dataclass(frozen=True)
class DynamicsConfig:
    tick_s: float = TICK_S
    ramp_up_per_s: float = RAMP_UP_PER_S
    ramp_down_per_s: float = RAMP_DOWN_PER_S
    max_hr: float = MAX_HR_ESTIMATE
    start_intensity: float = 0.0
    suds_delay_s: float = SUDS_DELAY_S


class Group:
    """The lanes one controller drives (a contiguous slice), its shield and its decision clock."""

    def __init__(self, controller: Controller, lanes: slice, shield: SafetyShield | None):
        self.controller = controller
        self.lanes = lanes
        self.n = lanes.stop - lanes.start
        self.shield = shield
        self.interval = float(controller.decision_interval)
        self.next_decision = 0.0


class BatchSession:
    """L virtual patients in sessions, stepped exactly as a headless live session steps.

    ``params`` are the patients' model parameters (``rep`` copies side by side, one per
    group); ``groups`` are (controller, shield) pairs, each driving N = L / len(groups) lanes.
    Use :meth:`start_session`, then loop ``due = advance()`` → for each due group
    :meth:`observation` → propose → :meth:`apply`, until :attr:`over`.
    """

    def __init__(self, params: model.Params, table: SceneTable, groups: list[tuple[Controller, SafetyShield | None]],
                 config: DynamicsConfig | None = None, features: FeatureConfig | None = None, seed: int = 0):
        self.p = params
        self.table = table
        self.cfg = config or DynamicsConfig()
        self.fcfg = features or FeatureConfig()
        self.levels = np.asarray(table.intensities, dtype=float)
        n = params.n // len(groups)
        if n * len(groups) != params.n:
            raise ValueError("params.n must be a multiple of the number of groups")
        self.n_per_group = n
        self.groups = [Group(c, slice(i * n, (i + 1) * n), s) for i, (c, s) in enumerate(groups)]
        self.seed = seed
        self.state = model.initial_state(params)
        self.session = -1
        self.over = True
        self.hidden_hook = None
        #: where each lane stands in its course (course_context); the course runner updates it
        #: between sessions with :meth:`next_course_context`
        self.course_ctx = first_course_context(params.n, len(self.levels))

    # ------------------------------------------------------------------ sessions
    def start_session(self, duration_s: float, start: np.ndarray | None = None) -> None:
        """Start the next session (the model state carries over; the session core starts afresh,
        at ``start`` intensity per lane, default the config's start_intensity)."""
        L = self.p.n
        c = self.cfg
        self.session += 1
        self.duration = float(duration_s)
        self.t = 0.0
        self.intensity = np.full(L, c.start_intensity) if start is None else np.asarray(start, float).copy()
        self.target = self.intensity.copy()
        self.anchor_x = self.intensity.copy()  # intensity when the target last changed
        self.anchor_t = np.zeros(L)  # and when
        self.level = self.table.level_index(self.intensity)
        self.level_since = np.zeros(L)
        self.max_level = self.level.copy()
        self.suds_last = np.full(L, np.nan)
        self.suds_t = np.full(L, -np.inf)
        self.suds_peak = np.full(L, np.nan)
        self.pending = np.full(L, np.nan)  # time a SUDS question was asked, NaN if none pending
        self._no_pending = True
        self.look = np.full(L, np.nan)
        self.bank = FeatureBank(L, self.fcfg, t0=0.0)
        self.frame = self.bank.update(0.0, np.full(L, np.nan))
        self.last_feature_t = np.zeros(L)
        self.seen_u = model.effective_intensity(self.p, self.intensity, self.table.params_at(self.intensity))
        self.seen_asked = np.zeros(L, bool)
        self.reading: model.Reading | None = None
        self.sess = session_course_stats(L, len(self.levels))  # what the next session's course context needs
        for g in self.groups:
            g.controller.reset(g.n, self.levels, np.random.default_rng(self.seed))
            if g.shield is not None:
                g.shield.reset(g.n)
            g.next_decision = 0.0 + g.interval
        self._post_pending = False
        self.over = False
        self._first = True

    def end_session(self) -> np.ndarray:
        """Between sessions (model.next_session). Returns who dropped out now."""
        self.state, drop = model.next_session(self.p, self.state, self.session)
        return drop

    # ------------------------------------------------------------------ the tick
    def advance(self) -> list[Group]:
        """Run ticks until some group must decide (returned) or the session is over ([])."""
        while True:
            if self._post_pending:
                self._tick_post()
                self._post_pending = False
                t = self.t + self.cfg.tick_s
                if not t < self.duration:
                    self.over = True
                    return []
                self.t = t
            elif self._first:
                self._first = False
            due = self._tick_pre(self.t)
            self._post_pending = True
            if due:
                return due

    def _tick_pre(self, now: float) -> list[Group]:
        p, c = self.p, self.cfg
        self._advance_ramp(now)
        sample = None
        k = round(now)
        if now == k and k >= 1:  # the patient advances on whole seconds (sim source: poll)
            self.state, r = model.step(p, self.state, self.seen_u, self.seen_asked, self.session, k)
            self.reading = r
            self.on_second(k, r)
            sample = ~np.isnan(r.bpm)
            self.look = r.look_away  # the behaviour the scene reports
        # the patient answers a pending SUDS question (Session.step)
        ans = None if self._no_pending else ~np.isnan(self.pending) & (now - self.pending >= c.suds_delay_s)
        if ans is not None and ans.any():
            v = model.suds(p, self.state, self.session, int(round(now * 1000)))
            self.suds_last = np.where(ans, v, self.suds_last)
            self.suds_t = np.where(ans, now, self.suds_t)
            self.suds_peak = np.where(ans, np.where(np.isnan(self.suds_peak), v, np.maximum(self.suds_peak, v)),
                                      self.suds_peak)
            self.pending = np.where(ans, np.nan, self.pending)
            self._no_pending = bool(np.isnan(self.pending).all())
            record_suds_stats(self.sess, ans, v, self.level)
        # core.tick: ingest samples
        if sample is not None and sample.any():
            r = self.reading
            self.frame = self.bank.update(now, r.bpm, r.rr, r.contact, mask=sample)
            self.last_feature_t = np.where(sample, now, self.last_feature_t)
            record_rise_stats(self.sess, sample, self.frame.hr_delta, self.frame.lost)
        lost = signal_lost(self.bank.seen_valid, self.bank.t_valid, now, self.bank.cfg.lost_after_s)
        self._retarget_all(lost_hold(self.target, self.intensity, lost))
        due = []
        for g in self.groups:
            if now >= g.next_decision:
                g.next_decision = now + g.interval
                due.append(g)
        if due:
            m = np.zeros(p.n, bool)
            for g in due:
                m[g.lanes] = True
            tf = np.maximum(now, self.last_feature_t)
            # all lanes share the session clock: max(now, last) == now
            self.frame = self.bank.update(float(tf.max()), np.full(p.n, np.nan), mask=m)
            self.last_feature_t = np.where(m, tf, self.last_feature_t)
        return due

    def _advance_ramp(self, now: float) -> None:
        """engine.core.SessionCore.advance: intensity and level at ``now`` from the last change of
        target (tick-rate independent), done at the start of every tick."""
        c = self.cfg
        if np.array_equal(self.intensity, self.target):
            return  # nothing moves
        self.intensity = ramp(self.anchor_x, self.target, c.ramp_up_per_s, c.ramp_down_per_s,
                              np.maximum(0.0, now - self.anchor_t))
        lv = self.table.level_index(self.intensity)
        ch = lv != self.level
        if ch.any():
            t_in = level_entry(self.anchor_x, self.anchor_t, self.level, lv, self.levels,
                               c.ramp_up_per_s, c.ramp_down_per_s, now)
            self.level_since = np.where(ch, t_in, self.level_since)
            self.level = lv
            self.max_level = np.maximum(self.max_level, lv)
            self.suds_peak = np.where(ch, np.nan, self.suds_peak)

    def _retarget_all(self, new: np.ndarray, lanes: slice = slice(None)) -> None:
        """Set new targets; where one changes, the ramp restarts from the intensity now."""
        changed = new != self.target[lanes]
        if changed.any():
            self.anchor_x[lanes] = np.where(changed, self.intensity[lanes], self.anchor_x[lanes])
            self.anchor_t[lanes] = np.where(changed, self.t, self.anchor_t[lanes])
            self.target[lanes] = new

    def _tick_post(self) -> None:
        c = self.cfg
        now = self.t
        nxt = now + c.tick_s
        if nxt == round(nxt):  # what the patient sees during the coming second (Session.step: observe)
            self.seen_u = model.effective_intensity(self.p, self.intensity, self.table.params_at(self.intensity))
            self.seen_asked = ~np.isnan(self.pending)

    def on_second(self, k: int, r: model.Reading) -> None:
        """Hook for accumulating metrics each simulated second (overridden by users)."""

    # ------------------------------------------------------------------ decisions
    def observation(self, g: Group) -> Observation:
        sl, now, f = g.lanes, self.t, self.frame
        n_levels = len(self.levels)
        b = self.bank
        return Observation(
            t=np.full(g.n, now), intensity=self.intensity[sl].copy(), target=self.target[sl].copy(),
            level=self.level[sl].copy(), level_frac=self.level[sl] / max(n_levels - 1, 1),
            time_at_level=now - self.level_since[sl], hr=f.hr[sl], baseline=f.baseline[sl],
            hr_delta=f.hr_delta[sl], hr_slope=f.hr_slope[sl], rmssd=f.rmssd[sl], quality=f.quality[sl],
            lost=f.lost[sl], since_valid=np.where(b.seen_valid[sl], now - b.t_valid[sl], math.inf),
            suds=self.suds_last[sl].copy(), suds_age=now - self.suds_t[sl], suds_peak=self.suds_peak[sl].copy(),
            look_away=self.look[sl].copy(), max_hr=np.full(g.n, self.cfg.max_hr),
            **course_observation({k: v[sl] for k, v in self.course_ctx.items()}, self.sess["first_suds"][sl],
                                 self.sess["first_level"][sl]))

    def next_course_context(self) -> dict:
        """The course context of the next session, from the one that just ended (every lane)."""
        return next_course_context(self.course_ctx, self.max_level, self.sess, self.duration)

    def hidden(self, g: Group) -> dict:
        """The hidden state of a group's patients (for the oracle; evaluation only)."""
        sl, s, p = g.lanes, self.state, self.p
        return {"fear": s.A[sl], "optimal_arousal": p.optimal_arousal[sl], "overwhelm": p.overwhelm[sl],
                "escape": p.escape[sl], "sensitisation": s.S[sl], "escaped": s.escaped[sl],
                "dropped": s.dropped[sl]}

    def apply(self, g: Group, obs: Observation, prop: Proposal) -> ShieldResult:
        """The shielded proposal moves the target (engine.core.SessionCore._decide)."""
        sl = g.lanes
        delta = np.asarray(prop.delta, dtype=float)
        if g.shield is not None:
            res = g.shield.apply(obs, delta)
        else:
            res = ShieldResult(np.where(np.isfinite(delta), delta, 0.0), np.zeros(g.n, np.int8))
        if prop.ask_suds is not None:
            ask = np.asarray(prop.ask_suds, bool) & np.isnan(self.pending[sl])
            self.pending[sl] = np.where(ask, self.t, self.pending[sl])
            self._no_pending = bool(np.isnan(self.pending).all())
        self._retarget_all(retarget(self.target[sl], res.delta), sl)
        return res


# ---------------------------------------------------------------------------------------- courses
def course_start_level(highest_level):
    """The level the next session of a course starts at: one below the highest level reached in
    the previous session (level 0 when that was 0), as a therapist would resume. The one rule for
    the live session (``exposure run``), the env and the evaluator; over arrays or a single int."""
    return np.maximum(np.asarray(highest_level) - 1, 0)


def first_course_context(n: int, n_levels: int) -> dict:
    """The course context of a session with nothing before it (a first session), over N lanes:
    (N,) arrays per :data:`policy.observation.COURSE_FIELDS` but return_of_fear, and
    ``prev_suds_at_level`` (N, levels): the last SUDS given at each level last session (NaN: none)."""
    return {"course_session": np.ones(n), "prev_highest_level": np.full(n, np.nan),
            "prev_peak_suds": np.full(n, np.nan), "prev_peak_hr_rise": np.full(n, np.nan),
            "course_minutes": np.zeros(n), "prev_suds_at_level": np.full((n, n_levels), np.nan)}


def session_course_stats(n: int, n_levels: int) -> dict:
    """What a session accumulates for the next one's course context."""
    return {"first_suds": np.full(n, np.nan), "first_level": np.full(n, -1), "peak_suds": np.full(n, np.nan),
            "peak_rise": np.full(n, np.nan), "suds_at_level": np.full((n, n_levels), np.nan)}


def record_suds_stats(st: dict, answered, value, level) -> None:
    """SUDS answers (where ``answered``) given at ``level``."""
    first = answered & (st["first_level"] < 0)
    st["first_suds"] = np.where(first, value, st["first_suds"])
    st["first_level"] = np.where(first, level, st["first_level"])
    st["peak_suds"] = np.where(answered, np.fmax(st["peak_suds"], value), st["peak_suds"])
    lanes = np.flatnonzero(answered)
    st["suds_at_level"][lanes, np.asarray(level)[lanes]] = np.asarray(value)[lanes]


def record_rise_stats(st: dict, sampled, hr_delta, lost) -> None:
    """The HR rise of the features a sample produced (where ``sampled``), unless the signal is lost."""
    ok = sampled & ~np.asarray(lost, bool) & ~np.isnan(hr_delta)
    st["peak_rise"] = np.where(ok, np.fmax(st["peak_rise"], hr_delta), st["peak_rise"])


def next_course_context(ctx: dict, highest_level, st: dict, duration_s) -> dict:
    """The next session's course context, from this session's and its stats."""
    return {"course_session": ctx["course_session"] + 1.0,
            "prev_highest_level": np.asarray(highest_level, float).copy(),
            "prev_peak_suds": st["peak_suds"].copy(), "prev_peak_hr_rise": st["peak_rise"].copy(),
            "course_minutes": ctx["course_minutes"] + np.asarray(duration_s, float) / 60.0,
            "prev_suds_at_level": st["suds_at_level"].copy()}


def course_observation(ctx: dict, first_suds, first_level) -> dict:
    """The course fields of the observation (policy.observation.COURSE_FIELDS) over N lanes: the
    context, and the return of fear once this session's first SUDS answer has come (its value
    minus the last SUDS given at that level in the previous session; NaN until then or when the
    previous session has none there)."""
    lv = np.asarray(first_level)
    has = lv >= 0
    before = ctx["prev_suds_at_level"][np.arange(len(lv)), np.maximum(lv, 0)]
    out = {k: np.asarray(ctx[k], float).copy() for k in ("course_session", "prev_highest_level", "prev_peak_suds",
                                                          "prev_peak_hr_rise", "course_minutes")}
    out["return_of_fear"] = np.where(has, np.asarray(first_suds, float) - before, np.nan)
    return out
