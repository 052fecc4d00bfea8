"""The compiled per-second kernel of the virtual patient against its own Python source: numba keeps
the function it compiled (``_step_lanes.py_func``), so the same equations run interpreted, side by
side with the compiled kernel, on the same patients and inputs. This check does not depend on any
stored figure (tests/policy/test_sim_kernels.py locks the evaluator's results; this one checks that
compiling changes nothing). The tolerance is the documented one (docs/scale.md)."""

from __future__ import annotations

import numpy as np
import pytest

from policy.sim.patient import model, noise
from policy.sim.patient.population import STRUCTURES, load_population

RTOL, ATOL = 1e-9, 1e-9
N, SECONDS = 20, 150  # per session; two sessions with the between-session step in between

#: every structure once, both sensors, both scenes
CASES = [("full", "chest", "heights"), ("habituation-only", "optical", "crowds"),
         ("inhibitory-flat", "chest", "crowds"), ("no-sensitisation", "optical", "heights"),
         ("abrupt-no-transfer", "chest", "heights")]


def _inputs(session: int, second: int) -> tuple[np.ndarray, np.ndarray]:
    """Intensity per lane: a ramp to the top at different speeds, with abrupt steps for some lanes;
    a SUDS question every 30 s for half of the lanes."""
    lane = np.arange(N)
    u = np.clip((second + 40 * session) * (0.004 + 0.0015 * (lane % 5)), 0.0, 1.0)
    u = np.where(lane % 4 == 0, np.where((second // 40) % 2 == 1, 0.9, 0.3), u)
    asked = (second % 30 == 0) & (lane % 2 == 0)
    return u, asked


def _run(p: model.Params) -> tuple[list, list]:
    s = model.initial_state(p)
    states, readings = [], []
    for session in range(2):
        for second in range(1, SECONDS + 1):
            u, asked = _inputs(session, second)
            s, r = model.step(p, s, u, asked, session, second)
            states.append(s)
            readings.append(r)
        s, _ = model.next_session(p, s, session)
    return states, readings


def _same(a, b, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "biu":
        assert np.array_equal(a, b), what
    else:
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=what)


@pytest.mark.parametrize(("structure", "sensor", "scene"), CASES)
def test_compiled_kernel_matches_its_interpreted_source(structure, sensor, scene, monkeypatch):
    assert structure in STRUCTURES
    p = model.make_params(load_population(), noise.patient_keys(5, np.arange(N)), scene, structure=structure,
                          sensor=sensor)
    compiled = _run(p)
    # the kernel's own source, and the noise helpers it calls on uint64 (interpreted, they stay numpy
    # uint64: a compiled helper would hand back a Python int)
    source, calls = model._step_lanes.py_func, []

    def interpreted_step(*args):
        calls.append(1)
        return source(*args)

    monkeypatch.setattr(model, "_step_lanes", interpreted_step)
    monkeypatch.setattr(noise, "mix", noise.mix.py_func)
    monkeypatch.setattr(noise, "to_unit", noise.to_unit.py_func)
    with np.errstate(over="ignore"):  # SplitMix64 multiplies modulo 2**64 on purpose
        interpreted = _run(p)
    assert len(calls) == 2 * SECONDS  # every second of the second run went through the Python source
    for t, (sc, si) in enumerate(zip(compiled[0], interpreted[0], strict=True)):
        for f in model.state_fields():
            _same(getattr(sc, f), getattr(si, f), f"state {f} at step {t}")
    for t, (rc, ri) in enumerate(zip(compiled[1], interpreted[1], strict=True)):
        for f in ("bpm", "rr", "contact", "look_away", "fear", "overwhelm", "in_window", "escaped_now", "in_vr"):
            _same(getattr(rc, f), getattr(ri, f), f"reading {f} at step {t}")
    # the run exercised the equations: fear rose and fell, some safety was learned, the sensor reported
    fear = np.array([r.fear for r in compiled[1]])
    assert fear.max() > 40.0 and np.ptp(fear[:, 0]) > 5.0
    assert compiled[0][-1].safety.max() > 0.01
    assert np.isfinite(np.array([r.bpm for r in compiled[1]])).mean() > 0.5
