"""A learned policy gets the inputs its bundle names, by name: a policy trained on observation
version 1 (the heights policy shipped until 2026-11-30, kept as a fixture) acts exactly as before the
course fields were added; a bundle whose inputs this software does not compute is refused with one
clear line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from policy.controllers import ControllerError
from policy.learned import LearnedController, shipped_bundle
from policy.numpy_mlp import load_bundle
from policy.observation import COURSE_FIELDS, VECTOR_FIELDS, empty_observation

#: a real bundle trained on observation version 1 (tests/fixtures/README.md)
V1 = Path(__file__).resolve().parents[1] / "fixtures" / "policy_v1_heights.npz"


def _obs(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    o = empty_observation(n)
    for name in ("intensity", "level_frac", "time_at_level", "hr_delta", "hr_slope", "rmssd", "quality",
                 "suds", "suds_age", "look_away", "t"):
        setattr(o, name, rng.uniform(0, 1, n) * (100 if name in ("suds", "time_at_level", "t") else 1))
    o.lost = rng.uniform(0, 1, n) < 0.1
    for name in COURSE_FIELDS:  # a course context that a version-1 policy must not see
        setattr(o, name, rng.uniform(1, 50, n))
    return o


def test_a_version_1_policy_sees_its_twelve_inputs_only():
    actor = load_bundle(V1)
    assert actor.meta["obs_version"] == 1 and actor.obs_dim == 12
    c = LearnedController("heights", path=V1)
    assert c.inputs == VECTOR_FIELDS[:12]
    o = _obs()
    a = c.propose(o)
    # the same as the actor on the version-1 vector, whatever the course fields hold
    want, _ = actor.act(np.clip(o.vector(VECTOR_FIELDS[:12]), -10, 10), None)
    assert np.array_equal(a.info["action"][:, 0], want[:, 0])
    o2 = _obs()
    for name in COURSE_FIELDS:
        setattr(o2, name, np.zeros(o2.n))
    assert np.array_equal(c.propose(o2).info["action"], a.info["action"])


@pytest.mark.parametrize("scene", ["heights", "crowds"])
def test_the_shipped_policies_see_every_input_the_course_included(scene):
    actor = load_bundle(shipped_bundle(scene))
    assert actor.meta["obs_version"] == 2 and actor.obs_dim == len(VECTOR_FIELDS)
    c = LearnedController(scene)
    assert c.inputs == VECTOR_FIELDS
    o, o2 = _obs(), _obs()
    for name in COURSE_FIELDS:
        setattr(o2, name, np.zeros(o2.n))
    # the course fields reach the actor: its action probabilities move with them
    p1, p2 = c.propose(o).info["probs"], c.propose(o2).info["probs"]
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(p1, p2, strict=True)) > 1e-3


@pytest.mark.parametrize("meta, needle", [
    ({"obs_version": 3}, "trained on observation version 3/1, this software computes 2/1: retrain it"),
    ({"inputs": None}, "does not name its inputs"),
    ({"inputs": [*VECTOR_FIELDS[:11], "pupil_size"]}, "inputs this software does not compute (pupil_size)"),
    ({"inputs": list(VECTOR_FIELDS[:11])}, "do not fit its metadata"),
])
def test_bundles_that_do_not_fit_are_refused(meta, needle):
    actor = load_bundle(V1)
    bad = replace(actor, meta={**actor.meta, **meta})
    with pytest.raises(ControllerError) as e:
        LearnedController("heights", actor=bad)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_the_vector_of_a_first_session_encodes_the_course_neutrally():
    o = empty_observation(2)
    v = o.vector()
    assert v.shape == (2, len(VECTOR_FIELDS)) and np.isfinite(v).all()
    course = dict(zip(VECTOR_FIELDS, v[0], strict=True))
    assert course["course_session"] == 0.0 and course["course_minutes"] == 0.0
    assert course["prev_highest_level"] == -1.0 and course["prev_peak_suds"] == -1.0
    assert course["prev_peak_hr_rise"] == 0.0 and course["return_of_fear"] == 0.0
