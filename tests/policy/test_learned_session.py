"""The shipped policy drives a real session: every decision record carries the observation the
policy saw and its action probabilities, and the session marks the decisions as the policy's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.session.config import SAFEST_BASELINE, safest_baseline
from engine.session.live import Session, SessionConfig, default_controller
from engine.store.files import SessionReader
from policy.learned import LearnedController
from policy.observation import VECTOR_FIELDS


@pytest.mark.parametrize("scene", ["heights", "crowds"])
def test_the_shipped_policy_is_not_the_default_until_its_card_shows_every_goal_met(scene):
    # no shipped card shows every goal met on the calibrated patient model: the safest baseline,
    # which is the SUDS protocol in both scenes (docs/results.md, "Which controller is the default")
    name, why = default_controller(scene)
    assert name == "suds" == SAFEST_BASELINE[scene]
    assert why.startswith("the SUDS protocol, the safest clinical baseline") and "not the learned policy" in why


def _m(over, esc, resp):
    return {"overwhelm_s_per_session": over, "escapes_per_patient": esc, "responder_rate": resp}


def test_the_safest_baseline_rule_on_the_measured_figures_and_at_its_ties():
    # 1,000 patients × 6 × 40 min, seed 0 (the calibration's course protocol), heights and crowds
    heights = {"suds": _m(0.0, 0.0, 0.630), "hr-band": _m(0.201, 0.016, 0.739), "ladder": _m(0.437, 0.035, 0.733),
               "hr-pid": _m(0.0, 0.0, 0.99)}  # the HR PID is not a clinical rule: never chosen
    crowds = {"suds": _m(0.0, 0.0, 0.614), "hr-band": _m(0.162, 0.016, 0.730), "ladder": _m(0.304, 0.025, 0.725)}
    assert safest_baseline(heights) == "suds" and safest_baseline(crowds) == "suds"
    # within goal 2's tolerance (0.1 s, 0.01 escapes) it is a tie, broken by responders
    assert safest_baseline({"suds": _m(0.0, 0.0, 0.63), "hr-band": _m(0.1, 0.01, 0.74)}) == "hr-band"
    assert safest_baseline({"suds": _m(0.0, 0.0, 0.63), "hr-band": _m(0.11, 0.0, 0.74)}) == "suds"
    assert safest_baseline({"suds": _m(0.0, 0.0, 0.63), "hr-band": _m(0.0, 0.011, 0.74)}) == "suds"
    # safer on one measure and less safe beyond the tolerance on the other: neither is out
    assert safest_baseline({"suds": _m(0.0, 0.05, 0.63), "hr-band": _m(0.5, 0.0, 0.74)}) == "hr-band"
    assert safest_baseline({"ladder": _m(0.3, 0.0, 0.7)}) == "ladder"
    with pytest.raises(ValueError, match="no clinical baseline"):
        safest_baseline({"hr-pid": _m(0.0, 0.0, 0.7)})


def _card(tmp_path, scene, **extra):
    d = tmp_path / scene
    d.mkdir(parents=True, exist_ok=True)
    (d / "card.json").write_text(json.dumps({"scene": scene, **extra}))
    return tmp_path


def test_the_policy_becomes_the_default_only_with_every_goal_met_on_the_calibrated_model(tmp_path):
    met = {"results": {"responders": {"met": True}, "overwhelm": {"met": True}}}
    assert default_controller("crowds", _card(tmp_path / "a", "crowds", patient_model="calibrated",
                                              goals=met))[0] == "policy"
    missed = {"results": {"responders": {"met": True}, "overwhelm": {"met": False}}}
    name, why = default_controller("crowds", _card(tmp_path / "b", "crowds", patient_model="calibrated",
                                                   goals=missed))
    assert name == "suds" and "overwhelm" in why
    name, why = default_controller("crowds", _card(tmp_path / "c", "crowds", goals=met))
    assert name == "suds" and "before its calibration" in why
    assert default_controller("crowds", tmp_path / "none")[0] == "suds"


def test_the_run_banner_says_which_controller_and_why(tmp_path):
    import contextlib
    import io

    from engine.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["run", "--display", "none", "--speed", "max", "--console", "off", "--duration", "1m",
                   "--sessions-dir", str(tmp_path)])
    assert rc == 0
    line = next(ln for ln in out.getvalue().splitlines() if ln.startswith("controller:"))
    assert line.startswith("controller: suds (default: the SUDS protocol, the safest clinical baseline")
    assert "overwhelm" in line and "responders" in line  # why, with the figures
    with SessionReader(next(tmp_path.glob("*.session"))) as r:
        assert r.meta["controller"] == "suds" and "safest" in r.meta["controller_reason"]


@pytest.mark.parametrize("scene", ["heights", "crowds"])
def test_decisions_carry_observation_and_probabilities(scene, tmp_path):
    cfg = SessionConfig(scene=scene, controller="policy", duration_s=300.0, speed="max",
                        sessions_dir=tmp_path, seed=3)
    s = Session(cfg)
    assert isinstance(s.controller, LearnedController)
    s.run_headless()
    with SessionReader(s.path) as r:
        decisions = [d for d in r.records("decisions") if d["name"] == "policy"]
        meta = r.meta
    assert meta["controller"] == "policy"
    assert meta["controller_info"]["scene"] == scene
    interval = s.controller.decision_interval
    assert len(decisions) == pytest.approx(300.0 / interval, abs=2)
    for d in decisions:
        assert d["who"] in ("policy", "shield")
        info = json.loads(d["info"])
        # the shipped policies are trained on observation version 2: every input, the course included
        assert len(info["obs"]) == len(s.controller.inputs) == len(meta["controller_info"]["inputs"])
        assert list(s.controller.inputs) == list(VECTOR_FIELDS)
        assert all(np.isfinite(info["obs"]))
        for p in info["probs"]:
            assert sum(p) == pytest.approx(1.0, abs=1e-4)
            assert min(p) >= 0.0
        # The logged action is the most probable one (deterministic live inference).
        assert info["action"][0] == int(np.argmax(info["probs"][0]))
        # Replaying the logged observation through the actor gives the logged probabilities.
        again = s.controller.actor.probabilities(np.array([info["obs"]]))
        np.testing.assert_allclose(again[0][0], info["probs"][0], atol=1e-4)
