"""Controllers: features → a proposed change of intensity, vectorised over N patients.

Every controller — the RL policy and the clinical baselines — shares this interface, so any of
them can drive a live session (N = 1), the gymnasium env, the evaluator or a counterfactual
replay. A controller never changes intensity itself: its proposal always goes through the
safety shield, and then through the therapist arbiter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from policy.errors import PolicyError
from policy.observation import Observation


class ControllerError(PolicyError):
    """A controller that cannot be built or returned a malformed proposal."""


@dataclass
class Proposal:
    delta: np.ndarray  # proposed change of intensity, per patient
    reason: np.ndarray  # index into ``reasons``, per patient
    reasons: tuple[str, ...]
    ask_suds: np.ndarray | None = None  # bool per patient: ask the patient for a SUDS rating
    info: dict = field(default_factory=dict)  # e.g. action probabilities of a learned policy

    def why(self, i: int = 0) -> str:
        return self.reasons[int(self.reason[i])]


class Controller:
    """Base class. Subclasses set ``name``, ``version`` and implement :meth:`propose`."""

    name = "base"
    version = "0"
    #: seconds between decisions; the session calls :meth:`propose` at this cadence
    decision_interval = 5.0
    #: evaluation-only controllers (the oracle) cannot run a live session
    live = True

    def reset(self, n: int, levels: np.ndarray, rng: np.random.Generator | None = None) -> None:
        """Start a new session for N patients on a hierarchy whose levels sit at ``levels``."""
        self.n = n
        self.levels = np.asarray(levels, dtype=float)
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def propose(self, obs: Observation) -> Proposal:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version,
                "decision_interval": self.decision_interval}


class Ladder(Controller):
    """The fixed ladder: one hierarchy level up every ``step_s`` seconds, whatever happens."""

    name = "ladder"
    version = "1"
    REASONS = ("wait at level", "next rung of the ladder", "top of the ladder")

    def __init__(self, step_s: float = 180.0):
        self.step_s = step_s

    def propose(self, obs: Observation) -> Proposal:
        n_levels = len(self.levels)
        due = obs.time_at_level >= self.step_s
        nxt = np.minimum(obs.level + 1, n_levels - 1)
        top = obs.level >= n_levels - 1
        step = due & ~top
        delta = np.where(step, self.levels[nxt] - obs.target, 0.0)
        reason = np.where(step, 1, np.where(top, 2, 0))
        return Proposal(delta, reason, self.REASONS)


#: name → factory, or ``"module:attribute"`` imported on first use (an explicit table, no
#: registration by import side effect; the live path never imports torch or gymnasium).
_CONTROLLERS: dict[str, type[Controller] | object | str] = {
    "ladder": Ladder,
    "suds": "policy.baselines:SudsProtocol",
    "hr-band": "policy.baselines:HRBand",
    "hr-pid": "policy.baselines:HRPid",
    "oracle": "policy.baselines:Oracle",
    "none": "policy.baselines:Sham",
    "policy": "policy.learned:LearnedController",
}


def register_controller(name: str, factory) -> None:
    """Make ``name`` available to ``--controller`` and ``--controllers`` (for research code)."""
    _CONTROLLERS[name] = factory


def _factory(name: str):
    f = _CONTROLLERS[name]
    if isinstance(f, str):
        module, _, attr = f.partition(":")
        f = _CONTROLLERS[name] = getattr(importlib.import_module(module), attr)
    return f


def controller_names(live_only: bool = False) -> list[str]:
    names = sorted(_CONTROLLERS)
    if live_only:
        names = [n for n in names if getattr(_factory(n), "live", True)]
    return names


def make_controller(name: str, **kwargs) -> Controller:
    if name not in _CONTROLLERS:
        raise ControllerError(
            f"unknown controller {name!r}: choose one of {', '.join(sorted(_CONTROLLERS))}")
    return _factory(name)(**kwargs)
