"""Constrained training: the Lagrange multiplier's update, the scaled Lagrangian in the training
env's reward, the safety cost in ``info``, and the widened priors of domain randomisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.gym_env import scene_table
from policy.sim.batch_env import KEEP, MixedVecEnv, widened
from policy.sim.env import COST_PER_ESCAPE
from policy.sim.patient.population import load_population
from policy.train.callbacks import LagrangeMultiplier


def test_multiplier_rises_over_budget_falls_under_it_and_stays_in_range():
    lag = LagrangeMultiplier(budget=0.1, lr=0.01, init=0.03, upper=0.5)
    assert lag.update(0.03, 10.1) == pytest.approx(0.13)  # 0.03 + 0.01 × (10.1 − 0.1)
    assert lag.update(0.03, 0.0) == pytest.approx(0.029)
    assert lag.update(0.0005, 0.0) == 0.0  # projected to ≥ 0
    assert lag.update(0.45, 100.0) == 0.5  # and ≤ the upper bound
    with pytest.raises(ValueError):
        LagrangeMultiplier(budget=-1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1e4), min_size=1, max_size=50), st.floats(0.0, 10.0))
def test_multiplier_never_leaves_its_range(costs, budget):
    lag = LagrangeMultiplier(budget=budget, lr=0.05, upper=2.0)
    lam = 0.0
    for c in costs:
        new = lag.update(lam, c)
        assert 0.0 <= new <= 2.0
        assert (new >= lam) if c > budget else (new <= lam)
        lam = new


def _env(**kw):
    return MixedVecEnv(load_population(None), scene_table("heights"), n_envs=8, n_sub=1, seed=11, **kw)


def test_env_reward_is_the_scaled_lagrangian_of_the_cost():
    a, b = _env(), _env()
    b.cost_multiplier = 1.5
    oa, ob = a.reset(), b.reset()
    assert np.array_equal(oa, ob)
    rng = np.random.default_rng(0)
    seen_cost = 0.0
    for _ in range(120):  # 10 minutes of decisions, ramping up hard: overwhelm comes
        act = np.stack([np.where(rng.random(8) < 0.8, 2, 1), rng.integers(0, 2, 8)], axis=1)
        oa, ra, _, ia = a.step(act)
        ob, rb, _, ib = b.step(act)
        assert np.array_equal(oa, ob)  # λ changes the reward only
        c = np.array([i["cost"] for i in ia])
        assert c == pytest.approx([i["cost"] for i in ib])
        assert rb == pytest.approx((ra - 1.5 * c) / 2.5, abs=1e-5)
        seen_cost += c.sum()
    assert seen_cost > 0  # the check above met real costs
    with pytest.raises(ValueError):
        b.cost_multiplier = -0.1


def test_env_cost_is_overwhelm_seconds_plus_30_per_escape_and_asks_are_reported():
    from policy.sim.env import ExposureVecEnv

    env = ExposureVecEnv(scene_table("heights"), n_envs=16, seed=4, ask_suds=True)
    env.reset()
    asked = 0
    for _ in range(200):
        env.step_async(np.tile([2, 1], (16, 1)))
        _, _, _, infos = env.step_wait()
        for i in infos:
            assert i["cost"] == pytest.approx(i["overwhelm_s"] + COST_PER_ESCAPE * float(i["escaped"]))
        asked += sum(bool(i["asked"]) for i in infos)
    # asking at every decision: the shield lets through one question a minute per patient at most
    assert 0 < asked <= 16 * math.ceil(200 * 5 / 60)


@settings(max_examples=30, deadline=None)
@given(st.floats(1.0, 3.0))
def test_widened_priors_spread_more_and_keep_their_bounds(f):
    base = load_population(None)
    w = widened(base, f)
    u = np.linspace(0.001, 0.999, 201)
    for (name, p), (_, q) in zip(base.priors, w.priors, strict=True):
        x, y = p.ppf(u), q.ppf(u)
        assert y.min() >= p.lo and y.max() <= p.hi, name
        if name in KEEP or p.dist in ("bernoulli", "fixed"):
            assert np.array_equal(x, y), name
        else:
            assert np.ptp(y) >= np.ptp(x) - 1e-9, name
        if p.dist == "uniform" and p.args[0] >= 0:
            assert y.min() >= 0.0, name
    assert widened(base, 1.0) is base
    with pytest.raises(ValueError):
        widened(base, 0.0)


def test_session_cost_averages_one_sessions_worth_of_rollouts():
    # 4 decisions a session, rollouts of 2 decisions × 3 lanes: J_c covers this rollout and the one before
    lag = LagrangeMultiplier(budget=0.0, steps_per_session=4)
    r1 = np.full((2, 3), 1.0)
    r2 = np.full((2, 3), 3.0)
    r3 = np.zeros((2, 3))
    assert lag.session_cost(r1) == pytest.approx(4.0)  # 1 per decision × 4 decisions
    assert lag.session_cost(r2) == pytest.approx(8.0)  # (1 + 3) / 2 × 4
    assert lag.session_cost(r3) == pytest.approx(6.0)  # (3 + 0) / 2 × 4: the first rollout has left


def test_wall_clock_budget_stops_training_once_its_minutes_are_spent():
    from policy.train.callbacks import WallClockBudget

    now = [100.0]
    logs: list[str] = []
    cb = WallClockBudget(60.0, logs.append, clock=lambda: now[0])
    cb._on_training_start()
    now[0] = 159.9
    assert cb._on_step() is True and not cb.stopped
    now[0] = 160.0
    assert cb._on_step() is False and cb.stopped
    assert logs and "budget of 1 min" in logs[0]
