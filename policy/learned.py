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
from .observation import OBS_VERSION, Observation

MODELS_DIR = Path(__file__).with_name("models")
BUNDLE_NAME = "policy.npz"


def shipped_bundle(scene: str) -> Path:
    return MODELS_DIR / scene / BUNDLE_NAME


class LearnedController(Controller):
    """A trained actor behind the controller interface."""

    name = "policy"
    learned = True
    REASONS = ("policy: step down", "policy: hold", "policy: step up")

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
        if meta.get("obs_version", OBS_VERSION) != OBS_VERSION:
            raise ControllerError(f"the policy was trained on observation version {meta.get('obs_version')}, "
                                  f"this software computes version {OBS_VERSION}: retrain it")
        if meta.get("scene", scene) != scene:
            raise ControllerError(f"the policy was trained for scene {meta.get('scene')!r}, not {scene!r}")
        self.actor = actor
        self.scene = scene
        self.deterministic = deterministic
        self.version = str(meta.get("version", "0"))
        self.decision_interval = float(meta.get("decision_interval", Controller.decision_interval))
        self.action = _action_codec(meta)

    def describe(self) -> dict:
        m = self.actor.meta
        return {**super().describe(), "scene": self.scene, "bundle": self.path,
                "trained": {k: m.get(k) for k in ("seed", "timesteps", "population", "trained_at", "version")}}

    def propose(self, obs: Observation) -> Proposal:
        x = self.action.observe(obs)
        act, probs = self.actor.act(x, None if self.deterministic else self.rng)
        delta, ask = self.action.decode(act, obs, self.levels)
        move = act[:, 0].astype(np.int64)
        info = {"obs": x[0].round(5).tolist() if len(x) == 1 else x,
                "probs": [p[0].round(5).tolist() for p in probs] if len(x) == 1 else probs,
                "action": act[0].tolist() if len(x) == 1 else act,
                "bundle": self.version}
        return Proposal(delta=delta, reason=np.clip(move, 0, 2), reasons=self.REASONS, ask_suds=ask, info=info)


class _ActionCodec:
    """Observation vector in, action → intensity change out, as the training env defines them."""

    def __init__(self, meta: dict):
        self.meta = meta

    def observe(self, obs: Observation) -> np.ndarray:
        return obs.vector()

    def decode(self, act: np.ndarray, obs: Observation, levels: np.ndarray):
        raise NotImplementedError


def _action_codec(meta: dict) -> _ActionCodec:
    return _ActionCodec(meta)


register_controller("policy", LearnedController)
