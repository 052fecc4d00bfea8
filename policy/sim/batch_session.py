"""L virtual patients in sessions, stepped exactly as a headless live session steps them.

The session rules are :class:`policy.step.SessionStep` over L lanes — the same code a live
session runs with N = 1. What this adds is the simulated world around it, as
``engine.session.live.Session.run_headless`` with the ``sim://`` source and ``--speed max``
provides it: the session ticks every ``tick_s`` (0.25 s); the virtual patient advances on whole
seconds and feels the intensity of the last tick before each second; a SUDS question is answered
``suds_delay_s`` later; each controller group decides every ``decision_interval`` seconds. So the
``sim://`` source in a live session, the env and the evaluator give identical trajectories for
the same patient and controller (tests/policy/test_patients_identity.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from policy.controllers import Controller, Proposal
from policy.observation import Observation
from policy.shield import SafetyShield, ShieldResult
from policy.sim.patient import model
from policy.step import (
    MAX_HR_ESTIMATE,
    RAMP_DOWN_PER_S,
    RAMP_UP_PER_S,
    SUDS_DELAY_S,
    TICK_S,
    SceneTable,
    SessionStep,
    first_course_context,
    lost_hold,
)
from sensors.features import FeatureConfig


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
    Use :meth:`start_session`, then for each group :meth:`decisions` yields: :meth:`observation` →
    propose → :meth:`apply` (or loop ``due = advance()`` yourself, one decision at a time, as the env does).
    """

    def __init__(self, params: model.Params, table: SceneTable, groups: list[tuple[Controller, SafetyShield | None]],
                 config: DynamicsConfig | None = None, features: FeatureConfig | None = None, seed: int = 0):
        self.p = params
        #: (params, intensity) the effective intensity ``seen_u`` was computed from (see _see)
        self._seen_from: tuple | None = None
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
        #: where each lane stands in its course; the course runner sets it between sessions
        #: from :meth:`next_course_context`, and each session's step starts from it
        self.course_ctx = first_course_context(params.n, len(self.levels))

    # the session state lives in the step
    intensity = property(lambda self: self.s.intensity)
    target = property(lambda self: self.s.target)
    level = property(lambda self: self.s.level)
    max_level = property(lambda self: self.s.max_level)

    # ------------------------------------------------------------------ sessions
    def start_session(self, duration_s: float, start: np.ndarray | None = None) -> None:
        """Start the next session (the model state carries over; the session starts afresh,
        at ``start`` intensity per lane, default the config's start_intensity)."""
        c = self.cfg
        self.session += 1
        self.duration = float(duration_s)
        self.t = 0.0
        self.s = SessionStep(self.table, self.p.n, ramp_up_per_s=c.ramp_up_per_s, ramp_down_per_s=c.ramp_down_per_s,
                             max_hr=c.max_hr, start=c.start_intensity if start is None else start,
                             features=self.fcfg, t0=0.0)
        self.s.course_ctx = self.course_ctx
        self._no_pending = True
        self._see()
        self.reading: model.Reading | None = None
        for g in self.groups:
            g.controller.reset(g.n, self.levels, np.random.default_rng(self.seed))
            if g.shield is not None:
                g.shield.reset(g.n)
            g.next_decision = 0.0 + g.interval
        self._post_pending = False
        self._hold_until, self._hold_gen = -np.inf, -1  # see _hold_lost
        self.over = False
        self._first = True

    def next_course_context(self) -> dict:
        """The course context of the next session, from the one that just ended (every lane)."""
        return self.s.next_course_context(self.duration)

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

    def decisions(self) -> Iterator[Group]:
        """The groups due to decide, one after another, until the session is over (:meth:`advance` and
        its due groups, in a loop). Decide for each group (observation → propose → :meth:`apply`) before
        taking the next."""
        while due := self.advance():
            yield from due

    def _tick_pre(self, now: float) -> list[Group]:
        """What the live session does in a tick: the sim source's poll and SUDS answer
        (``Session.step``), then the core (``SessionCore.tick``) on the shared step."""
        s, p = self.s, self.p
        # The ramp is a function of the last change of target and the time alone (SessionStep.advance), so it
        # is brought to ``now`` only on ticks where something reads it: before the second that follows (what
        # the patient is shown, _tick_post), at the session's last tick, and lazily (below) before a SUDS
        # answer, the loss-of-signal hold or a decision, which read or move it. On the other ticks of a second
        # nothing reads it and nothing moves a target, so skipping them changes no figure.
        nxt = now + self.cfg.tick_s
        advanced = nxt == round(nxt) or not nxt < self.duration
        if advanced:
            s.advance(now)
        sample = None
        k = round(now)
        if now == k and k >= 1:  # the patient advances on whole seconds (sim source: poll)
            self.state, r = model.step(p, self.state, self.seen_u, self.seen_asked, self.session, k)
            self.reading = r
            self.on_second(k, r)
            sample = ~np.isnan(r.bpm)
            s.look = r.look_away  # the behaviour the scene reports
        if not self._no_pending:
            ans = s.suds_due(now, self.cfg.suds_delay_s)
            if ans.any():
                if not advanced:
                    s.advance(now)
                    advanced = True
                s.record_suds(now, model.suds(p, self.state, self.session, int(round(now * 1000))), ans)
                self._no_pending = bool(np.isnan(s.pending).all())
        if sample is not None and sample.any():
            r = self.reading
            # the frame is read only after a refresh (observation), which computes the RMSSD the readings changed
            s.ingest(now, r.bpm, r.rr, r.contact, mask=sample, rmssd=False)
        if now >= self._hold_until or s.target_gen != self._hold_gen:
            if not advanced:
                s.advance(now)
                advanced = True
            self._hold_lost(now)
        due = []
        for g in self.groups:
            if now >= g.next_decision:
                g.next_decision = now + g.interval
                due.append(g)
        if due:
            if not advanced:
                s.advance(now)
            m = np.zeros(p.n, bool)
            for g in due:
                m[g.lanes] = True
            s.refresh(now, m)
        return due

    def _hold_lost(self, now: float) -> None:
        """The loss-of-signal hold (SessionStep.held): where the signal is lost, a rising target is held.

        Once applied it is a no-op on the following ticks until a target changes (``target_gen``) or a
        lane whose signal is not lost now becomes lost: after the hold a lost lane's target is at or
        below its intensity, and the ramp moves intensity toward the target, never past it; readings only
        end losses; and a lane not lost now cannot become lost before its last valid reading plus
        ``lost_after_s`` (the earliest of those, with a margin for rounding, is when to look again); a lane
        whose loss ends later has its last valid reading after ``now``, so it cannot be lost again before
        ``now + lost_after_s``, which bounds the time to look again when every lane is lost now. So the
        ticks in between skip it, with the same targets to the bit."""
        s = self.s
        lost = s.lost(now)
        if lost.any():  # elsewhere the hold leaves every target as it is
            s.set_target(lost_hold(s.target, s.intensity, lost))
        b = s.bank
        tv = b.t_valid[~lost]
        self._hold_until = min(float(tv.min()) if len(tv) else now, now) + b.cfg.lost_after_s - 1e-6
        self._hold_gen = s.target_gen

    def _tick_post(self) -> None:
        nxt = self.t + self.cfg.tick_s
        if nxt == round(nxt):  # what the patient feels during the coming second (Session.step: observe)
            self._see()

    def _see(self) -> None:
        s = self.s
        # the effective intensity is a function of the intensity and the patients' parameters alone:
        # while neither changed (a ramp at rest) it is not computed again
        seen = self._seen_from
        if seen is None or seen[0] is not self.p:
            self.seen_u = model.effective_intensity(self.p, s.intensity, self.table.params_at(s.intensity))
            self._seen_from = (self.p, s.intensity.copy())
        else:  # only the lanes whose intensity moved
            ch = np.flatnonzero(seen[1] != s.intensity)
            if len(ch):
                x = s.intensity[ch]
                u = self.seen_u.copy()
                u[ch] = model.effective_intensity(self.p, x, self.table.params_at(x), lanes=ch)
                self.seen_u = u
                seen[1][ch] = x
        self.seen_asked = ~np.isnan(s.pending)

    def on_second(self, k: int, r: model.Reading) -> None:
        """Hook for accumulating metrics each simulated second (overridden by users)."""

    # ------------------------------------------------------------------ decisions
    def observation(self, g: Group) -> Observation:
        return self.s.observation(self.t, g.lanes)

    def hidden(self, g: Group) -> dict:
        """The hidden state of a group's patients (for the oracle; evaluation only)."""
        sl, s, p = g.lanes, self.state, self.p
        return {"fear": s.A[sl], "optimal_arousal": p.optimal_arousal[sl], "overwhelm": p.overwhelm[sl],
                "escape": p.escape[sl], "sensitisation": s.S[sl], "escaped": s.escaped[sl],
                "dropped": s.dropped[sl]}

    def apply(self, g: Group, obs: Observation, prop: Proposal) -> ShieldResult:
        """The shielded proposal moves the target (as ``SessionCore`` does at a decision)."""
        res, asked = self.s.decide(self.t, obs, prop, g.shield, g.lanes)
        if asked.any():
            self._no_pending = False
        return res
