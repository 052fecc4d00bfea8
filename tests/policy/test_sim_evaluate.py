"""The evaluator and the baselines: same patients for everyone, metrics, chunk invariance."""

from __future__ import annotations

import numpy as np
import pytest

from engine.gym_env import scene_table
from policy.baselines import HRBand, Oracle, SudsProtocol
from policy.controllers import Ladder, controller_names, make_controller, register_controller
from policy.observation import empty_observation
from policy.sim.evaluate import METRICS, EvaluationError, evaluate, format_table, run_course
from policy.sim.patient.population import STRUCTURES, load_population

POP = load_population()
TABLE = scene_table("heights")
LEVELS = np.array(TABLE.intensities)


class Ladder2(Ladder):
    name = "ladder-again"


register_controller("ladder-again", Ladder2)


def test_baselines_are_registered_and_the_oracle_is_evaluation_only():
    names = controller_names()
    for n in ("ladder", "suds", "hr-band", "hr-pid", "oracle"):
        assert n in names
    assert "oracle" not in controller_names(live_only=True)
    assert make_controller("oracle").live is False


def obs(n=3, **kw):
    o = empty_observation(n)
    for k, v in kw.items():
        setattr(o, k, np.broadcast_to(np.asarray(v), (n,)).copy())
    return o


def test_suds_protocol_steps_up_only_after_fear_halved_twice():
    c = SudsProtocol()
    c.reset(1, LEVELS)
    base = dict(t=200.0, level=2, target=LEVELS[2], intensity=LEVELS[2], time_at_level=200.0, suds_peak=60.0)
    c.propose(obs(1, **{**base, "t": 100.0}))  # arrived at the level, no answer yet
    p = c.propose(obs(1, **base, suds=30.0, suds_age=0.0))
    assert p.delta[0] == 0.0  # once is not enough
    p = c.propose(obs(1, **{**base, "t": 260.0}, suds=30.0, suds_age=0.0))
    assert p.delta[0] == pytest.approx(LEVELS[3] - LEVELS[2])
    c.reset(1, LEVELS)
    c.propose(obs(1, **{**base, "t": 100.0}))
    for t in (200.0, 260.0):
        p = c.propose(obs(1, **{**base, "t": t}, suds=35.0, suds_age=0.0))  # ≤ 40 but not half of 60
    assert p.delta[0] == 0.0
    c.reset(1, LEVELS)
    low = {**base, "suds_peak": 15.0}
    c.propose(obs(1, **{**low, "t": 100.0}))
    for t in (200.0, 260.0):  # a rating of 10 counts as halved from a low peak
        p = c.propose(obs(1, **{**low, "t": t}, suds=10.0, suds_age=0.0))
    assert p.delta[0] == pytest.approx(LEVELS[3] - LEVELS[2])
    c.reset(1, LEVELS)
    c.propose(obs(1, **{**base, "t": 100.0}))
    p = c.propose(obs(1, **{**base, "t": 320.0}, suds=85.0, suds_age=0.0))
    assert p.delta[0] == pytest.approx(LEVELS[1] - LEVELS[2])
    p = c.propose(obs(1, **{**base, "t": 330.0}, suds=85.0, suds_age=10.0))
    assert p.ask_suds[0] == np.False_ and p.delta[0] == 0.0  # the same answer does not count twice
    assert c.propose(obs(1, **{**base, "t": 400.0}, suds=20.0, suds_age=80.0)).ask_suds[0]


def test_hr_band_holds_the_band_and_resets_above_85_percent_of_max():
    c = HRBand()
    c.reset(3, LEVELS)
    o = obs(3, t=300.0, level=4, target=LEVELS[4], hr_delta=[2.0, 7.0, 14.0], hr=[80.0, 85.0, 92.0],
            lost=False, max_hr=180.0)
    assert np.sign(c.propose(o).delta).tolist() == [1.0, 0.0, -1.0]
    c.reset(1, LEVELS)
    o = obs(1, t=300.0, level=4, target=LEVELS[4], hr_delta=20.0, hr=160.0, lost=False, max_hr=180.0)
    assert c.propose(o).delta[0] == pytest.approx(-LEVELS[4])
    c.reset(1, LEVELS)
    assert c.propose(obs(1, t=60.0, level=0, hr_delta=0.0, hr=70.0, lost=False)).delta[0] == 0.0  # baseline forming


def test_oracle_keeps_fear_in_the_patients_window():
    c = Oracle()
    c.reset(3, LEVELS)
    assert np.all(c.propose(obs(3)).delta == 0)  # without the hidden state it holds
    c.see({"fear": np.array([20.0, 55.0, 80.0]), "optimal_arousal": np.full(3, 55.0),
           "overwhelm": np.full(3, 85.0)})
    assert np.sign(c.propose(obs(3)).delta).tolist() == [1.0, 0.0, -1.0]


def test_same_patients_same_random_numbers_for_every_controller():
    r = run_course(POP, TABLE, ["ladder", "ladder-again", "suds"], 12, seed=3, sessions=2, minutes=6)
    for k in METRICS:
        assert np.array_equal(r.per_patient[k][0], r.per_patient[k][1]), k
    assert not np.array_equal(r.per_patient["vr_minutes"][0], r.per_patient["vr_minutes"][2]) or \
        not np.array_equal(r.per_patient["top_suds_post"][0], r.per_patient["top_suds_post"][2])


def test_results_do_not_depend_on_chunks_or_workers():
    kw = dict(sessions=2, minutes=4, seed=2)
    a = evaluate(POP, TABLE, ["ladder", "hr-band"], 10, chunk=10, **kw)
    b = evaluate(POP, TABLE, ["ladder", "hr-band"], 10, chunk=3, **kw)
    c = evaluate(POP, TABLE, ["ladder", "hr-band"], 10, chunk=5, workers=2, **kw)
    assert a["controllers"] == b["controllers"] == c["controllers"]


def test_metrics_and_structures():
    r = evaluate(POP, TABLE, ["ladder", "oracle"], 10, sessions=2, minutes=5, seed=1, structure="all")
    assert set(r["structures"]) == set(STRUCTURES)
    for v in r["structures"].values():
        for m in v["controllers"].values():
            for k in METRICS:
                assert np.isfinite(m[k]) and np.isfinite(m[k + "_worst10"])
            assert 0 <= m["responder_rate"] <= 1 and 0 <= m["dropout_rate"] <= 1
            assert 0 <= m["window_fraction"] <= 1 and 0 <= m["bat_steps_post"] <= 10
            assert 0 < m["vr_minutes"] <= 2 * 5
    assert r["controllers"] == r["structures"]["full"]["controllers"]
    text = format_table(r)
    assert "structure: abrupt-no-transfer" in text and "responder_rate" in text
    with pytest.raises(EvaluationError):
        evaluate(POP, TABLE, ["ladder"], 0)
    with pytest.raises(EvaluationError):
        evaluate(POP, TABLE, ["ladder"], 3, structure="nope")
