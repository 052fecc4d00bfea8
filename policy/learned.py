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

import hashlib
from pathlib import Path

import numpy as np

from policy.controllers import Controller, ControllerError, Proposal
from policy.numpy_mlp import BundleError, NumpyActor, load_bundle
from policy.observation import OBS_VERSION, VECTOR_FIELDS, Observation, action_to_delta, observation_vector

MODELS_DIR = Path(__file__).with_name("models")
BUNDLE_NAME = "policy.npz"

#: the env's action semantics the shipped policies were trained with (policy.observation.action_to_delta)
STEP_SIZE = 0.05
ASK_SUDS = True
#: version of the policy's input (policy.observation.observation_vector of the Observation)
INPUT_VERSION = 1


#: for research: a folder of candidate policies (SCENE/policy.npz + card.json) used instead of the
#: shipped ones, so ``exposure evaluate`` and bench/bench_policy.py judge a candidate before it is installed
MODELS_DIR_ENV = "EXPOSURE_POLICY_DIR"


def policy_dir() -> Path:
    import os

    d = os.environ.get(MODELS_DIR_ENV)
    return Path(d) if d else MODELS_DIR


def shipped_bundle(scene: str) -> Path:
    return policy_dir() / scene / BUNDLE_NAME


def goals_met(scene: str, models_dir: Path | None = None) -> tuple[bool, str]:
    """Whether the shipped policy's model card shows every goal met on held-out patients for
    ``scene`` (its ``goals`` block, written when a policy is judged against them), and why not.
    A card without that block, or one trained on an earlier patient model, does not qualify."""
    import json

    card = (models_dir or policy_dir()) / scene / "card.json"
    try:
        c = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, f"no readable model card for {scene}"
    goals = c.get("goals")
    if not isinstance(goals, dict) or not goals.get("results"):
        return False, "its model card does not show the goals judged on held-out patients"
    if c.get("patient_model") != "calibrated":
        return False, "it was trained and judged on the patient model before its calibration"
    missed = [k for k, v in goals["results"].items() if not v.get("met")]
    if missed:
        return False, f"its model card shows goals not met: {', '.join(missed)}"
    return True, "its model card shows every goal met on held-out patients"


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
            # the bundle's version is its content hash (the model card reports the same)
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        else:
            self.path = None
            digest = None
        meta = actor.meta
        # The inputs the policy was trained on, by name: a policy of an older observation version
        # gets exactly the fields it knows (their encoding is that of INPUT_VERSION), so it acts
        # as it did; one whose inputs this software does not compute is refused.
        inputs = meta.get("inputs")
        ver = meta.get("obs_version")
        if not (isinstance(ver, int) and 1 <= ver <= OBS_VERSION) or meta.get("input_version") != INPUT_VERSION:
            raise ControllerError(f"the policy was trained on observation version {ver}/"
                                  f"{meta.get('input_version')}, this software computes {OBS_VERSION}/"
                                  f"{INPUT_VERSION}: retrain it")
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            raise ControllerError("the policy's bundle does not name its inputs (metadata 'inputs'): retrain it")
        unknown = [x for x in inputs if x not in VECTOR_FIELDS]
        if unknown:
            raise ControllerError(f"the policy uses inputs this software does not compute ({', '.join(unknown)}): "
                                  "retrain it or upgrade exposure")
        self.inputs = tuple(inputs)
        if meta.get("scene") != scene:
            raise ControllerError(f"the policy was trained for scene {meta.get('scene')!r}, not {scene!r}")
        self.step_size = float(meta.get("step_size", STEP_SIZE))
        self.ask_suds = bool(meta.get("ask_suds", ASK_SUDS))
        want = (3, 2) if self.ask_suds else (3,)
        if actor.nvec != want or actor.obs_dim != len(self.inputs):
            raise ControllerError(f"the policy's actions {actor.nvec} or inputs ({actor.obs_dim}) do not fit "
                                  f"its metadata ({want}, {len(self.inputs)} named inputs): retrain it")
        self.actor = actor
        self.cost_model = _cost_model(meta.get("cost_model"), actor.obs_dim)
        self.scene = scene
        self.deterministic = deterministic
        self.version = digest or str(meta.get("version", "unsaved"))
        self.decision_interval = float(meta.get("decision_interval", Controller.decision_interval))
        self.reasons = tuple(f"policy: {m}{s}" for m in ("step down", "hold", "step up")
                             for s in ("", " and ask for SUDS"))

    def describe(self) -> dict:
        m = self.actor.meta
        return {**super().describe(), "scene": self.scene, "bundle": self.path, "inputs": list(self.inputs),
                "step_size": self.step_size, "ask_suds": self.ask_suds,
                "cost_model": self.cost_model is not None,
                "trained": {k: m.get(k) for k in ("seed", "timesteps", "population", "version")}}

    def propose(self, obs: Observation) -> Proposal:
        x = observation_vector(obs, self.inputs)
        act, probs = self.actor.act(x, None if self.deterministic else self.rng)
        a = act if self.ask_suds else act[:, 0]
        # A question is only a wish here: the shield's question budget (one per 60 s) decides.
        delta, ask = action_to_delta(a, self.step_size, self.ask_suds)
        reason = act[:, 0] * 2 + (np.asarray(ask, dtype=int) if self.ask_suds else 0)
        if len(x) == 1:
            info = {"obs": [round(float(v), 5) for v in x[0]],
                    "probs": [[round(float(v), 5) for v in p[0]] for p in probs],
                    "action": [int(a) for a in act[0]], "bundle": self.version,
                    "cost_estimate": self.cost_estimate(x)[0] if self.cost_model is not None else None}
            if self.ask_suds and ask[0]:
                age = float(obs.suds_age[0])
                info["ask_reason"] = (f"policy: ask with probability {float(probs[1][0, 1]):.2f}; last rating "
                                      + (f"{age:.0f} s ago" if np.isfinite(age) else "none yet"))
        else:
            info = {"obs": x, "probs": probs, "action": act, "bundle": self.version}
        return Proposal(delta=delta, reason=reason, reasons=self.reasons,
                        ask_suds=ask if self.ask_suds else None, info=info)

    def cost_estimate(self, x: np.ndarray) -> list[float]:
        """The expected safety cost (overwhelm seconds + 30 × escapes) over the next
        ``cost_model["horizon_s"]`` seconds from input vectors ``x``: the linear model fitted on the
        training rollouts (:class:`policy.train.callbacks.LagrangeMultiplier`), never below 0."""
        w, b = self.cost_model
        return [round(float(v), 3) for v in np.maximum(self.actor.normalize(x) @ w + b, 0.0)]


def _cost_model(m, dim: int) -> tuple[np.ndarray, float] | None:
    """The bundle's linear cost estimate (metadata ``cost_model``: ``w`` over the normalised inputs,
    ``b``), or None for a bundle without one (trained before constrained training)."""
    if not isinstance(m, dict):
        return None
    try:
        w = np.asarray(m["w"], dtype=float)
        b = float(m["b"])
    except (KeyError, TypeError, ValueError):
        raise ControllerError("the policy's cost model (metadata 'cost_model') is malformed: retrain it") from None
    if w.shape != (dim,) or not (np.all(np.isfinite(w)) and np.isfinite(b)):
        raise ControllerError("the policy's cost model does not fit its inputs: retrain it")
    return w, b
