"""The shipped policies: they load, act exactly as SB3's own predict on the same observations
(real observations from virtual-patient courses), and are vectorised."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from engine.gym_env import make_vec_env
from policy.controllers import ControllerError, make_controller
from policy.learned import LearnedController, shipped_bundle
from policy.observation import VECTOR_FIELDS, Observation, empty_observation
from policy.sim.env import observation_vector


@pytest.fixture(scope="module", params=["heights", "crowds"])
def rollout(request):
    """Observations from a few minutes of real courses driven by the shipped policy itself."""
    scene = request.param
    ctl = make_controller("policy", scene=scene)
    venv = make_vec_env(32, scene, ask_suds=True, seed=11, minutes=6.0, sessions=1)
    cols = [VECTOR_FIELDS.index(name) for name in ctl.inputs]  # the inputs it was trained on, by name
    x = venv.reset()[:, cols]
    xs = [x]
    for _ in range(60):
        act, _ = ctl.actor.act(x)
        x, _, _, _ = venv.step(act)
        x = x[:, cols]
        xs.append(x)
    return scene, ctl, np.concatenate(xs)


def test_shipped_matches_sb3_predict(rollout):
    from stable_baselines3 import PPO

    scene, ctl, x = rollout
    d = shipped_bundle(scene).parent
    model = PPO.load(d / "model.zip", device="cpu")
    with open(d / "vecnormalize.pkl", "rb") as f:
        vn = pickle.load(f)
    want, _ = model.predict(vn.normalize_obs(x), deterministic=True)
    got, probs = ctl.actor.act(x)
    np.testing.assert_array_equal(got, want)
    assert len(probs) == 2 and probs[0].shape == (len(x), 3) and probs[1].shape == (len(x), 2)
    # the actions are not all the same: the policy reacts to what it sees
    assert len({tuple(a) for a in got}) > 1


def test_card_beside_the_weights(rollout):
    scene, ctl, _ = rollout
    card = json.loads((shipped_bundle(scene).parent / "card.json").read_text())
    assert card["scene"] == scene and "virtual patients only" in card["caveat"]
    assert card["version"] == ctl.version  # the card describes exactly the shipped weights
    assert ctl.describe()["scene"] == scene


def _obs_from(x: np.ndarray) -> Observation:
    """An Observation whose vector is ``x`` (the fields the vector is made of)."""
    n = len(x)
    o = empty_observation(n)
    o.intensity[:] = x[:, 0]
    o.level_frac[:] = x[:, 1]
    o.time_at_level[:] = x[:, 2] * 600.0
    o.hr_delta[:] = x[:, 3] * 20.0
    o.hr_slope[:] = x[:, 4]
    o.rmssd[:] = x[:, 5] * 50.0
    o.quality[:] = x[:, 6]
    o.lost[:] = x[:, 7] > 0.5
    o.suds[:] = np.where(x[:, 8] < 0, np.nan, x[:, 8] * 100.0)
    o.suds_age[:] = x[:, 9] * 600.0
    o.look_away[:] = np.where(x[:, 10] < 0, np.nan, x[:, 10])
    o.t[:] = x[:, 11] * 600.0
    return o


def test_vectorised_equals_one_by_one(rollout):
    scene, _, x = rollout
    ctl = LearnedController(scene=scene)
    sel = x[:: max(1, len(x) // 200)][:200]
    obs = _obs_from(sel)
    np.testing.assert_allclose(observation_vector(obs, ctl.inputs), sel, atol=1e-5)
    ctl.reset(len(sel), np.linspace(0, 1, 11))
    batch = ctl.propose(obs)
    one = LearnedController(scene=scene)
    one.reset(1, np.linspace(0, 1, 11))
    for i in range(len(sel)):
        p = one.propose(_obs_from(sel[i:i + 1]))
        assert p.delta[0] == batch.delta[i]
        assert bool(p.ask_suds[0]) == bool(batch.ask_suds[i])
        assert p.info["action"] == [int(a) for a in batch.info["action"][i]]
        np.testing.assert_allclose(p.info["probs"][0], batch.info["probs"][0][i], atol=1e-5)


def test_wrong_scene_or_missing_bundle(tmp_path):
    with pytest.raises(ControllerError, match="no such policy file"):
        LearnedController(scene="heights", path=tmp_path / "none.npz")
    with pytest.raises(ControllerError, match="trained for scene 'heights', not 'crowds'"):
        LearnedController(scene="crowds", path=shipped_bundle("heights"))
