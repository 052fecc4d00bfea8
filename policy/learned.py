"""The ``policy`` controller: the trained RL policy, run live and in evaluation.

It loads the policy bundle shipped for a scene (``policy/models/<scene>/policy.npz``, written
by ``exposure train``) and runs the actor in numpy: VecNormalize's observation statistics,
the MLP, the action head — microseconds per decision, no torch in a live session. It is
vectorised over N like every controller, so the evaluator runs it over thousands of virtual
patients at once.

Each proposal carries, in ``info``, what the session logs with each decision: the policy's
input vector (``obs``), the probability of each action (``probs``), the action taken and the
bundle it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .controllers import Controller, ControllerError, Proposal, register_controller
from .numpy_mlp import BundleError, NumpyActor, load_bundle
from .observation import OBS_VERSION, VECTOR_FIELDS, Observation

MODELS_DIR = Path(__file__).with_name("models")
BUNDLE_NAME = "policy.npz"

#: the policy's moves: change of target intensity per decision (the shield caps rises at 0.10)
MOVES = (-0.12, -0.04, 0.0, 0.04)
#: action = (move index, ask for a SUDS rating 0/1)
ACTION_NVEC = (len(MOVES), 2)
#: version of the policy's input vector (PolicyInput); a bundle records the one it was trained on
INPUT_VERSION = 1


class PolicyInput:
    """The policy's input from an Observation: the observation vector, then the SUDS peak at
    the current level. The same code builds it in training and in sessions."""

    dim = len(VECTOR_FIELDS) + 1
    fields = (*VECTOR_FIELDS, "suds_peak")

    def reset(self, n: int) -> None:
        self.n = n

    def __call__(self, obs: Observation) -> np.ndarray:
        peak = np.asarray(obs.suds_peak, dtype=float)
        peak = np.where(np.isfinite(peak), peak / 100.0, -1.0)
        return np.concatenate([obs.vector(), peak[:, None].astype(np.float32)], axis=1)


def decode_action(act: np.ndarray, obs: Observation, moves=MOVES) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) actions → (change of target intensity, ask for SUDS) per patient."""
    act = np.asarray(act).reshape(len(obs.t), -1)
    delta = np.asarray(moves, dtype=float)[act[:, 0]]
    return delta, act[:, 1].astype(bool)


def shipped_bundle(scene: str) -> Path:
    return MODELS_DIR / scene / BUNDLE_NAME


class LearnedController(Controller):
    """A trained actor behind the controller interface."""

    name = "policy"
    learned = True
    live = True

    def __init__(self, scene: str = "heights", path: str | Path | None = None,
                 actor: NumpyActor | None = None, deterministic: bool = True):
        if actor is None:
            p = Path(path) if path is not None else shipped_bundle(scene)
            if path is None and not p.exists():
                raise ControllerError(f"no trained policy is shipped for scene {scene!r} ({p}); "
                                      f"train one with: exposure train --scene {scene}")
            try:
                actor = load_bundle(p)
            except BundleError as e:
                raise ControllerError(str(e)) from None
            self.path = str(p)
        else:
            self.path = None
        meta = actor.meta
        if meta.get("obs_version") != OBS_VERSION or meta.get("input_version") != INPUT_VERSION:
            raise ControllerError(f"the policy was trained on observation version {meta.get('obs_version')}/"
                                  f"{meta.get('input_version')}, this software computes {OBS_VERSION}/"
                                  f"{INPUT_VERSION}: retrain it")
        if meta.get("scene") != scene:
            raise ControllerError(f"the policy was trained for scene {meta.get('scene')!r}, not {scene!r}")
        self.moves = tuple(float(m) for m in meta.get("moves", MOVES))
        if actor.nvec != (len(self.moves), 2) or actor.obs_dim != PolicyInput.dim:
            raise ControllerError(f"the policy's actions {actor.nvec} or inputs ({actor.obs_dim}) do not fit "
                                  f"this software ({(len(self.moves), 2)}, {PolicyInput.dim}): retrain it")
        self.actor = actor
        self.scene = scene
        self.deterministic = deterministic
        self.version = str(meta.get("version", "0"))
        self.decision_interval = float(meta.get("decision_interval", Controller.decision_interval))
        self.inp = PolicyInput()
        self.reasons = tuple(
            ("policy: hold" if m == 0 else f"policy: intensity {m:+.2f}") + s
            for m in self.moves for s in ("", " and ask for SUDS"))

    def reset(self, n, levels, rng=None):
        super().reset(n, levels, rng)
        self.inp.reset(n)

    def describe(self) -> dict:
        m = self.actor.meta
        return {**super().describe(), "scene": self.scene, "bundle": self.path, "inputs": list(PolicyInput.fields),
                "moves": list(self.moves),
                "trained": {k: m.get(k) for k in ("seed", "timesteps", "population", "version")}}

    def propose(self, obs: Observation) -> Proposal:
        x = self.inp(obs)
        act, probs = self.actor.act(x, None if self.deterministic else self.rng)
        delta, ask = decode_action(act, obs, self.moves)
        reason = act[:, 0] * 2 + act[:, 1]
        if len(x) == 1:
            info = {"obs": [round(float(v), 5) for v in x[0]],
                    "probs": [[round(float(v), 5) for v in p[0]] for p in probs],
                    "action": [int(a) for a in act[0]], "bundle": self.version}
        else:
            info = {"obs": x, "probs": probs, "action": act, "bundle": self.version}
        return Proposal(delta=delta, reason=reason, reasons=self.reasons, ask_suds=ask, info=info)


register_controller("policy", LearnedController)
