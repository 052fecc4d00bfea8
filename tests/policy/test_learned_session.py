"""The shipped policy drives a real session: every decision record carries the observation the
policy saw and its action probabilities, and the session marks the decisions as the policy's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.session.live import Session, SessionConfig, default_controller
from engine.store.files import SessionReader
from policy.learned import LearnedController
from policy.observation import VECTOR_FIELDS


@pytest.mark.parametrize("scene", ["heights", "crowds"])
def test_the_shipped_policy_is_not_the_default_until_its_card_shows_every_goal_met(scene):
    # the shipped cards predate the calibrated patient model and carry no goals: the safest baseline
    name, why = default_controller(scene)
    assert name == "hr-band" and "not the learned policy" in why


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
    assert name == "hr-band" and "overwhelm" in why
    name, why = default_controller("crowds", _card(tmp_path / "c", "crowds", goals=met))
    assert name == "hr-band" and "before its calibration" in why
    assert default_controller("crowds", tmp_path / "none")[0] == "hr-band"


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
    assert line.startswith("controller: hr-band (default: the HR band, the safest clinical baseline")
    with SessionReader(next(tmp_path.glob("*.session"))) as r:
        assert r.meta["controller"] == "hr-band" and "safest" in r.meta["controller_reason"]


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
        # the shipped policies were trained on observation version 1: its 12 inputs, by name
        assert len(info["obs"]) == len(s.controller.inputs) == len(meta["controller_info"]["inputs"])
        assert list(s.controller.inputs) == list(VECTOR_FIELDS[:12])
        assert all(np.isfinite(info["obs"]))
        for p in info["probs"]:
            assert sum(p) == pytest.approx(1.0, abs=1e-4)
            assert min(p) >= 0.0
        # The logged action is the most probable one (deterministic live inference).
        assert info["action"][0] == int(np.argmax(info["probs"][0]))
        # Replaying the logged observation through the actor gives the logged probabilities.
        again = s.controller.actor.probabilities(np.array([info["obs"]]))
        np.testing.assert_allclose(again[0][0], info["probs"][0], atol=1e-4)
