"""The shield's bookkeeping: only real interventions are counted, and the rules' times hold."""

from __future__ import annotations

import dataclasses

import numpy as np

from policy.observation import empty_observation
from policy.shield import CAPPED, LOST_DOWN, LOST_HOLD, NONE, REASONS, SafetyShield


def _obs(n=1, **kw):
    o = empty_observation(n)
    good = dict(lost=np.zeros(n, bool), quality=np.ones(n), hr=np.full(n, 80.0), baseline=np.full(n, 75.0),
                hr_delta=np.full(n, 5.0), since_valid=np.ones(n), t=np.full(n, 100.0), target=np.full(n, 0.3))
    return dataclasses.replace(o, **{**good, **kw})


def _shield(n=1):
    s = SafetyShield()
    s.reset(n)
    return s


def test_floating_point_noise_over_the_rate_cap_is_not_an_intervention():
    s = _shield()
    res = s.apply(_obs(), np.array([0.1 + 3e-17]))
    assert res.code[0] == NONE and res.delta[0] == 0.1  # the cap still applies: output unchanged
    assert sum(s.counts.values()) == 0
    res = s.apply(_obs(), np.array([0.25]))  # a real cap
    assert res.code[0] == CAPPED and res.delta[0] == 0.1 and s.counts[REASONS[CAPPED]] == 1


def test_a_change_that_leaves_the_target_where_the_proposal_would_is_not_an_intervention():
    s = _shield()
    # a lost signal for 60 s: step down — but the target is already at the floor, where the
    # controller's own step down would also leave it
    res = s.apply(_obs(lost=np.ones(1, bool), since_valid=np.full(1, 60.0), target=np.zeros(1)), np.array([-0.05]))
    assert res.code[0] == NONE and sum(s.counts.values()) == 0
    res = s.apply(_obs(lost=np.ones(1, bool), since_valid=np.full(1, 60.0), target=np.full(1, 0.5)),
                  np.array([-0.05]))
    assert res.code[0] == LOST_DOWN and res.delta[0] == -0.15


def test_no_signal_yet_steps_down_only_after_the_documented_30_s():
    s = _shield()
    never = dict(lost=np.ones(1, bool), since_valid=np.full(1, np.inf), target=np.full(1, 0.5))
    for t in (5.0, 10.0, 15.0, 20.0, 29.9):
        res = s.apply(_obs(t=np.full(1, t), **never), np.array([0.05]))
        assert res.code[0] == LOST_HOLD and res.delta[0] == 0.0, t
    res = s.apply(_obs(t=np.full(1, 30.0), **never), np.array([0.05]))
    assert res.code[0] == LOST_DOWN
    assert s.counts == {**{k: 0 for k in s.counts}, "signal lost: holding": 5, "signal lost too long: stepping down": 1}


def test_a_sim_session_logs_no_step_down_for_lost_signal_in_its_first_30_s(tmp_path):
    from engine.store.files import SessionReader
    from tests.engine.research_sessions import record

    path = record(tmp_path, duration_s=120.0, script=())
    with SessionReader(path) as r:
        ev = [e for e in r.records("events") if e["kind"] == "shield"]
        dec = r.records("decisions")
    assert not [e for e in ev if "too long" in e["detail"] and e["t"] < 30.0]
    for d in dec:  # every decision attributed to the shield changed the target
        if d["who"] == "shield" and d["proposed"] is not None:
            assert abs((d["target_before"] + d["proposed"]) - d["target_after"]) > 1e-9 or d["target_after"] in (0, 1)
