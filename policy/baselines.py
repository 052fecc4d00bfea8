"""The clinical baselines and the oracle, vectorised over N patients behind the Controller
interface (features → proposal), usable live, in evaluation and in counterfactual replay.

- ``suds``: the SUDS step protocol — ask each minute; step up one level once fear has fallen
  by half from the level's peak (a rating of 10 or less counts as halved) and is ≤ 40 on two
  answers in a row, after at least 3 min at the level; step down one level at ≥ 85.
- ``hr-band``: hold the neutral first level while the resting baseline forms; then keep the HR
  rise over that baseline inside a band of 5–10 bpm (up a level below it, down a level above
  it, at most one change every 3 min, like the SUDS protocol's minimum time at a level);
  back to the first level when HR passes 85% of max HR.
- ``hr-pid``: a PID controller of the HR rise toward the middle of that band (after Parnandi
  & Gutierrez-Osuna 2015), in small steps of intensity, with the same reset.
- ``none``: sham exposure, the control arm of the calibration anchors — the neutral first level
  of the hierarchy for the whole session (the same minutes in VR as a treatment, no exposure).
- ``oracle``: sees the hidden fear and the patient's own optimal arousal and overwhelm
  threshold, and keeps fear in the therapeutic window. Evaluation only (``live = False``).
"""

from __future__ import annotations

import numpy as np

from policy.controllers import Controller, Proposal
from policy.observation import Observation


def _level_delta(ctl: Controller, obs: Observation, step: np.ndarray) -> np.ndarray:
    """Change of target that moves ``step`` (−1, 0, +1) levels from the current level."""
    lv = np.clip(obs.level + step, 0, len(ctl.levels) - 1)
    return np.where(step != 0, ctl.levels[lv] - obs.target, 0.0)


class SudsProtocol(Controller):
    name = "suds"
    version = "1"
    decision_interval = 5.0
    REASONS = ("wait at level", "fear halved from the level's peak and ≤ 40 twice: next level",
               "SUDS ≥ 85: one level down", "top of the hierarchy", "asking for a SUDS rating")

    def __init__(self, ask_every_s: float = 60.0, min_at_level_s: float = 180.0, low: float = 40.0,
                 high: float = 85.0, times: int = 2):
        self.ask_every_s, self.min_at_level_s, self.low, self.high, self.times = (
            ask_every_s, min_at_level_s, low, high, times)

    def reset(self, n, levels, rng=None):
        super().reset(n, levels, rng)
        self.good = np.zeros(n, int)
        self.seen_t = np.full(n, -np.inf)
        self.last_level = np.full(n, -1)

    def propose(self, obs: Observation) -> Proposal:
        answer_t = obs.t - obs.suds_age
        new = np.isfinite(answer_t) & (answer_t != self.seen_t)
        self.seen_t = np.where(new, answer_t, self.seen_t)
        moved = obs.level != self.last_level
        self.last_level = obs.level.copy()
        self.good = np.where(moved, 0, self.good)
        fresh_here = new & ~moved & np.isfinite(obs.suds_peak)
        # halved from the level's peak; below 10 a half is not measurable in steps of 5 with the
        # answers' noise, so a rating of 10 or less counts as halved
        ok = (obs.suds <= self.low) & (obs.suds <= np.maximum(0.5 * obs.suds_peak, 10.0) + 1e-9)
        self.good = np.where(fresh_here, np.where(ok, self.good + 1, 0), self.good)
        top = obs.level >= len(self.levels) - 1
        down = new & (obs.suds >= self.high)
        up = ~down & ~top & (self.good >= self.times) & (obs.time_at_level >= self.min_at_level_s)
        step = np.where(down, -1, np.where(up, 1, 0))
        delta = _level_delta(self, obs, step)
        self.good = np.where(step != 0, 0, self.good)
        ask = ~(obs.suds_age < self.ask_every_s)
        reason = np.where(down, 2, np.where(up, 1, np.where(top, 3, np.where(ask, 4, 0))))
        info = {"ask_reason": f"SUDS protocol: a rating every {self.ask_every_s:.0f} s"} if ask.any() else {}
        return Proposal(delta, reason, self.REASONS, ask_suds=ask, info=info)


