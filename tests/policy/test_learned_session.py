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


def test_policy_is_the_default_controller():
    assert default_controller() == "policy"


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
