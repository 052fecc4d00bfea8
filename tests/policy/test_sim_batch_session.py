"""The simulator's batch session skips the loss-of-signal hold and the ramp on ticks where they can change
nothing; a batch that runs them on every tick gives the same trajectories, to the bit, also when signals
are lost often (Bluetooth dropouts and optical gaps) and a controller rarely changes its targets."""

from __future__ import annotations

import numpy as np
import pytest

from engine.gym_env import scene_table
from policy.controllers import make_controller
from policy.shield import SafetyShield
from policy.sim.batch_session import BatchSession
from policy.sim.patient import model, noise
from policy.sim.patient.population import load_population


class _EveryTick(BatchSession):
    """The same session, with the hold and the ramp run on every tick (the rules as the live session runs them)."""

    def _tick_pre(self, now):
        self.s.advance(now)
        self._hold_until = -np.inf
        return super()._tick_pre(now)


def _run(cls, sensor: str, controller: str, scene: str) -> list[np.ndarray]:
    keys = noise.patient_keys(3, np.arange(12))
    p = model.make_params(load_population(), keys, scene, sensor=sensor, dropout_per_s=0.02)
    b = cls(p, scene_table(scene), [(make_controller(controller), SafetyShield())], seed=3)
    out = []
    for _ in range(2):
        b.start_session(240.0)
        for g in b.decisions():
            obs = b.observation(g)
            b.apply(g, obs, g.controller.propose(obs))
            out += [b.s.intensity.copy(), b.s.target.copy(), b.s.level_since.copy(), b.s.max_level.copy()]
        out += [b.s.intensity.copy(), b.s.target.copy(), b.s.max_level.copy()]
        b.end_session()
    return out


@pytest.mark.parametrize(("sensor", "controller", "scene"), [("optical", "ladder", "heights"),
                                                             ("chest", "hr-band", "crowds")])
def test_skipped_ticks_change_no_figure(sensor, controller, scene):
    fast, every = _run(BatchSession, sensor, controller, scene), _run(_EveryTick, sensor, controller, scene)
    assert len(fast) == len(every) > 40
    for a, b in zip(fast, every, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
