"""The safety shield: one object after every controller, in training and in sessions alike.

Rules, applied per patient to a proposed change of intensity:

1. **Signal lost** → no increase (hold); after ``lost_step_down_s`` seconds of loss, step down.
2. **Poor signal** (quality below ``min_quality``) → no increase.
3. **Distress ceiling** → force a step down of ``step_down``: HR above ``ceiling_hr_frac`` of
   the patient's max HR for ``ceiling_hold_s`` seconds, HR more than ``ceiling_hr_delta`` bpm
   over baseline, or a SUDS of ``ceiling_suds`` or more in the last ``suds_fresh_s`` seconds.
4. **Rate cap** → an increase is capped at ``max_up`` per decision.
5. **Question budget** → a controller's request for a SUDS rating is refused when the shield let
   one through less than ``min_ask_interval_s`` (60 s) before for that patient
   (:meth:`SafetyShield.screen_asks`). A question interrupts immersion; one a minute is what a
   therapist running the SUDS protocol asks. A therapist's own question (the ``ask_suds``
   command) does not pass through the shield and is never refused.

The shield never raises intensity by itself: its output is never above the proposal. A
non-finite proposal is treated as "hold" and counted. Every intervention is reported with
a code (see ``REASONS``), counted in :attr:`SafetyShield.counts` and logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from policy.observation import Observation

log = logging.getLogger(__name__)

#: changes of target smaller than this are floating-point noise, not interventions
NOISE = 1e-9
NONE, CAPPED, CEILING_HR, CEILING_DELTA, CEILING_SUDS, LOST_HOLD, LOST_DOWN, POOR_HOLD, BAD_PROPOSAL, ASK_REFUSED = \
    range(10)
REASONS = (
    "",
    "increase capped to the maximum step",
    "HR above the ceiling share of max HR: stepping down",
    "HR rise over baseline above the ceiling: stepping down",
    "SUDS at or above the ceiling: stepping down",
    "signal lost: holding",
    "signal lost too long: stepping down",
    "poor signal quality: holding",
    "controller proposed a non-finite change: holding",
    "SUDS question refused: less than the minimum interval since the last one",
)


class ShieldError(Exception):
    """A proposal the shield cannot judge (wrong shape)."""


@dataclass(frozen=True)
class ShieldConfig:
    max_up: float = 0.10
    step_down: float = 0.15
    ceiling_hr_frac: float = 0.85
    ceiling_hold_s: float = 15.0
    ceiling_hr_delta: float = 35.0
    ceiling_suds: float = 90.0
    suds_fresh_s: float = 120.0
    min_quality: float = 0.5
    lost_step_down_s: float = 30.0
    min_ask_interval_s: float = 60.0


@dataclass
class ShieldResult:
    delta: np.ndarray
    code: np.ndarray  # per patient, index into REASONS (0: no intervention)
    #: per patient: a SUDS question the controller wanted was asked / refused by the question budget
    asked: np.ndarray | None = None
    ask_refused: np.ndarray | None = None

    def why(self, i: int = 0) -> str:
        return REASONS[int(self.code[i])]


class SafetyShield:
    def __init__(self, config: ShieldConfig | None = None):
        self.cfg = config or ShieldConfig()
        self.counts = {r: 0 for r in REASONS[1:]}
        self.reset(1)

    def reset(self, n: int) -> None:
        self.n = n
        self.above_since = np.full(n, np.nan)
        self.last_ask = np.full(n, -np.inf)  # when the shield last let a controller's question through

    def screen_asks(self, now: float, want) -> tuple[np.ndarray, np.ndarray]:
        """The question budget over N lanes: of the lanes whose controller wants a SUDS rating now
        (``want``; lanes with a question still open are not passed), those allowed and those
        refused because the last allowed question was less than ``min_ask_interval_s`` ago.
        Refusals are counted and logged; allowed questions start the next interval."""
        want = np.asarray(want, dtype=bool)
        if want.shape != (self.n,):
            raise ShieldError(f"ask has shape {want.shape}, expected ({self.n},)")
        ok = want & (now - self.last_ask >= self.cfg.min_ask_interval_s - NOISE)
        refused = want & ~ok
        self.last_ask = np.where(ok, now, self.last_ask)
        k = int(refused.sum())
        if k:
            self.counts[REASONS[ASK_REFUSED]] += k
            if self.n == 1:
                log.info("shield: %s", REASONS[ASK_REFUSED])
        return ok, refused

    def describe(self) -> dict:
        return {"name": "shield", "config": self.cfg.__dict__}

    def apply(self, obs: Observation, delta: np.ndarray) -> ShieldResult:
        c = self.cfg
        delta = np.asarray(delta, dtype=float)
        if delta.shape != (self.n,):
            raise ShieldError(f"proposal has shape {delta.shape}, expected ({self.n},)")
        code = np.zeros(self.n, dtype=np.int8)
        bad = ~np.isfinite(delta)
        out = np.where(bad, 0.0, delta)
        code[bad] = BAD_PROPOSAL

        over = obs.hr > c.ceiling_hr_frac * obs.max_hr
        over &= ~obs.lost
        self.above_since = np.where(over, np.where(np.isnan(self.above_since), obs.t,
                                                   self.above_since), np.nan)
        hr_ceiling = over & (obs.t - self.above_since >= c.ceiling_hold_s)
        delta_ceiling = ~obs.lost & (obs.hr_delta > c.ceiling_hr_delta)
        suds_ceiling = (obs.suds >= c.ceiling_suds) & (obs.suds_age <= c.suds_fresh_s)

        # Rate cap first; the stronger rules below override it.
        capped = out > c.max_up
        out = np.where(capped, c.max_up, out)
        code[capped & (code == NONE)] = CAPPED

        poor = ~obs.lost & (obs.quality < c.min_quality) & (out > 0)
        out = np.where(poor, 0.0, out)
        code[poor] = POOR_HOLD

        lost_hold = obs.lost & (out > 0)
        out = np.where(lost_hold, 0.0, out)
        code[lost_hold] = LOST_HOLD
        # no valid reading yet: the signal has been missing since the start, not for ever
        missing_s = np.where(np.isinf(obs.since_valid), obs.t, obs.since_valid)
        lost_down = obs.lost & (missing_s >= c.lost_step_down_s)
        for mask, cd in ((suds_ceiling, CEILING_SUDS), (delta_ceiling, CEILING_DELTA),
                         (hr_ceiling, CEILING_HR), (lost_down, LOST_DOWN)):
            down = mask & (out > -c.step_down)
            out = np.where(down, -c.step_down, out)
            code[down] = cd

        # Never above the proposal: the shield only holds or lowers.
        out = np.minimum(out, np.where(bad, 0.0, delta))
        # An intervention is a change of where the target goes: floating-point noise (0.1 + 3e-17
        # capped to 0.1) or a step down at the floor that the proposal would have reached anyway
        # is none, and is neither counted nor attributed to the shield. (The output is left as
        # computed, so trajectories do not change; only the bookkeeping does.)
        clip = lambda d: np.clip(obs.target + d, 0.0, 1.0)  # noqa: E731
        same = ~bad & (np.abs(clip(out) - clip(delta)) <= NOISE)
        code[same] = NONE
        hit = code != NONE
        if hit.any():
            for cd in np.unique(code[hit]):
                k = int(np.sum(code == cd))
                self.counts[REASONS[cd]] += k
                if self.n == 1:
                    log.info("shield: %s", REASONS[cd])
        return ShieldResult(out, code)
