"""The session core and the arbiter: precedence of therapist commands, and the shield on loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.session.commands import COMMAND_TYPES, Command, CommandError, parse_command
from engine.session.core import SessionCore
from policy.controllers import Controller, Ladder, Proposal
from policy.shield import SafetyShield
from scenes.hierarchy import load_hierarchy
from sensors.sample import Sample


class AlwaysUp(Controller):
    """A reckless controller: proposes +0.1 at every decision."""

    name = "always-up"
    decision_interval = 1.0

    def propose(self, obs):
        n = obs.n
        return Proposal(np.full(n, 0.1), np.zeros(n, int), ("raise",))


def make_core(controller=None, **kw):
    h = load_hierarchy("heights")
    return SessionCore(h, controller or AlwaysUp(), SafetyShield(), writer=None, **kw)


def feed(core, t0, t1, bpm=70.0, dt=0.25):
    """Tick from t0 to t1 with a 1 Hz stream of samples (bpm None: no samples)."""
    t = t0
    next_sample = math.floor(t0) + 1.0
    while t < t1 - 1e-9:
        t = round(t + dt, 6)
        while bpm is not None and next_sample <= t:
            rr = (60000.0 / bpm,)
            core.push_sample(Sample(next_sample, 1e9 + next_sample, bpm, rr, True, "test"))
            next_sample += 1.0
        core.tick(t)
    return t


def test_controller_raises_and_intensity_ramps_at_bounded_rate():
    core = make_core()
    feed(core, 0.0, 30.0)
    assert core.target > 0.5
    # Ramp: never faster than the configured rate.
    assert core.intensity <= core.cfg.ramp_up_per_s * 30.0 + 1e-9
    assert core.intensity > 0.3


def test_therapist_stop_wins_within_one_tick_while_controller_raises():
    core = make_core()
    t = feed(core, 0.0, 20.0)
    assert core.target > core.intensity > 0.0  # the controller is raising
    core.push_command({"type": "stop"})
    core.tick(t + 0.25)  # the very next tick
    assert core.arbiter.stopped
    assert core.intensity == 0.0 and core.target == 0.0
    assert core.end_reason == "stopped by therapist"
    # Nothing the controller does afterwards changes anything.
    before = core.counts["decisions"]
    feed(core, t + 0.25, t + 10)
    assert core.counts["decisions"] == before and core.intensity == 0.0


def test_nothing_but_a_therapist_raises_intensity_during_signal_loss():
    core = make_core()
    t = feed(core, 0.0, 20.0)
    # The strap goes quiet: no samples for 60 s.
    held = None
    t_loss = t
    while t < t_loss + 60:
        t = feed(core, t, t + 1.0, bpm=None)
        if core.signal_lost(t):
            if held is None:
                held = core.intensity
            assert core.target <= held + 1e-12, "target rose during signal loss"
            assert core.intensity <= held + 1e-12, "intensity rose during signal loss"
            held = core.intensity
    assert held is not None, "loss of signal was never detected"
    assert core.shield.counts["signal lost: holding"] > 0
    # A therapist may still raise it.
    level = core.level + 2
    core.push_command({"type": "set_level", "level": level})
    t = feed(core, t, t + 60, bpm=None)
    assert core.arbiter.mode == "manual"
    assert core.target == pytest.approx(core.levels[level])
    assert core.intensity == pytest.approx(core.levels[level])


def test_pause_resume_and_mode_changes():
    core = make_core(Ladder(step_s=5))
    t = feed(core, 0.0, 10.0)
    core.push_command({"type": "pause"})
    core.tick(t + 0.25)
    assert core.arbiter.paused and core.snapshot()["paused"]
    target = core.target
    t = feed(core, t + 0.25, t + 30)
    assert core.target == target, "controller drove while paused"
    core.push_command({"type": "resume"})
    core.tick(t + 0.25)
    assert core.arbiter.mode == "auto"
    core.push_command({"type": "hold"})
    t = feed(core, t + 0.25, t + 30)
    assert core.arbiter.mode == "hold" and core.target == pytest.approx(core.intensity)


def test_resume_when_not_paused_is_refused_and_counted():
    core = make_core()
    core.push_command({"type": "resume"})
    core.tick(0.25)
    assert core.rejected_commands == 1
    assert core.arbiter.mode == "auto"


def test_suds_is_recorded_with_level_and_peak():
    core = make_core(Ladder())
    core.push_command({"type": "ask_suds"})
    core.tick(0.25)
    assert core.suds_pending_since == 0.25
    core.push_command({"type": "suds", "value": 35}, origin="patient")
    core.tick(0.5)
    assert core.suds_last == 35 and core.suds_peak == 35 and core.suds_pending_since is None
    assert core.suds_history[-1]["origin"] == "patient"


@pytest.mark.parametrize("bad, needle", [
    ({"type": "launch"}, "unknown command type"),
    ({"type": "set_level"}, "needs field 'level'"),
    ({"type": "set_level", "level": 11}, "must be in [0, 10]"),
    ({"type": "set_level", "level": 2.5}, "whole number"),
    ({"type": "set_intensity", "intensity": 1.5}, "must be in [0, 1]"),
    ({"type": "set_intensity", "intensity": float("nan")}, "must be a finite number"),
    ({"type": "suds", "value": "high"}, "must be a finite number"),
    ({"type": "event", "kind": "earthquake"}, "must be one of"),
    ({"type": "annotate", "text": ""}, "non-empty"),
    ({"type": "stop", "level": 3}, "takes no fields"),
    ({"type": "set_level", "level": 3, "text": "x"}, "unknown field(s) text"),
    (["stop"], "JSON object"),
])
def test_malformed_commands_are_rejected_with_a_clear_line_and_counted(bad, needle):
    core = make_core()
    with pytest.raises(CommandError, match=None) as e:
        core.push_command(bad)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert core.rejected_commands == 1
    core.tick(0.25)
    assert core.counts["commands"] == 0  # never reached the core


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    json_values,
    st.fixed_dictionaries({"type": st.sampled_from(COMMAND_TYPES)},
                          optional={"level": json_values, "intensity": json_values,
                                    "value": json_values, "kind": json_values, "text": json_values})))
def test_any_json_is_a_command_or_a_command_error(d):
    try:
        cmd = parse_command(d, n_levels=11)
    except CommandError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(cmd, Command) and cmd.type in COMMAND_TYPES


def test_flood_of_commands_is_refused_not_stalling():
    core = make_core()
    accepted = refused = 0
    for _ in range(1000):
        try:
            core.push_command({"type": "annotate", "text": "x"})
            accepted += 1
        except CommandError:
            refused += 1
    assert accepted == 256 and refused == 744
    core.tick(0.25)
    assert core.counts["commands"] == 256
