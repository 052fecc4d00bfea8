"""Headset scenarios against a real OpenXR runtime, run in a child process by test_xr_monado.py
(a crash in a graphics driver then fails one test, not the test run). Prints one JSON object.

    python -m tests.engine.xr_scenario stopping SESSIONS_DIR
    python -m tests.engine.xr_scenario input SESSIONS_DIR

``stopping``: a therapist raises the intensity; mid-ramp the app asks the runtime to end the
session (xrRequestExitSession); the runtime answers STOPPING → IDLE → EXITING. Every frame's
headset state, mode and intensity is recorded.

``input``: Monado's qwerty driver (XRT_DEBUG_GUI=1, QWERTY_ENABLE=1) emulates two KHR simple
controllers from keyboard and mouse events on its debug window; the test drives that window with
xdotool. The scenario records the action states and the patient's commands each frame.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def run(kind: str, sessions_dir: Path) -> dict:
    from engine.render.panda_runner import Runner
    from engine.render.xr import open_headset
    from engine.session.clock import SimClock
    from engine.session.live import Session, SessionConfig

    speed = "max" if kind == "stopping" else "1"
    duration = 120.0 if kind == "stopping" else 60.0
    cfg = SessionConfig(scene="heights", controller="ladder", display="headset", duration_s=duration, speed=speed,
                        console=None, sessions_dir=sessions_dir).validated()
    hs = open_headset()
    session = Session(cfg, clock=SimClock() if speed != "1" else None)
    runner = Runner(session, "headset", stereo=hs)
    if kind == "input":  # the emulated controllers answer for the patient, not sim://'s virtual patient
        session.source.suds = lambda now: None
    core = session.core
    rec: list[dict] = []
    plan = {"raised_at": None, "exit_requested_at": None, "frame": 0}

    def before(task):  # runs before the session's step each frame
        f = plan["frame"]
        if kind == "stopping" and hs.focused:
            if plan["raised_at"] is None and f >= 5:
                core.push_command({"type": "set_intensity", "intensity": 0.9}, origin="therapist")
                plan["raised_at"] = f
            elif plan["exit_requested_at"] is None and plan["raised_at"] is not None and core.intensity > 0.1:
                hs.request_exit()
                plan["exit_requested_at"] = f
        return task.cont

    def after(task):  # after the step: what the frame ended with
        rec.append({"frame": plan["frame"], "t": core.t, "state": hs.lifecycle.state, "mode": core.arbiter.mode,
                    "intensity": core.intensity, "target": core.target, "showing": runner.stage.showing,
                    "dial": runner.controls.value, "entry": runner.ui.entry,
                    "actions": {k: v for k, v in vars(runner.last_actions).items() if k != "t" and v}
                    if runner.last_actions is not None else {}, "suds_pending": core.suds_pending_since is not None})
        plan["frame"] += 1
        if kind == "input":  # the test paces its presses by our frames, not by wall time
            (sessions_dir / "frame.tmp").write_text(json.dumps(rec[-1]))
            (sessions_dir / "frame.tmp").replace(sessions_dir / "frame")
        if kind == "input" and Path(sessions_dir / "stop").exists():
            core.push_command({"type": "stop"}, origin="test")
        if kind == "input" and hs.focused and not Path(sessions_dir / "focused").exists():
            (sessions_dir / "focused").write_text(str(core.t))
        if kind == "input" and plan["frame"] == 3:
            core.push_command({"type": "ask_suds"}, origin="therapist")
        return task.cont

    runner.tm.add(before, "test-before", sort=-20)
    runner.tm.add(after, "test-after", sort=0)
    reason = "?"
    try:
        reason = runner.run()
    finally:
        if kind == "input":
            # Monado's debug GUI (which the qwerty driver needs) crashes in its own thread at
            # xrDestroyInstance (gui_prober_update); close the log and report, then leave at once.
            session.close(reason)
            print(json.dumps(result(reason, core, rec, plan, session)), flush=True)
            os._exit(0)
        runner.close()
        hs.close()
        session.close(reason)
    return result(reason, core, rec, plan, session)


def mirror(session) -> dict | None:
    """Size and spread of the console's patient-view mirror (a PNG of the window: the left eye)."""
    if not session.mirror_png:
        return None
    import numpy as np
    from panda3d.core import PNMImage, StringStream

    img = PNMImage()
    img.read(StringStream(session.mirror_png))
    px = np.array([[img.getXel(x, y) for x in range(0, img.getXSize(), 4)] for y in range(0, img.getYSize(), 4)])
    return {"size": [img.getXSize(), img.getYSize()], "std": float(px.std()),
            "sky_blue": bool(px[: px.shape[0] // 4, :, 2].mean() > px[: px.shape[0] // 4, :, 0].mean())}


def result(reason, core, rec, plan, session) -> dict:
    return {"mirror": mirror(session), "reason": reason, "end_reason": core.end_reason, "frames": rec, "plan": plan,
            "path": str(session.path), "suds": core.suds_history,
            "commands": [c for c in core.commands_recent]}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], Path(sys.argv[2]))))
