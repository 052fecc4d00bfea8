"""The session rules, written once over N lanes: the live session runs them with N = 1, the
evaluator and the gymnasium env with N = thousands (:mod:`policy.sim.batch_session`).

:class:`SessionStep` holds the numeric state of a session per lane (intensity, its target and
ramp, the hierarchy level and when it was entered, features, SUDS) and the rules that move it:
the ramp toward the target at bounded rates, level tracking, ingesting readings, holding on
loss of signal, refreshing features at a decision, the observation a controller sees, a shielded
proposal moving the target, asking and recording SUDS. The live ``SessionCore`` is a shell around
it (commands, arbiter, logging); the batch adds the virtual patient and the decision groups.

The hierarchy arrives as a :class:`SceneTable` — anything with the hierarchy's ``scene``,
``intensities`` and vectorised ``level_index`` / ``params_at``; the engine passes
``scenes.hierarchy.Hierarchy`` itself (``policy/`` does not import ``scenes/``), so level lookup
and scene-parameter interpolation have one implementation, the hierarchy's.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Protocol

import numba
import numpy as np

from policy.controllers import Proposal
from policy.observation import Observation
from policy.shield import SafetyShield, ShieldResult
from sensors.features import FeatureBank, FeatureConfig, FeatureFrame

#: defaults shared by the live session (engine.session.core.CoreConfig) and the batch
RAMP_UP_PER_S = 0.02
RAMP_DOWN_PER_S = 0.10
MAX_HR_ESTIMATE = 180.0  # 208 − 0.7·age; 180 ≈ age 40 when the age is not given
SUDS_DELAY_S = 5.0  # a simulated patient answers a SUDS question this long after it is asked
TICK_S = 0.25


class SceneTable(Protocol):
    """A hierarchy as the session rules and the virtual patient need it (``scenes.hierarchy.Hierarchy``)."""

    scene: str

    @property
    def intensities(self) -> list[float]: ...

    def level_index(self, intensity): ...

    def params_at(self, intensity): ...


# ---------------------------------------------------------------------------------------- pure pieces
@numba.njit(cache=True)
def ramp_lanes(t, down_rate, intensity, target, anchor_x, anchor_t, up_rate, moved):
    """The ramp: each lane not at its target moves, in place, to where the ramp from its anchor
    (``anchor_x`` set at ``anchor_t``) toward ``target`` stands at ``t``, rising at its ``up_rate`` and
    falling at ``down_rate``. Their indices go to ``moved``; returns how many. A lane at its target
    stays there: the ramp from its anchor has already reached it. Compiled, one pass over the lanes and
    no temporaries: the live session runs it with N = 1, the batch with thousands."""
    k = 0
    for i in range(len(intensity)):
        tg = target[i]
        if intensity[i] != tg:
            x = anchor_x[i]
            dt = max(0.0, t - anchor_t[i])
            if x < tg:
                x = min(tg, x + up_rate[i] * dt)
            elif x > tg:
                x = max(tg, x - down_rate * dt)
            intensity[i] = x
            moved[k] = i
            k += 1
    return k


@numba.njit(cache=True)
def enter_levels(now, lanes, new_level, levels, anchor_x, anchor_t, up_rate, down_rate, level, level_since,
                 max_level, suds_peak):
    """Lanes ``lanes`` are now at ``new_level``; where that is a new level, record it (the highest level
    reached, no SUDS peak yet there) and when the ramp from the anchor crossed into it.

    The time of entry is computed from the last change of target alone, never from when ticks
    happened, so a replay that visits only the logged times sees the same time-at-level as the live
    session that ticked once a frame."""
    top = len(levels) - 1
    for j in range(len(lanes)):
        i = lanes[j]
        new, old = new_level[j], level[i]
        if new == old:
            continue
        ax, at = anchor_x[i], anchor_t[i]
        if new > old and up_rate[i] > 0:
            t_in = at + (levels[new] - 1e-9 - ax) / up_rate[i]
        elif new < old and down_rate > 0:
            t_in = at + (ax - (levels[min(new + 1, top)] - 1e-9)) / down_rate
        else:
            t_in = now
        level_since[i] = min(now, max(at, t_in))
        level[i] = new
        max_level[i] = max(max_level[i], new)
        suds_peak[i] = np.nan


def retarget(target, delta):
    """The target after a (shielded) change, kept in [0, 1]."""
    return np.minimum(1.0, np.maximum(0.0, target + delta))


def lost_hold(target, intensity, lost):
    """While the signal is lost nothing raises intensity: a rising target is held where it is."""
    return np.where(lost & (target > intensity), intensity, target)


def signal_lost(seen_valid, t_valid, now, lost_after_s):
    """Loss of signal at ``now``: no valid reading yet, or none for ``lost_after_s``."""
    return ~seen_valid | (now - t_valid > lost_after_s)


# ---------------------------------------------------------------------------------------- the step
class SessionStep:
    """The numeric state of N sessions and the rules that move it.

    All lanes share one clock (:attr:`t`). A tick is: :meth:`advance` (the ramp to ``now``), the
    caller's commands, :meth:`ingest` readings, :meth:`held` targets on loss of signal, and for
    lanes due to decide :meth:`refresh` → :meth:`observation` → propose → :meth:`decide`.
    """

    def __init__(self, table: SceneTable, n: int = 1, *, ramp_up_per_s: float = RAMP_UP_PER_S,
                 ramp_down_per_s: float = RAMP_DOWN_PER_S, max_hr: float = MAX_HR_ESTIMATE,
                 start: float | np.ndarray = 0.0, features: FeatureConfig | None = None, t0: float = 0.0):
        self.table = table
        self.levels = np.asarray(table.intensities, dtype=float)
        self.n = n
        self.up, self.down, self.max_hr = ramp_up_per_s, ramp_down_per_s, max_hr
        self.t = t0
        self.intensity = np.full(n, start, dtype=float) if np.ndim(start) == 0 else np.array(start, dtype=float)
        self.target = self.intensity.copy()
        #: counts the changes of target (set_target, jump): whoever checked a rule over the targets
        #: can tell whether they changed since
        self.target_gen = 0
        self.rate = np.full(n, ramp_up_per_s)  # rising rate toward the current target
        # The ramp is anchored at the last change of target: intensity at any time is a pure
        # function of that anchor, so it does not depend on how often the session is ticked.
        self.anchor_x = self.intensity.copy()
        self.anchor_t = np.full(n, t0)
        self._moved = np.empty(n, np.int64)  # the lanes on a ramp at the last advance (ramp_lanes)
        self.level = np.asarray(table.level_index(self.intensity))
        self.level_since = np.full(n, t0)
        self.max_level = self.level.copy()
        self.suds_last = np.full(n, np.nan)
        self.suds_t = np.full(n, -np.inf)
        self.suds_peak = np.full(n, np.nan)  # highest SUDS at the current level
        self.pending = np.full(n, np.nan)  # when a SUDS question was asked; NaN: none pending
        self.look = np.full(n, np.nan)  # the latest share of time looking away the scene reported
        self.bank = FeatureBank(n, features, t0=t0)
        self.frame: FeatureFrame = self.bank.update(t0, np.full(n, np.nan))
        self.last_feature_t = np.full(n, t0)
        #: where each lane stands in its course (:func:`first_course_context` for a first session);
        #: the live session sets it from the store, the simulator from the session before
        self.course_ctx = first_course_context(n, len(self.levels))
        self.course_stats = session_course_stats(n, len(self.levels))  # what the next session's context needs

    # ------------------------------------------------------------------ the ramp
    def advance(self, now: float) -> None:
        """Bring intensity, level and time at level to ``now`` (never back in time).

        Tick-rate independent: both follow from the last change of target alone, so a replay
        that visits only the logged times sees what the live session saw ticking once a frame.
        """
        if now > self.t:
            self.t = now
        xs = self.intensity.copy()  # a new array, as ever: whoever holds the old one keeps its numbers
        k = ramp_lanes(self.t, self.down, xs, self.target, self.anchor_x, self.anchor_t, self.rate, self._moved)
        if not k:
            return  # nothing moves
        self.intensity = xs
        mv = self._moved[:k]
        lv = np.asarray(self.table.level_index(xs[mv]))  # the hierarchy's rule, for the lanes that moved
        ch = lv != self.level[mv]
        if ch.any():
            self.level_since, self.level, self.max_level, self.suds_peak = (
                a.copy() for a in (self.level_since, self.level, self.max_level, self.suds_peak))
            enter_levels(self.t, mv[ch], lv[ch], self.levels, self.anchor_x, self.anchor_t, self.rate, self.down,
                         self.level, self.level_since, self.max_level, self.suds_peak)

    def set_target(self, new, lanes: slice = slice(None), rate: float | None = None) -> np.ndarray:
        """New targets for ``lanes``; where one changes, the ramp restarts from the intensity now,
        rising at ``rate`` (default: the controller's rate). Returns where it changed."""
        new = np.asarray(new, dtype=float)
        changed = new != self.target[lanes]
        if changed.any():
            self.anchor_x[lanes] = np.where(changed, self.intensity[lanes], self.anchor_x[lanes])
            self.anchor_t[lanes] = np.where(changed, self.t, self.anchor_t[lanes])
            self.rate[lanes] = np.where(changed, self.up if rate is None else rate, self.rate[lanes])
            self.target[lanes] = new
            self.target_gen += 1
        return changed

    def jump(self, x: float, now: float, lanes: slice = slice(None)) -> None:
        """Intensity, target and level set to ``x`` at once, with no ramp (a stop's calm start)."""
        self.intensity[lanes] = x
        self.target[lanes] = x
        self.target_gen += 1
        self.anchor_x[lanes] = x
        self.anchor_t[lanes] = now
        lv = np.asarray(self.table.level_index(self.intensity[lanes]))
        self.level_since[lanes] = np.where(lv != self.level[lanes], now, self.level_since[lanes])
        self.level[lanes] = lv

    # ------------------------------------------------------------------ readings
    def ingest(self, t: float, bpm: np.ndarray, rr: np.ndarray | None = None, contact: np.ndarray | None = None,
               mask: np.ndarray | None = None, rmssd: bool = True) -> float:
        """Readings taken at ``t`` (for the lanes in ``mask``). Out-of-order times never move
        features back. Returns the time the features were advanced to. ``rmssd=False``: the
        frame's RMSSD is left to the next update that computes it (FeatureBank.update), for a
        caller that reads the frame only after a :meth:`refresh` (the simulator)."""
        t = max(t, float(np.max(self.last_feature_t, where=True if mask is None else mask, initial=-np.inf)))
        self.frame = self.bank.update(t, bpm, rr, contact, mask=mask, rmssd=rmssd)
        self.last_feature_t = np.where(mask, t, self.last_feature_t) if mask is not None \
            else np.full(self.n, t)
        record_rise_stats(self.course_stats, np.ones(self.n, bool) if mask is None else mask, self.frame.hr_delta,
                          self.frame.lost)
        return t

    def lost(self, now: float) -> np.ndarray:
        b = self.bank
        return signal_lost(b.seen_valid, b.t_valid, now, b.cfg.lost_after_s)

    def held(self, now: float) -> np.ndarray:
        """Targets after the loss-of-signal hold at ``now`` (for :meth:`set_target`)."""
        return lost_hold(self.target, self.intensity, self.lost(now))

    # ------------------------------------------------------------------ decisions
    def refresh(self, now: float, mask: np.ndarray | None = None) -> None:
        """Features brought up to ``now`` for lanes about to decide. Only here and on readings,
        so a decision depends on the samples seen and the decision times alone, never on the
        tick rate: a replay re-derives it exactly from the log."""
        tf = np.maximum(now, self.last_feature_t)
        # all lanes share the session clock: the max over lanes is max(now, last) of each
        self.frame = self.bank.update(float(tf.max()), np.full(self.n, np.nan), mask=mask)
        self.last_feature_t = tf if mask is None else np.where(mask, tf, self.last_feature_t)

    def observation(self, now: float | None = None, lanes: slice = slice(None)) -> Observation:
        now = self.t if now is None else now
        f, b = self.frame, self.bank
        if f.rmssd is None:  # readings ingested with rmssd=False and no refresh since: the bank has it
            self.frame = f = replace(f, rmssd=b.rmssd_now())
        n = len(self.intensity[lanes])
        return Observation(
            t=np.full(n, now), intensity=self.intensity[lanes].copy(), target=self.target[lanes].copy(),
            level=self.level[lanes].copy(), level_frac=self.level[lanes] / max(len(self.levels) - 1, 1),
            time_at_level=now - self.level_since[lanes], hr=f.hr[lanes], baseline=f.baseline[lanes],
            hr_delta=f.hr_delta[lanes], hr_slope=f.hr_slope[lanes], rmssd=f.rmssd[lanes], quality=f.quality[lanes],
            lost=f.lost[lanes], since_valid=np.where(b.seen_valid[lanes], now - b.t_valid[lanes], math.inf),
            suds=self.suds_last[lanes].copy(), suds_age=now - self.suds_t[lanes],
            suds_peak=self.suds_peak[lanes].copy(), look_away=self.look[lanes].copy(),
            max_hr=np.full(n, self.max_hr),
            **course_observation({k: v[lanes] for k, v in self.course_ctx.items()},
                                 self.course_stats["first_suds"][lanes], self.course_stats["first_level"][lanes]))

    def next_course_context(self, duration_s) -> dict:
        """The course context of the next session, from this one (every lane)."""
        return next_course_context(self.course_ctx, self.max_level, self.course_stats, duration_s)

    def decide(self, now: float, obs: Observation, prop: Proposal, shield: SafetyShield | None,
               lanes: slice = slice(None)) -> tuple[ShieldResult, np.ndarray]:
        """The proposal through the shield moves the target; a SUDS question is asked where the
        controller wants one, none is pending and the shield's question budget allows it. Returns
        the shield's result (with ``asked`` and ``ask_refused``) and where it asked."""
        delta = np.asarray(prop.delta, dtype=float)
        if shield is not None:
            res = shield.apply(obs, delta)
        else:
            res = ShieldResult(np.where(np.isfinite(delta), delta, 0.0), np.zeros(len(delta), np.int8))
        asked = np.zeros(len(delta), bool)
        # --- question budget: the shield screens the controller's SUDS questions
        refused = np.zeros(len(delta), bool)
        if prop.ask_suds is not None:
            want = np.asarray(prop.ask_suds, bool) & np.isnan(self.pending[lanes])  # none open
            if shield is not None:
                want, refused = shield.screen_asks(now, want)
            asked = self.ask_suds(now, want, lanes)
        res.asked, res.ask_refused = asked, refused
        # --- end question budget
        self.set_target(retarget(self.target[lanes], res.delta), lanes)
        return res, asked

    # ------------------------------------------------------------------ SUDS
    def ask_suds(self, now: float, ask, lanes: slice = slice(None)) -> np.ndarray:
        """Ask where ``ask`` and no question is pending. Returns where a question was asked."""
        ask = np.asarray(ask, bool) & np.isnan(self.pending[lanes])
        self.pending[lanes] = np.where(ask, now, self.pending[lanes])
        return ask

    def suds_due(self, now: float, delay_s: float = SUDS_DELAY_S) -> np.ndarray:
        """Where a simulated patient answers now: a question pending for ``delay_s``."""
        return ~np.isnan(self.pending) & (now - self.pending >= delay_s)

    def record_suds(self, now: float, value, mask: np.ndarray | None = None) -> None:
        """SUDS answers (0..100) given at ``now``; they close the pending question."""
        m = np.ones(self.n, bool) if mask is None else mask
        v = np.asarray(value, dtype=float)
        self.suds_last = np.where(m, v, self.suds_last)
        self.suds_t = np.where(m, now, self.suds_t)
        self.suds_peak = np.where(m, np.where(np.isnan(self.suds_peak), v, np.maximum(self.suds_peak, v)),
                                  self.suds_peak)
        self.pending = np.where(m, np.nan, self.pending)
        record_suds_stats(self.course_stats, m, np.broadcast_to(v, m.shape), self.level)


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
