"""The compiled per-second kernels against what they replaced: the evaluator's per-patient outcomes
on a small population, compared with a reference stored from the numpy evaluator before the kernels
(tests/fixtures/make_evaluator_reference.py, at 572c85c). The tolerance is documented in
docs/scale.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.gym_env import scene_table
from policy.sim.evaluate import METRICS, run_course
from policy.sim.patient.population import load_population
from tests.fixtures.make_evaluator_reference import CONTROLLERS, SETTINGS

REF = Path(__file__).parents[1] / "fixtures" / "evaluator_reference.npz"


@pytest.fixture(scope="module")
def result():
    return run_course(load_population(), scene_table("heights"), list(CONTROLLERS), **SETTINGS)


def test_per_patient_outcomes_match_the_numpy_reference(result):
    ref = np.load(REF)
    assert np.array_equal(result.pre_top, ref["pre_top"])
    for k in METRICS:
        assert np.array_equal(result.per_patient[k], ref[k], equal_nan=True), k
    for k, v in result.extras.items():
        assert np.array_equal(v, ref[f"x_{k}"], equal_nan=True), k


def test_the_reference_is_not_trivial():
    """The stored outcomes vary between patients and controllers (a comparison that can fail)."""
    ref = np.load(REF)
    assert ref["top_suds_post"].std() > 1.0
    assert len({tuple(np.round(ref["window_fraction"][c], 6)) for c in range(len(CONTROLLERS))}) == len(CONTROLLERS)
