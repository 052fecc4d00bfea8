"""The OpenXR session lifecycle (engine/xr_lifecycle.py), over the state names the runtime reports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.render.xr_lifecycle import STATES, Lifecycle

START = ["IDLE", "READY", "SYNCHRONIZED", "VISIBLE", "FOCUSED"]


def run(states):
    lc = Lifecycle()
    return lc, [lc.on_state(s, float(i)) for i, s in enumerate(states)]


def test_a_normal_start_begins_the_session_once_and_never_pauses():
    lc, steps = run(START)
    assert [s.begin_session for s in steps] == [False, True, False, False, False]
    assert not any(s.pause or s.end_session or s.exit for s in steps)
    assert lc.running and lc.focused and lc.visible and lc.ever_focused
    assert [h[1] for h in lc.history] == START


@pytest.mark.parametrize("lost_to,why", [
    ("VISIBLE", "lost input focus"),          # a system menu, another app in front
    ("SYNCHRONIZED", "not visible"),          # headset taken off (proximity sensor)
    ("STOPPING", "stopping"),                 # runtime or app asked the session to stop
    ("LOSS_PENDING", "runtime lost"),
])
def test_leaving_focus_pauses_in_that_step_and_says_why(lost_to, why):
    lc, steps = run([*START, lost_to])
    last = steps[-1]
    assert last.pause and why in last.reason and last.previous == "FOCUSED"
    assert lc.pauses == 1


def test_regaining_focus_does_not_resume_and_a_second_loss_pauses_again():
    lc, steps = run([*START, "VISIBLE", "FOCUSED", "VISIBLE"])
    assert [s.pause for s in steps[5:]] == [True, False, True]
    assert lc.pauses == 2


def test_stopping_ends_the_session_and_exiting_ends_the_headset():
    lc, steps = run([*START, "VISIBLE", "SYNCHRONIZED", "STOPPING", "IDLE", "EXITING"])
    stopping = steps[7]
    assert stopping.end_session and not stopping.pause  # the pause came when focus was lost, once
    assert steps[5].pause and lc.pauses == 1
    assert steps[-1].exit and "exiting" in steps[-1].reason
    assert not lc.running


def test_a_runtime_restart_begins_again_after_stopping():
    lc, steps = run([*START, "STOPPING", "IDLE", "READY", "SYNCHRONIZED"])
    assert [s.begin_session for s in steps].count(True) == 2 and [s.end_session for s in steps].count(True) == 1
    assert lc.running and not lc.focused


def test_unknown_state_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'BOGUS'"):
        Lifecycle().on_state("BOGUS")


@given(st.lists(st.sampled_from(STATES[1:]), max_size=40))
def test_any_sequence_pauses_exactly_when_focus_is_left(seq):
    lc = Lifecycle()
    prev = "UNKNOWN"
    begun = ended = 0
    for s in seq:
        step = lc.on_state(s)
        assert step.pause == (prev == "FOCUSED" and s != "FOCUSED")
        assert step.exit == (s in ("EXITING", "LOSS_PENDING"))
        begun += step.begin_session
        ended += step.end_session
        assert 0 <= begun - ended <= 1  # begin and end alternate, as the runtime requires
        prev = s
