"""A trained SB3 actor as plain numpy: fast, torch-free inference for live sessions.

A bundle (``policy.npz``) holds what the actor needs and nothing else: the VecNormalize
observation statistics, the policy network's layers, the action head and the shape of the
action space. Inference on N observations is a handful of matrix products (a few
microseconds for N = 1), so a decision never stalls a frame, and the evaluator can run the
same code over thousands of virtual patients at once.

:func:`export_bundle` writes it from an SB3 model and its VecNormalize wrapper (torch needed
only there); :class:`NumpyActor` reads it with numpy alone (``allow_pickle=False``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policy.errors import PolicyError

BUNDLE_VERSION = 1

_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


class BundleError(PolicyError):
    """A policy bundle that cannot be read or does not fit this software."""


@dataclass(frozen=True)
class NumpyActor:
    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float
    epsilon: float
    weights: tuple[np.ndarray, ...]  # hidden layers, (in, out) each
    biases: tuple[np.ndarray, ...]
    head_w: np.ndarray  # (hidden, sum(nvec))
    head_b: np.ndarray
    nvec: tuple[int, ...]  # sizes of the action components (Discrete → one component)
    activation: str
    meta: dict

    @property
    def obs_dim(self) -> int:
        return int(self.obs_mean.shape[0])

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """VecNormalize's observation transform, exactly."""
        x = (np.asarray(obs, dtype=np.float64) - self.obs_mean) / np.sqrt(self.obs_var + self.epsilon)
        return np.clip(x, -self.clip_obs, self.clip_obs)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(obs)
        if x.shape[1] != self.obs_dim:
            raise BundleError(f"observation has {x.shape[1]} values, the policy expects {self.obs_dim}")
        h = self.normalize(x).astype(np.float32)
        act = _ACTIVATIONS[self.activation]
        for w, b in zip(self.weights, self.biases, strict=True):
            h = act(h @ w + b)
        return h @ self.head_w + self.head_b

    def probabilities(self, obs: np.ndarray) -> list[np.ndarray]:
        """Per action component, (N, n_k) probabilities."""
        z = self.logits(obs).astype(np.float64)
        out = []
        i = 0
        for k in self.nvec:
            zk = z[:, i:i + k]
            zk = zk - zk.max(axis=1, keepdims=True)
            e = np.exp(zk)
            out.append(e / e.sum(axis=1, keepdims=True))
            i += k
        return out

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None
            ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Actions (N, len(nvec)) — the most probable, or sampled when ``rng`` is given."""
        probs = self.probabilities(obs)
        cols = []
        for p in probs:
            if rng is None:
                cols.append(np.argmax(p, axis=1))
            else:
                u = rng.random((p.shape[0], 1))
                cols.append(np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1))
        return np.stack(cols, axis=1), probs


def _action_nvec(space) -> tuple[int, ...]:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return (int(space.n),)
    if isinstance(space, spaces.MultiDiscrete):
        return tuple(int(k) for k in np.asarray(space.nvec).ravel())
    raise BundleError(f"only Discrete and MultiDiscrete actions can be exported, not {type(space).__name__}")


def export_bundle(model, vecnorm, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``model``'s actor (an SB3 PPO with an MLP policy) and ``vecnorm``'s observation
    statistics to ``path`` (``.npz``). ``vecnorm`` may be None (no normalisation)."""
    import torch as th

    pol = model.policy
    weights, biases, acts = [], [], set()
    for layer in pol.mlp_extractor.policy_net:
        if isinstance(layer, th.nn.Linear):
            weights.append(layer.weight.detach().cpu().numpy().T.astype(np.float32))
            biases.append(layer.bias.detach().cpu().numpy().astype(np.float32))
        elif isinstance(layer, th.nn.Tanh):
            acts.add("tanh")
        elif isinstance(layer, th.nn.ReLU):
            acts.add("relu")
        else:
            raise BundleError(f"cannot export a policy layer of type {type(layer).__name__}")
    if len(acts) > 1:
        raise BundleError("mixed activations cannot be exported")
    head = pol.action_net
    obs_dim = int(np.prod(model.observation_space.shape))
    if vecnorm is not None and vecnorm.norm_obs:
        mean = np.asarray(vecnorm.obs_rms.mean, dtype=np.float64)
        var = np.asarray(vecnorm.obs_rms.var, dtype=np.float64)
        clip, eps = float(vecnorm.clip_obs), float(vecnorm.epsilon)
    else:
        mean, var, clip, eps = np.zeros(obs_dim), np.ones(obs_dim), np.inf, 0.0
    arrays = {
        "obs_mean": mean, "obs_var": var, "clip_obs": np.array(clip), "epsilon": np.array(eps),
        "head_w": head.weight.detach().cpu().numpy().T.astype(np.float32),
        "head_b": head.bias.detach().cpu().numpy().astype(np.float32),
        "nvec": np.array(_action_nvec(model.action_space), dtype=np.int64),
        "activation": np.array(next(iter(acts), "tanh")),
        "meta": np.array(json.dumps({"bundle_version": BUNDLE_VERSION, **(meta or {})}, sort_keys=True)),
    }
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        arrays[f"w{i}"] = w
        arrays[f"b{i}"] = b
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_bundle(path: str | Path) -> NumpyActor:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise BundleError(f"{path}: no such policy file") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: not a policy bundle ({e})") from None
    try:
        meta = json.loads(str(d["meta"]))
        if meta.get("bundle_version") != BUNDLE_VERSION:
            raise BundleError(f"{path}: bundle version {meta.get('bundle_version')} is not {BUNDLE_VERSION}")
        n = 0
        while f"w{n}" in d:
            n += 1
        actor = NumpyActor(
            obs_mean=d["obs_mean"].astype(np.float64), obs_var=d["obs_var"].astype(np.float64),
            clip_obs=float(d["clip_obs"]), epsilon=float(d["epsilon"]),
            weights=tuple(d[f"w{i}"] for i in range(n)), biases=tuple(d[f"b{i}"] for i in range(n)),
            head_w=d["head_w"], head_b=d["head_b"], nvec=tuple(int(k) for k in d["nvec"]),
            activation=str(d["activation"]), meta=meta)
    except KeyError as e:
        raise BundleError(f"{path}: policy bundle lacks {e.args[0]!r}") from None
    if actor.activation not in _ACTIVATIONS:
        raise BundleError(f"{path}: unknown activation {actor.activation!r}")
    if actor.head_w.shape[1] != sum(actor.nvec):
        raise BundleError(f"{path}: action head has {actor.head_w.shape[1]} outputs, actions need {sum(actor.nvec)}")
    return actor
