"""Calibration: the sham controller, the new evaluation metrics, downward transfer of safety
learning, the anchor check and ``exposure calibrate`` (small N; the 1,000-patient check is
``exposure calibrate`` itself, see bench/bench_calibrate.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine.gym_env import scene_table
from policy.sim.calibrate import (
    ANCHORS,
    PROTOCOLS,
    Anchor,
    CalibrationError,
    HoldLevel,
    Run,
    calibrate,
    for_scene,
    monotone_share,
    patient_decay_rates,
    run_protocol,
)
from policy.sim.evaluate import METRICS, evaluate, run_course
from policy.sim.patient import model, noise
from policy.sim.patient.population import STRUCTURES, load_population
from tests.conftest import run_cli

POP = load_population()
TABLE = scene_table("heights")


def test_none_is_a_sham_that_stays_on_the_first_level_and_changes_nothing():
    seen = []
    r = run_course(POP, TABLE, ["none", "ladder"], 12, seed=4, sessions=2, minutes=25,
                   record=lambda b, gi: seen.append(b.intensity[b.groups[0].lanes].copy()))
    assert np.all(np.concatenate(seen) == TABLE.intensities[0])
    s = r.summary()
    assert s["none"]["responder_rate"] == 0.0
    assert abs(s["none"]["fear_reduction"]) < 0.02  # no exposure: essentially no change
    assert s["ladder"]["fear_reduction"] > s["none"]["fear_reduction"] + 0.05
    assert s["none"]["vr_minutes"] > 0.8 * 2 * 25 * (1 - s["none"]["dropout_rate"])


def test_fear_reduction_is_over_completers_and_suds_asks_are_counted():
    r = run_course(POP, TABLE, ["suds", "ladder"], 30, seed=6, sessions=3, minutes=8)
    fr, drop = r.per_patient["fear_reduction"], r.per_patient["dropout_rate"]
    assert np.all(np.isnan(fr) == (drop > 0.5))
    top = r.per_patient["top_suds_post"]
    done = drop[1] < 0.5
    assert np.allclose(fr[1][done], (r.pre_top[done] - top[1][done]) / r.pre_top[done])
    asks = r.per_patient["suds_asks_per_min"]
    assert np.all(asks[1] == 0)
    # the SUDS protocol asks once its last answer is 60 s old, answers come 5 s later: ~0.9/min
    active = r.per_patient["vr_minutes"][0] > 10
    assert 0.8 < np.median(asks[0][active]) < 1.1


def test_evaluate_reports_the_new_metrics_and_null_when_nobody_completed():
    res = evaluate(POP, TABLE, ["ladder", "none"], 8, sessions=2, minutes=4, seed=2)
    for m in res["controllers"].values():
        assert set(METRICS) <= set(m)
    json.dumps(res, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (7, len(model.BINS)), elements=st.floats(0.0, 0.999)))
def test_safety_generalises_downward(safety):
    g = model.generalised(safety)
    assert np.all(g >= safety)  # nothing learned is lost
    assert np.all(np.diff(g, axis=1) <= 0)  # no lower intensity keeps less than a higher one
    assert np.array_equal(model.generalised(g), g)
    assert np.array_equal(g[:, -1], safety[:, -1])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (16, len(model.BINS)), elements=st.floats(0.0, 0.999)),
       st.integers(0, 2 ** 31), st.sampled_from(["heights", "crowds"]))
def test_after_any_learning_fear_never_falls_with_intensity(safety, seed, scene):
    keys = noise.patient_keys(seed, np.arange(16))
    p = model.make_params(POP, keys, scene)
    s = model.initial_state(p)
    s = model.State(**{**s.__dict__, "safety": safety, "S": np.linspace(0, 20, 16), "avoid": np.linspace(0, .1, 16)})
    u = np.sort(np.stack([noise.uniform(keys, 9, j) for j in range(11)], axis=1), axis=1)
    for delays in (1, 2):
        f = model.approach_fears(p, s, u, post=True, delays=delays)
        assert np.all(np.diff(f, axis=1) >= -1e-9)
    f = model.level_fears(p, s, u)
    assert np.all(np.diff(f, axis=1) >= -1e-9)


@pytest.mark.parametrize("structure", [s for s in STRUCTURES if s != "abrupt-no-transfer"])
def test_lower_steps_are_no_more_feared_after_a_course(structure):
    r = run_course(POP, TABLE, ["ladder", "oracle", "none"], 12, seed=8, sessions=2, minutes=15, structure=structure)
    run = Run(r)
    for c in ("ladder", "oracle", "none"):
        assert monotone_share(run, c) == 1.0
    # and the course did something: the steps are feared less than after a sham course
    assert run.extra("ladder", "post_fears").mean() < run.extra("none", "post_fears").mean() - 1.0


def test_abrupt_no_transfer_keeps_learning_where_it_happened():
    keys = noise.patient_keys(1, np.arange(4))
    p = model.make_params(POP, keys, "heights", structure="abrupt-no-transfer")
    s = model.initial_state(p)
    safety = np.zeros((4, len(model.BINS)))
    safety[:, -1] = 0.9  # learned only at the top
    s = model.State(**{**s.__dict__, "safety": safety})
    u = np.tile(np.linspace(0.2, 1.0, 5), (4, 1))
    f = model.level_fears(p, s, u)
    assert np.all(f[:, -1] < f[:, -2])  # no downward transfer: the step below the top is feared more
    q = model.make_params(POP, keys, "heights")
    assert np.all(np.diff(model.level_fears(q, s, u), axis=1) >= 0)  # under full it transfers down


def test_hold_protocol_holds_one_level_and_fear_decays_within_it():
    proto = next(p for p in PROTOCOLS if p.key == "hold")
    run = run_protocol(POP, TABLE, proto, 40, seed=3)
    assert run.trace.shape[0] == 2 and run.trace.shape[1] == len(run.t)
    eligible = run.trace[0].max(axis=0) >= 20
    m = run.trace[0][:, eligible].mean(axis=1)
    k = int(np.argmax(m))
    assert m[-1] < 0.8 * m[k]  # habituation within the exposure
    assert HoldLevel(3).level == 3


def test_anchor_check_and_table_have_every_row():
    a = ANCHORS[0]
    assert a.check(a.low) and a.check(a.high) and not a.check(a.high + 0.01) and not a.check(float("nan"))
    assert len({x.key for x in ANCHORS}) == len(ANCHORS) >= 8
    for x in ANCHORS:
        assert isinstance(x, Anchor) and x.source and x.reasoning and x.low <= x.high


def test_calibrate_cli_json_and_exit_status():
    keys = ["habituation-half-life", "habituation-constant-rate", "return-of-fear"]  # the short protocol only
    p = run_cli("calibrate", "--patients", "30", "--seed", "2", "--json", "--workers", "1", "--anchors", ",".join(keys))
    assert p.returncode in (0, 1), p.stderr
    r = json.loads(p.stdout)
    assert [x["key"] for x in r["anchors"]] == keys and list(r["protocols"]) == ["hold"]
    assert (p.returncode == 0) == r["passed"] == all(x["ok"] for x in r["anchors"])
    for x in r["anchors"]:
        assert x["model"] is None or np.isfinite(x["model"])
        assert x["ok"] == (x["model"] is not None and x["low"] - 1e-12 <= x["model"] <= x["high"] + 1e-12)
    assert r["settings"]["patients"] == 30 and r["settings"]["scene"] == "heights"
    t = run_cli("calibrate", "--patients", "30", "--seed", "2", "--workers", "1", "--anchors", keys[0])
    assert t.returncode == (0 if r["anchors"][0]["ok"] else 1)
    assert keys[0] in t.stdout and ("ok" in t.stdout or "OUT" in t.stdout)


def test_every_anchor_names_the_protocols_it_reads():
    assert {k for a in ANCHORS for k in a.needs} == {p.key for p in PROTOCOLS}
    assert all(set(a.needs) <= {p.key for p in PROTOCOLS} for a in ANCHORS)


def test_calibrate_cli_bad_input_one_line_error(tmp_path):
    p = run_cli("calibrate", "--scene", "moon")
    assert p.returncode == 2 and p.stderr.strip().startswith("exposure: error:") and "--scene" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    bad = tmp_path / "pop.toml"
    bad.write_text('[priors]\nlearning_rate = { dist = "lognormal", median = -1, sigma = 0.5 }\n')
    p = run_cli("calibrate", "--patients", "2", "--population", str(bad))
    assert p.returncode == 2 and "priors.learning_rate" in p.stderr
    p = run_cli("calibrate", "--anchors", "freeman-responders,nope")
    assert p.returncode == 2 and "nope" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_each_scene_is_checked_against_its_own_responders_anchor():
    from scenes.names import SCENES

    for scene in SCENES:
        keys = [a.key for a in for_scene(ANCHORS, scene)]
        assert sum(k in ("freeman-responders", "crowds-responders") for k in keys) == 1, scene
        assert "freeman-reduction" in keys and "oracle-headroom" in keys  # the rest apply to both
    assert "freeman-responders" in [a.key for a in for_scene(ANCHORS, "heights")]
    assert "crowds-responders" in [a.key for a in for_scene(ANCHORS, "crowds")]
    heights_only = tuple(a for a in ANCHORS if a.scenes == ("heights",))
    with pytest.raises(CalibrationError, match="crowds"):
        calibrate(POP, scene_table("crowds"), 2, anchors=heights_only)


def test_patient_decay_rates_recover_each_patients_own_rate():
    # synthetic traces (an edge case no recording gives): patient i decays at rate k_i per minute after
    # a rise, the second exposure from a lower start at its own rate
    t = np.arange(0, 20 * 60, 5.0)
    k1, k2 = np.array([0.05, 0.1, 0.2, 0.08]), np.array([0.05, 0.05, 0.15, 0.02])
    rise = np.minimum(1.0, t / 60.0)[:, None]
    tr = np.stack([rise * 60 * np.exp(-k1[None] * np.maximum(t[:, None] - 60, 0) / 60),
                   rise * 30 * np.exp(-k2[None] * np.maximum(t[:, None] - 60, 0) / 60)])
    tr[:, :, 3] = np.minimum(tr[:, :, 3], 15.0)  # peaks below 20: not eligible
    run = Run(None, tr, t)
    r1, r2 = patient_decay_rates(run, 0), patient_decay_rates(run, 1)
    assert np.allclose(r1[:3], k1[:3], rtol=0.02) and np.allclose(r2[:3], k2[:3], rtol=0.02)
    assert np.isnan(r1[3]) and np.isnan(r2[3])


def test_habituation_accrues_at_the_patients_own_rate_wherever_the_intensity_falls_between_bins():
    """One second at a fear of 50 from no habituation: at the intensity shown, habituation rises by the
    patient's own rate (ln 2 / half-life, a tenth of it for non-habituators) × immersion × the ceiling,
    whether that intensity lies on a bin of the model or between two (it once built at 37 % of the
    rate between bins)."""
    keys = noise.patient_keys(9, np.arange(12))
    p = model.make_params(POP, keys, "heights")
    s = model.initial_state(p)
    s = model.State(**{**s.__dict__, "A": np.full(p.n, 50.0)})
    k_h = model.LN2 / (p.habituation_half_life_min * 60.0) * np.where(p.non_habituator > 0.5, 0.1, 1.0)
    expected = k_h * (0.7 + 0.3 * p.presence) * model.H_MAX
    for u in (0.2, 0.3, 0.37, 0.5, 0.61, 0.9):
        ns, r = model.step(p, s, np.full(p.n, u), np.zeros(p.n, bool), 0, 100)
        seen = u * (1.0 - 0.2 * r.look_away)
        at_seen = np.array([np.interp(seen[i], model.BINS, ns.H[i]) for i in range(p.n)])
        np.testing.assert_allclose(at_seen, expected, rtol=1e-9, err_msg=f"u = {u}")


@pytest.mark.parametrize("scene", ["heights", "crowds"])
def test_within_session_habituation_anchors_hold_on_400_patients(scene):
    """The three habituation anchors (Portêlo 2021) on 400 patients of seed 0: an exponential decline
    within an exposure at a rate that stays within a factor 1.5 across exposures, with a partial return
    of fear (1,000 patients: docs/calibration.md)."""
    hold = next(p for p in PROTOCOLS if p.key == "hold")
    runs = {"hold": run_protocol(POP, scene_table(scene), hold, 400, 0)}
    for key in ("habituation-half-life", "habituation-constant-rate", "return-of-fear"):
        a = next(x for x in ANCHORS if x.key == key)
        v = a.measure(runs)
        assert a.check(v), (key, v)
    # patient by patient too (the pooled trace mixes fast and slow patients)
    r1, r2 = patient_decay_rates(runs["hold"], 0), patient_decay_rates(runs["hold"], 1)
    ok = np.isfinite(r1) & np.isfinite(r2) & (r1 > 0)
    assert ok.sum() > 100 and 0.67 <= np.median(r2[ok] / r1[ok]) <= 1.5
