"""The patient's SUDS dial and safety exit over injected OpenXR action states (engine/xr_actions.py),
and their path into the session core as patient commands."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from engine.render.xr_actions import PROFILES, SAFETY_HOLD_S, ActionFrame, PatientControls

DT = 1 / 60


def frames(c: PatientControls, seq, pending=False, t0=0.0):
    """Feed (field → value) dicts as consecutive frames; collect the commands."""
    out = []
    for i, kw in enumerate(seq):
        out += c.update(ActionFrame(t0 + i * DT, **kw), pending)
    return out


def tap(**kw):
    return [kw, {}]


def test_asked_for_a_rating_the_dial_opens_at_50_steps_by_5_and_submits():
    c = PatientControls()
    seq = [{}] + tap(suds_up=True) * 3 + tap(suds_down=True) + tap(suds_submit=True)
    out = frames(c, seq, pending=True)
    assert out == [{"type": "suds", "value": 60.0}]
    assert c.value is None and c.last_given == 60


def test_a_held_button_steps_once_and_the_dial_stays_within_0_to_100():
    c = PatientControls()
    frames(c, [{"suds_up": True}] * 30, pending=True)
    assert c.value == 55
    frames(c, tap(suds_up=True) * 20, pending=True, t0=1.0)
    assert c.value == 100
    frames(c, tap(suds_down=True) * 30, pending=True, t0=3.0)
    assert c.value == 0


def test_the_stick_flicks_step_once_each_and_rearm_at_rest():
    c = PatientControls()
    seq = [{}, {"suds_axis": 0.9}, {"suds_axis": 1.0}, {"suds_axis": 0.5}, {"suds_axis": 0.9}, {},
           {"suds_axis": -0.8}, {}, {"suds_axis": -0.7}]
    frames(c, seq, pending=True)
    assert c.value == 50 + 5 - 5 - 5


def test_the_next_question_opens_at_the_last_rating():
    c = PatientControls()
    frames(c, [{}] + tap(suds_down=True) + tap(suds_submit=True), pending=True)
    assert c.last_given == 45
    frames(c, [{}, {}], pending=False, t0=1.0)
    frames(c, [{}], pending=True, t0=2.0)
    assert c.value == 45


def test_volunteering_a_rating_without_being_asked():
    c = PatientControls()
    out = frames(c, tap(suds_submit=True) + tap(suds_up=True) + tap(suds_submit=True))
    assert out == [{"type": "suds", "value": 55.0}]
    assert c.counts["suds"] == 1


def test_question_answered_elsewhere_closes_the_dial():
    c = PatientControls()
    frames(c, [{}], pending=True)
    assert c.dial_open
    frames(c, [{}], pending=False, t0=1.0)
    assert not c.dial_open


def test_safety_exit_fires_once_after_the_hold_and_again_after_release():
    c = PatientControls()
    n_hold = math.ceil(SAFETY_HOLD_S / DT) + 1
    out = frames(c, [{"safety_exit": True}] * (n_hold + 30))
    assert out == [{"type": "pause"}]
    fresh = PatientControls()
    fired = [i for i in range(n_hold + 5) if fresh.update(ActionFrame(i * DT, safety_exit=True), False)]
    assert fired == [math.ceil(SAFETY_HOLD_S / DT - 1e-9)]  # the first frame the hold reaches SAFETY_HOLD_S
    out = frames(c, [{}] + [{"safety_exit": True}] * (n_hold + 1), t0=10.0)
    assert out == [{"type": "pause"}] and c.counts["safety_exit"] == 2


def test_a_brush_of_the_safety_button_does_nothing():
    c = PatientControls()
    assert frames(c, [{"safety_exit": True}] * 5 + [{}] + [{"safety_exit": True}] * 5) == []


def test_safety_exit_wins_while_the_dial_is_open_and_buttons_are_mashed():
    c = PatientControls()
    n = math.ceil(SAFETY_HOLD_S / DT) + 2
    seq = [{"safety_exit": True, "suds_up": i % 2 == 0, "suds_submit": i % 3 == 0, "suds_axis": (-1) ** i}
           for i in range(n)]
    out = frames(c, seq, pending=True)
    assert {"type": "pause"} in out


@given(st.lists(st.fixed_dictionaries({}, optional={
    "suds_up": st.booleans(), "suds_down": st.booleans(), "suds_submit": st.booleans(),
    "safety_exit": st.booleans(),
    "suds_axis": st.floats(-1.0, 1.0, allow_nan=False)}), max_size=200), st.booleans())
def test_any_input_gives_only_valid_commands(seq, pending):
    from engine.session.commands import parse_command

    c = PatientControls()
    for cmd in frames(c, seq, pending=pending):
        parsed = parse_command(cmd, origin="patient")
        assert parsed.type in ("suds", "pause")
        if parsed.type == "suds":
            assert parsed.value % 5 == 0 and 0 <= parsed.value <= 100
    assert c.value is None or (0 <= c.value <= 100 and c.value % 5 == 0)


def test_every_profile_binds_the_safety_exit_and_a_submit_and_a_way_to_move_the_dial():
    assert set(PROFILES) == {f"/interaction_profiles/{p}" for p in (
        "khr/simple_controller", "oculus/touch_controller", "valve/index_controller", "htc/vive_controller")}
    for table in PROFILES.values():
        assert table["safety_exit"] and table["suds_submit"]
        assert ("suds_up" in table and "suds_down" in table) or "suds_axis" in table
        safety = set(table["safety_exit"])
        others = {p for a, ps in table.items() if a != "safety_exit" for p in ps}
        assert not safety & others  # the safety button does nothing else


def test_patient_commands_reach_the_core_and_are_logged_like_the_therapists(tmp_path):
    """The dial's and the safety exit's commands go through SessionCore.push_command with origin
    'patient', are applied in the next tick, and land in the log's commands table."""
    from engine.session.live import Session, SessionConfig

    cfg = SessionConfig(scene="heights", controller="ladder", duration_s=60, speed="max",
                        sessions_dir=tmp_path, console=None).validated()
    s = Session(cfg)
    try:
        core = s.core
        s.step(1.0)
        core.push_command({"type": "ask_suds"}, origin="therapist")
        s.step(2.0)
        c = PatientControls()
        t = 2.0
        for kw in [{}] + tap(suds_up=True) + tap(suds_submit=True):
            t += DT
            for cmd in c.update(ActionFrame(t, **kw), core.suds_pending_since is not None):
                core.push_command(cmd, origin="patient")
            s.step(t)
        assert core.suds_last == 55.0 and core.suds_history[-1]["origin"] == "patient"
        for _ in range(math.ceil(SAFETY_HOLD_S / DT) + 2):
            t += DT
            for cmd in c.update(ActionFrame(t, safety_exit=True), False):
                core.push_command(cmd, origin="patient")
            s.step(t)
        assert core.arbiter.paused
        recent = [(r["type"], r["origin"], r["accepted"]) for r in core.commands_recent]
        assert ("suds", "patient", True) in recent and ("pause", "patient", True) in recent
    finally:
        s.close("test over")
    from engine.store.files import SessionReader

    with SessionReader(s.path) as log:
        cmds = [(r["type"], r["origin"]) for r in log.records("commands")]
    assert ("suds", "patient") in cmds and ("pause", "patient") in cmds
