"""The numpy actor is SB3's actor: same probabilities and actions on the same observations."""

from __future__ import annotations

import numpy as np
import pytest

from policy.numpy_mlp import BundleError, export_bundle, load_bundle


@pytest.fixture(scope="module")
def cartpole_model():
    import gymnasium as gym
    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    th.set_num_threads(1)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]), norm_obs=True, clip_obs=3.0)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=3,
                policy_kwargs={"net_arch": [16, 8]}, device="cpu")
    model.learn(256)  # a few updates, so weights and statistics are not at their initial values
    return model, venv


def test_export_matches_sb3_predict(cartpole_model, tmp_path):
    model, venv = cartpole_model
    actor = load_bundle(export_bundle(model, venv, tmp_path / "p.npz", {"scene": "test"}))
    assert actor.meta["scene"] == "test"
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 2, size=(500, 4)).astype(np.float32)
    raw[:5] *= 50  # far outside the statistics: clipping must match too
    want, _ = model.predict(venv.normalize_obs(raw), deterministic=True)
    got, probs = actor.act(raw)
    np.testing.assert_array_equal(got[:, 0], want)
    import torch as th

    with th.no_grad():
        dist = model.policy.get_distribution(th.as_tensor(venv.normalize_obs(raw)))
        p_sb3 = dist.distribution.probs.numpy()
    np.testing.assert_allclose(probs[0], p_sb3, atol=1e-5)
    np.testing.assert_allclose(probs[0].sum(axis=1), 1.0, atol=1e-9)


def test_vectorised_equals_one_by_one(cartpole_model, tmp_path):
    model, venv = cartpole_model
    actor = load_bundle(export_bundle(model, venv, tmp_path / "p.npz"))
    raw = np.random.default_rng(1).normal(size=(64, 4))
    batch, pb = actor.act(raw)
    for i in range(len(raw)):
        one, p1 = actor.act(raw[i:i + 1])
        assert one[0, 0] == batch[i, 0]
        np.testing.assert_allclose(p1[0][0], pb[0][i], rtol=1e-6)


def test_sampling_follows_probabilities(cartpole_model, tmp_path):
    model, venv = cartpole_model
    actor = load_bundle(export_bundle(model, venv, tmp_path / "p.npz"))
    raw = np.zeros((20000, 4))
    acts, probs = actor.act(raw, rng=np.random.default_rng(5))
    assert abs(acts[:, 0].mean() - probs[0][0, 1]) < 0.02


def test_bad_bundles_are_refused(tmp_path, cartpole_model):
    with pytest.raises(BundleError, match="no such policy file"):
        load_bundle(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a policy bundle"):
        load_bundle(junk)
    model, venv = cartpole_model
    p = export_bundle(model, venv, tmp_path / "p.npz")
    with np.load(p) as z:
        d = {k: z[k] for k in z.files if k != "head_w"}
    np.savez(tmp_path / "partial.npz", **d)
    with pytest.raises(BundleError, match="lacks 'head_w'"):
        load_bundle(tmp_path / "partial.npz")
    actor = load_bundle(p)
    with pytest.raises(BundleError, match="expects 4"):
        actor.act(np.zeros((2, 5)))
