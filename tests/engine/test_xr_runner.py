"""The runner's headset path (engine/panda_runner.py) when focus is lost and regained.

Monado's in-process runtime keeps its one session FOCUSED (focus moves only between the clients of
its service), so losing focus is driven here by a stand-in headset that reports the runtime's
states through the real Lifecycle; the STOPPING path runs against Monado in test_xr_monado.py.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("panda3d")

from engine.render.xr_actions import ActionFrame, PatientControls  # noqa: E402
from engine.render.xr_lifecycle import Lifecycle  # noqa: E402
from engine.session.clock import SimClock  # noqa: E402
from engine.session.live import Session, SessionConfig  # noqa: E402


class StandInHeadset:
    """Reports scripted session states (frame → states) through a real Lifecycle."""

    def __init__(self, script: dict[int, list[str]]):
        self.script, self.frame = script, 0
        self.lifecycle = Lifecycle()
        self.exit_requested, self.exit_reason, self.errors = False, "", 0
        self.eye_height = 0.0
        self.system_name = "stand-in"
        self.actions = type("A", (), {"current_profile": staticmethod(lambda hand="right": None)})()

    @property
    def focused(self):
        return self.lifecycle.focused

    @property
    def running(self):
        return self.lifecycle.running

    def poll(self, t):
        steps = [self.lifecycle.on_state(s, t) for s in self.script.get(self.frame, [])]
        self.frame += 1
        return steps

    def read_actions(self, t):
        return ActionFrame(t)

    def stats(self):
        return {"frames": self.frame}

    def close(self):
        pass


def test_losing_focus_pauses_in_that_frame_holds_intensity_and_regaining_it_does_not_resume(tmp_path):
    from engine.render.panda_runner import Runner

    s = Session(SessionConfig(display="offscreen", speed="max", sessions_dir=tmp_path, console=None,
                              duration_s=600), clock=SimClock())
    r = Runner(s, "offscreen", size=(160, 100))
    hs = StandInHeadset({1: ["IDLE", "READY", "SYNCHRONIZED", "VISIBLE", "FOCUSED"], 12: ["VISIBLE"],
                         20: ["FOCUSED"]})
    r.headset, r.controls, r.last_actions = hs, PatientControls(), None
    core = s.core
    seen = []
    try:
        for f in range(30):
            if f == 3:
                core.push_command({"type": "set_intensity", "intensity": 1.0}, origin="therapist")
            r.clock.tick()
            r.tm.step()
            seen.append((hs.lifecycle.state, core.arbiter.mode, core.intensity, core.target, r.stage.paused))
    finally:
        r.close()
        s.close("test")
    assert seen[11][:2] == ("FOCUSED", "manual") and seen[11][2] < seen[11][3]  # ramping up
    state, mode, x, target, stage_paused = seen[12]
    assert (state, mode, stage_paused) == ("VISIBLE", "paused", True)  # in the frame focus was lost
    assert target == pytest.approx(x) and x > seen[11][2]
    assert all(row[2] == pytest.approx(x) for row in seen[12:])  # held, behind the calm scene
    assert seen[20][:2] == ("FOCUSED", "paused") and seen[-1][1] == "paused"  # back: still paused

    from engine.store.files import SessionReader

    with SessionReader(s.path) as log:
        events = [(e["kind"], json.loads(e["detail"])) for e in log.records("events")]
        cmds = [(c["type"], c["origin"]) for c in log.records("commands")]
    assert ("pause", "system") in cmds and cmds.count(("annotate", "system")) == 2
    notes = [d["text"] for k, d in events if k == "annotation"]
    assert "lost input focus" in notes[0] and "back in the headset" in notes[1]
    states = [d["state"] for k, d in events if k == "headset"]
    assert states == ["IDLE", "READY", "SYNCHRONIZED", "VISIBLE", "FOCUSED", "VISIBLE", "FOCUSED"]
    frames = [d for k, d in events if k == "headset_frames"]
    assert frames and frames[0]["frames"] == 30 and frames[0]["system"] == "stand-in"