class HRBand(Controller):
    name = "hr-band"
    version = "1"
    decision_interval = 5.0
    REASONS = ("HR rise within the band: hold", "HR rise below the band: next level",
               "HR rise above the band: one level down", "HR above 85% of max: back to the first level",
               "forming the resting baseline", "waiting before the next change", "no valid HR: hold")

    def __init__(self, low: float = 5.0, high: float = 10.0, dwell_s: float = 180.0, baseline_s: float = 120.0,
                 reset_frac: float = 0.85):
        self.low, self.high, self.dwell_s, self.baseline_s, self.reset_frac = low, high, dwell_s, baseline_s, reset_frac

    def reset(self, n, levels, rng=None):
        super().reset(n, levels, rng)
        self.last_change = np.full(n, -np.inf)

    def propose(self, obs: Observation) -> Proposal:
        rise = obs.hr_delta
        valid = np.isfinite(rise) & ~obs.lost
        forming = obs.t <= self.baseline_s
        over = valid & (obs.hr > self.reset_frac * obs.max_hr)
        waited = obs.t - self.last_change >= self.dwell_s
        up = valid & ~forming & ~over & waited & (rise < self.low)
        down = valid & ~forming & ~over & waited & (rise > self.high)
        step = np.where(up, 1, np.where(down, -1, 0))
        delta = np.where(over, -obs.target, _level_delta(self, obs, step))
        changed = over | (delta != 0)
        self.last_change = np.where(changed, obs.t, self.last_change)
        reason = np.where(over, 3, np.where(~valid, 6, np.where(forming, 4, np.where(
            up, 1, np.where(down, 2, np.where(~waited, 5, 0))))))
        return Proposal(delta, reason, self.REASONS)


class HRPid(Controller):
    name = "hr-pid"
    version = "1"
    decision_interval = 5.0
    REASONS = ("PID toward the HR-rise set point", "HR above 85% of max: back to the start",
               "forming the resting baseline", "no valid HR: hold")

    def __init__(self, setpoint: float = 7.5, kp: float = 0.004, ki: float = 0.00005, kd: float = 0.01,
                 max_step: float = 0.05, baseline_s: float = 120.0, reset_frac: float = 0.85):
        self.setpoint, self.kp, self.ki, self.kd = setpoint, kp, ki, kd
        self.max_step, self.baseline_s, self.reset_frac = max_step, baseline_s, reset_frac

    def reset(self, n, levels, rng=None):
        super().reset(n, levels, rng)
        self.integral = np.zeros(n)
        self.prev_err = np.full(n, np.nan)

    def propose(self, obs: Observation) -> Proposal:
        valid = np.isfinite(obs.hr_delta) & ~obs.lost
        forming = obs.t <= self.baseline_s
        over = valid & (obs.hr > self.reset_frac * obs.max_hr)
        act = valid & ~forming & ~over
        err = np.where(valid, self.setpoint - np.where(valid, obs.hr_delta, 0.0), 0.0)
        self.integral = np.where(act, np.clip(self.integral + err * self.decision_interval, -400, 400),
                                 np.where(over, 0.0, self.integral))
        d = np.where(np.isnan(self.prev_err), 0.0, err - self.prev_err)
        self.prev_err = np.where(act, err, self.prev_err)
        u = np.clip(self.kp * err + self.ki * self.integral + self.kd * d, -self.max_step, self.max_step)
        delta = np.where(over, -obs.target, np.where(act, u, 0.0))
        reason = np.where(over, 1, np.where(~valid, 3, np.where(forming, 2, 0)))
        return Proposal(delta, reason, self.REASONS)


class Sham(Controller):
    """No exposure: the neutral first level for the whole session, whatever happens."""

    name = "none"
    version = "1"
    decision_interval = 5.0
    REASONS = ("sham: the neutral first level only",)

    def propose(self, obs: Observation) -> Proposal:
        return Proposal(self.levels[0] - obs.target, np.zeros(obs.n, int), self.REASONS)


class Oracle(Controller):
    """Sees the hidden state (evaluation only): keeps fear in the patient's own window."""

    name = "oracle"
    version = "1"
    decision_interval = 5.0
    live = False
    needs_hidden = True
    REASONS = ("fear in the window: hold", "fear below the window: up", "fear above the window: down",
               "hidden state not given: hold")

    def __init__(self, step: float = 0.04, margin: float = 8.0):
        self.step, self.margin = step, margin
        self.hidden: dict | None = None

    def see(self, hidden: dict) -> None:
        self.hidden = hidden

    def propose(self, obs: Observation) -> Proposal:
        h = self.hidden
        if h is None:
            return Proposal(np.zeros(obs.n), np.full(obs.n, 3), self.REASONS)
        fear, opt, over = h["fear"], h["optimal_arousal"], h["overwhelm"]
        hi = np.minimum(opt + self.margin, over - 10.0)
        lo = np.minimum(opt - self.margin, hi - 5.0)
        up = fear < lo
        down = fear > hi
        delta = np.where(up, self.step, np.where(down, -self.step, 0.0))
        return Proposal(delta, np.where(up, 1, np.where(down, 2, 0)), self.REASONS)
