"""ExposureTherapy-v0: the checkers, same-seed determinism, the shield wrapper, the VecEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from engine.gym_env import make_vec_env, register_gym_env
from policy.observation import VECTOR_FIELDS
from policy.sim.env import ENV_ID, ExposureTherapyEnv, SafetyShieldWrapper, action_to_delta

register_gym_env()


def short(**kw):
    return gym.make(ENV_ID, scene=kw.pop("scene", "heights"), sessions=kw.pop("sessions", 2),
                    minutes=kw.pop("minutes", 2), **kw)


@pytest.mark.parametrize("ask_suds", [False, True])
def test_gymnasium_checker(ask_suds):
    env = short(ask_suds=ask_suds)
    check_env(env.unwrapped)


@pytest.mark.parametrize("ask_suds", [False, True])
def test_sb3_checker(ask_suds):
    env = short(ask_suds=ask_suds)
    sb3_check_env(env.unwrapped, warn=True)
    sb3_check_env(env, warn=True)


def test_registered_with_the_documented_kwargs():
    env = gym.make(ENV_ID, scene="crowds", population=None, structure="inhibitory-flat", sessions=1, minutes=1)
    assert isinstance(env.unwrapped, ExposureTherapyEnv)
    assert env.unwrapped.course.table.scene == "crowds"
    assert env.unwrapped.course.pop.structure == "inhibitory-flat"
    assert env.observation_space.shape == (len(VECTOR_FIELDS),)
    assert env.action_space == gym.spaces.Discrete(3)
    assert any(isinstance(w, SafetyShieldWrapper) for w in _wrappers(env))
    raw = gym.make(ENV_ID, shield=False, sessions=1, minutes=1)
    assert not any(isinstance(w, SafetyShieldWrapper) for w in _wrappers(raw))


def _wrappers(env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


def rollout(env, seed, policy, steps=10_000):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rewards, infos = [], []
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(policy(obs))
        out.append(obs)
        rewards.append(r)
        infos.append(info)
        if term or trunc:
            break
    return np.array(out), np.array(rewards), infos


def up_when_calm(obs):
    return 2 if obs[3] < 0.35 else (0 if obs[3] > 0.6 else 1)


def test_same_seed_same_rollout_other_seed_other_patient():
    a = rollout(short(minutes=4), 11, up_when_calm)
    b = rollout(short(minutes=4), 11, up_when_calm)
    c = rollout(short(minutes=4), 12, up_when_calm)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert [i["fear"] for i in a[2]] == [i["fear"] for i in b[2]]
    assert not np.array_equal(a[0][:, 3], c[0][:, 3])
    assert len(a[1]) == 2 * (4 * 60 // 5 - 1)  # two sessions of 4 min: decisions at 5 s … 235 s
    last = a[2][-1]
    assert "bat_steps" in last and 0 <= last["bat_steps"] <= 10


def test_actions_move_intensity_and_learning_is_rewarded():
    def total(policy, seed=3):
        env = short(sessions=1, minutes=10)
        obs, _ = env.reset(seed=seed)
        tot, over, top = 0.0, 0.0, 0.0
        for _ in range(100):
            obs, r, term, _, info = env.step(policy(obs))
            tot, over, top = tot + r, over + info["overwhelm_s"], max(top, obs[0])
        return tot, over, top

    def over_patients(policy, seeds=range(3, 9)):  # summed over a few patients: not every one is overwhelmed
        runs = [total(policy, s) for s in seeds]
        return sum(r[0] for r in runs), sum(r[1] for r in runs), min(r[2] for r in runs)

    calm, flood, hold = over_patients(up_when_calm), over_patients(lambda o: 2), over_patients(lambda o: 1)
    assert hold[2] == 0.0 and flood[2] > 0.9  # actions move intensity
    assert calm[0] > hold[0] + 0.05  # exposure within tolerance teaches, sitting in the calm scene does not
    assert flood[1] > calm[1]  # flooding overwhelms ...
    assert flood[0] < calm[0]  # ... and the reward says so
    assert action_to_delta(np.array([0, 1, 2]))[0].tolist() == [-0.05, 0.0, 0.05]


def test_shield_wrapper_intervenes_and_reports():
    from policy.shield import REASONS

    def codes(env, seed):
        env.reset(seed=seed)
        return [env.step(2)[4]["shield"] for _ in range(100)]

    shielded = [c for seed in (1, 2, 3) for c in codes(short(sessions=1, minutes=10), seed)]
    raw = [c for seed in (1, 2, 3) for c in codes(short(sessions=1, minutes=10, shield=False), seed)]
    assert set(raw) == {0}
    hits = {REASONS[c] for c in shielded if c}
    assert hits  # the first seconds have no valid reading yet: the shield holds every rise
    assert "signal lost: holding" in hits
    env = short(sessions=1, minutes=1)
    wrapper = next(w for w in _wrappers(env) if isinstance(w, SafetyShieldWrapper))
    assert env.unwrapped.course.shield is wrapper.shield


def test_vec_env_lanes_and_new_patients():
    v = make_vec_env(6, sessions=1, minutes=1, seed=4)
    obs = v.reset()
    assert obs.shape == (6, len(VECTOR_FIELDS)) and obs.dtype == np.float32
    dones = 0
    for _ in range(30):
        obs, r, done, infos = v.step(np.full(6, 2))
        assert r.shape == (6,) and done.shape == (6,)
        dones += done.sum()
        for i in np.flatnonzero(done):
            assert "terminal_observation" in infos[i]
    assert dones >= 6  # one-minute courses end and the lanes take new patients
    assert v._next_patient >= 12
