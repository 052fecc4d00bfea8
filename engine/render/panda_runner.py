"""The Panda3D runner: a session driven once a frame from Panda3D's task, with the scene in view.

``run_rendered(cfg, out, on_start)`` builds the :class:`~engine.session.Session`, opens the
display (``window``, ``offscreen``, or ``headset`` through OpenXR; ``auto`` = a window when
``$DISPLAY`` is set, else offscreen — never the headset), and runs a private task manager:
each frame the session steps (samples → features → decision → shield → arbiter → ramp), the
scene follows ``core.intensity`` (fading to the calm place while paused), the patient's
behaviour goes back with ``core.push_behaviour``, and a small PNG of the patient's view is kept
in ``session.mirror_png`` for the therapist console a few times a second.

In view: a SUDS prompt whenever the core is waiting for one (type 0–100 and Enter, or ↑/↓ by
10), and a constant, quiet "you can stop at any time" line: P (or Space) pauses to the calm
place and tells the therapist.

Clock: ``--speed 1`` runs in real time; ``--speed N`` and ``max`` advance a fixed dt per frame
(N/30 s at 30 frames a second of real time; 0.25 s per frame as fast as possible).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

from engine.session.clock import SimClock
from engine.session.commands import CommandError
from engine.session.live import ConfigError, Session, SessionConfig, interrupted_reason

log = logging.getLogger(__name__)

MIRROR_EVERY_S = 0.25
MIRROR_WIDTH = 320
MAX_DT = 0.25  # per frame at --speed max (the headless tick)
FRAME_RATE = 30.0


def resolve_display(display: str, environ=None) -> str:
    """``auto`` → ``window`` if there is a display, else ``offscreen``; never ``headset``."""
    env = os.environ if environ is None else environ
    if display == "auto":
        return "window" if env.get("DISPLAY") else "offscreen"
    return display


def frame_dt(speed: str) -> float | None:
    """Seconds of session time per frame: None for real time, else fixed."""
    if speed == "1":
        return None
    if speed == "max":
        return MAX_DT
    return float(speed) / FRAME_RATE


# ------------------------------------------------------------------------------ the patient's view
@dataclass
class Look:
    """The patient's head relative to the body: heading and pitch in degrees, a step along +y."""

    h: float = 0.0
    p: float = 0.0
    step: float = 0.0


class PatientUI:
    """The SUDS prompt and the stop affordance, drawn on the 2D overlay; keys → commands."""

    def __init__(self, overlay, aspect: float, labels: dict | None = None):
        from panda3d.core import CardMaker, TextNode, TransparencyAttrib

        lab = {**KEYBOARD_LABELS, **(labels or {})}
        self.root = overlay.attachNewNode("patient-ui")
        self.root.setBin("fixed", 10)
        self.hint = self._text(lab["hint"], (-aspect + 0.05, -0.95), 0.045,
                               (1, 1, 1, 0.75), TextNode.ALeft)
        self.paused_text = self._text("Paused. Take your time; your therapist knows.", (0, 0.0), 0.07,
                                      (0.25, 0.25, 0.3, 1), TextNode.ACenter)
        self.paused_text.hide()
        cm = CardMaker("suds-card")
        cm.setFrame(-1.1, 1.1, -0.32, 0.38)
        self.suds = self.root.attachNewNode("suds")
        card = self.suds.attachNewNode(cm.generate())
        card.setColor(0.08, 0.1, 0.14, 0.82)
        card.setTransparency(TransparencyAttrib.M_alpha)
        self._text("How anxious do you feel right now?", (0, 0.22), 0.075, (1, 1, 1, 1), TextNode.ACenter,
                   self.suds)
        self._text("0 = completely calm,   100 = the worst you can imagine", (0, 0.12), 0.045,
                   (0.85, 0.88, 0.92, 1), TextNode.ACenter, self.suds)
        self.value_text = self._text("", (0, -0.05), 0.12, (1, 0.95, 0.6, 1), TextNode.ACenter, self.suds)
        self._text(lab["how"], (0, -0.22), 0.04,
                   (0.8, 0.82, 0.86, 1), TextNode.ACenter, self.suds)
        self.suds.hide()
        self.entry = ""
        self.prompting = False

    def _text(self, s, pos, scale, color, align, parent=None):
        from panda3d.core import TextNode

        tn = TextNode("text")
        tn.setText(s)
        tn.setAlign(align)
        tn.setTextColor(*color)
        tn.setShadow(0.04, 0.04)
        tn.setShadowColor(0, 0, 0, 0.5)
        np_ = (parent or self.root).attachNewNode(tn)
        np_.setScale(scale)
        np_.setPos(pos[0], 0, pos[1])
        if color[3] < 1:
            from panda3d.core import TransparencyAttrib

            np_.setTransparency(TransparencyAttrib.M_alpha)
        return np_

    def update(self, core, inp, origin: str = "patient", dial: int | None = None) -> list[dict]:
        """Show what the core needs, read the keys, push the patient's commands; returns them.
        ``dial``: the value on the headset's SUDS dial while it is open (engine/xr_actions.py)."""
        sent = []
        pending = core.suds_pending_since is not None
        if pending and not self.prompting:
            self.entry = ""
        self.prompting = pending
        self.suds.show() if (pending or dial is not None) else self.suds.hide()
        self.paused_text.show() if core.arbiter.paused else self.paused_text.hide()
        if pending:
            for k in sorted(inp.pressed):
                if k.isdigit() and len(self.entry) < 3:
                    self.entry = str(min(100, int(self.entry + k)))
                elif k == "backspace":
                    self.entry = self.entry[:-1]
                elif k in ("arrow_up", "arrow_down"):
                    v = int(self.entry or 50) + (10 if k == "arrow_up" else -10)
                    self.entry = str(max(0, min(100, v)))
            if "enter" in inp.pressed and self.entry:
                sent.append({"type": "suds", "value": float(self.entry)})
            self.value_text.node().setText(self.entry or "_")
        if dial is not None and not self.entry:
            self.value_text.node().setText(str(dial))
        if ({"p", "space"} & inp.pressed) and not core.arbiter.paused and not core.arbiter.stopped:
            sent.append({"type": "pause"})
        for cmd in sent:
            try:
                core.push_command(cmd, origin=origin)
            except CommandError as e:  # counted by the core; tell the log and carry on
                log.warning("patient command refused: %s", e)
        if any(c["type"] == "suds" for c in sent):
            self.entry = ""
            self.suds.hide()
        return sent


KEYBOARD_LABELS = {"hint": "You can stop at any time: press P",
                   "how": "type a number and press Enter  (arrow up / down: +10 / -10)"}
#: in the headset (bindings: engine/xr_actions.py)
HEADSET_LABELS = {"hint": "You can stop at any time: hold the left menu button",
                  "how": "up / down: +5 / -5      confirm: right trigger or menu"}


class ScriptedLook:
    """Offscreen there is no patient: the head makes a slow, fixed look-around so the scene's
    behaviour signals are exercised (they mean nothing clinically in an offscreen run)."""

    def __call__(self, t: float, base_h: float, base_p: float) -> tuple[float, float]:
        return base_h + 35.0 * math.sin(t / 9.0), base_p + 15.0 * math.sin(t / 6.0 + 0.5)


# ------------------------------------------------------------------------------ the runner
class Runner:
    def __init__(self, session: Session, mode: str, *, size=None, host=None, task_mgr=None,
                 panda_clock=None, audio=None, stereo=None):
        from direct.task.Task import TaskManager
        from panda3d.core import ClockObject

        from scenes.audio import NullAudio
        from scenes.host import Host, HostError
        from scenes.stage import Stage

        self.session = session
        self.core = session.core
        self.mode = mode
        if mode == "headset" and stereo is not None and size is None:
            size = stereo.eye_size  # the mirror window shows the left eye at its own size
        size = size or ((1280, 800) if mode == "window" else (640, 400))
        try:
            self.host = host or Host(mode if mode != "headset" else "window", size,
                                     fov=90.0, title=f"Exposure — {session.cfg.scene}")
        except HostError as e:
            raise ConfigError(f"--display {mode}: {e}") from None
        self.dt = frame_dt(session.cfg.speed)
        if panda_clock is None:
            panda_clock = ClockObject(ClockObject.M_normal if self.dt is None else ClockObject.M_non_real_time)
            if self.dt is not None:
                panda_clock.setFrameRate(1.0 / self.dt)
        self.clock = panda_clock
        self.tm = task_mgr or TaskManager()
        self.tm.setClock(self.clock)
        if audio is None:
            if mode == "window" and not _sound_device():
                # without a sound card, OpenAL/ALSA print a score of error lines on the terminal
                log.info("no sound device (/dev/snd); running silent")
                audio = NullAudio()
            elif mode == "window":
                try:
                    from scenes.audio import PandaAudio

                    audio = PandaAudio()
                except Exception as e:  # noqa: BLE001 — no sound device: carry on silently, say so
                    log.warning("no audio (%s); running silent", e)
                    audio = NullAudio()
            else:
                audio = NullAudio()
        self.audio = audio
        # In the headset the fade and the patient's prompts must be in the eyes: a head-locked layer.
        self.hud = make_hud(self.host) if mode == "headset" else None
        self.stage = Stage(session.cfg.scene, session.hierarchy, self.host.render,
                           self.hud[0] if self.hud else self.host.render2d,
                           self.tm, self.clock, audio=audio, seed=session.cfg.seed,
                           on_clear_color=self.host.set_clear_color)
        self.stage.exposure.set_intensity(self.core.intensity, instant=True)
        if self.hud:
            self.ui = PatientUI(self.hud[1], 1.0, HEADSET_LABELS)
        else:
            self.ui = PatientUI(self.host.aspect2d, self.host.aspect)
        self.look = Look()
        self.scripted = ScriptedLook() if mode == "offscreen" else None
        self.headset = None
        if mode == "headset" and stereo is not None:  # stereo is the XrHeadset: the rig's pose source
            from engine.render.stereo import StereoRig
            from engine.render.xr_actions import PatientControls

            self.headset = stereo
            stereo = StereoRig(self.host, self.headset, self.headset.eye_size, to_ram=False)
            self.headset.attach(self.host, stereo)
            self.controls = PatientControls()
            self.last_actions = None  # the patient's action states last frame (for tests and the log)
            mirror_left_eye(self.host, stereo)
        self.stereo = stereo
        self.frames = 0
        self.t0 = session.clock.now()
        self.end = self.t0 + session.cfg.duration_s
        self.done: str | None = None
        self._mirror_at = -math.inf
        self._task = self.tm.add(self._frame, "session-step", sort=-10)

    # one frame of the session, from Panda3D's task manager
    def _frame(self, task):
        s, core = self.session, self.core
        if isinstance(s.clock, SimClock) and self.frames > 0:
            s.clock.advance(self.dt)
        now = s.clock.now()
        if core.arbiter.stopped:
            self.done = core.end_reason or "stopped"
            return task.done
        if s.stop_event.is_set():
            self.done = "interrupted"
            return task.done
        if now >= self.end:
            core.tick(self.end)
            self.done = "completed"
            return task.done
        if self.headset is not None:
            self._headset_input(now)
        s.step(now)
        injected = core.behaviour.get("injected")
        if injected:
            try:
                self.stage.exposure.inject(injected)
            except ValueError as e:
                log.warning("scene event refused: %s", e)
        self.stage.set_paused(core.arbiter.paused)
        self.stage.exposure.set_intensity(core.intensity)
        inp = self.host.poll_input()
        self.ui.update(core, inp, dial=self.controls.value if self.headset is not None else None)
        self._move_head(inp, now)
        head = self.host.head
        pos = head.getPos(self.host.render)
        hpr = head.getHpr(self.host.render)
        dt = self.clock.getDt()
        if self.stage.showing == self.stage.exposure.name:
            b = self.stage.exposure.measure((pos.x, pos.y, pos.z), (hpr.x, hpr.y, hpr.z), dt)
        else:
            b = {"scene": "calm"}
        core.push_behaviour({**b, "intensity_shown": round(self.stage.exposure.intensity, 4)})
        self.frames += 1
        return task.cont

    def _headset_input(self, now: float) -> None:
        """The runtime's state changes and the patient's controllers, before the core's tick, so
        that what they ask for is applied in this very frame."""
        core, hs = self.core, self.headset
        for st in hs.poll(now):
            core.push_event("headset", state=st.state, previous=st.previous, reason=st.reason or None)
            note = None
            if st.pause and not core.arbiter.paused and not core.arbiter.stopped:
                try:
                    core.push_command({"type": "pause"}, origin="system")
                except CommandError as e:  # a flood: counted by the core; say so, loudly
                    log.error("headset pause refused: %s", e)
                note = f"headset: {st.reason}; paused to the calm place"
            elif st.state == "FOCUSED" and hs.lifecycle.pauses:
                note = "headset: the patient is back in the headset; resume when ready"
            if note:  # the console lists it beside the pause, so the therapist sees why
                try:
                    core.push_command({"type": "annotate", "text": note}, origin="system")
                except CommandError as e:
                    log.warning("headset note refused: %s", e)
            log.info("headset: %s → %s%s", st.previous, st.state, f" ({st.reason})" if st.reason else "")
        try:
            frame = hs.read_actions(now)
        except Exception as e:  # noqa: BLE001 — a failed read must not end the session; counted
            hs.errors += 1
            log.warning("headset actions: %s", e)
            return
        self.last_actions = frame
        for cmd in self.controls.update(frame, core.suds_pending_since is not None):
            try:
                core.push_command(cmd, origin="patient")
            except CommandError as e:
                log.warning("patient command refused: %s", e)

    def _move_head(self, inp, now: float) -> None:
        vp = self.stage.active.viewpoint()
        lk = self.look
        if self.headset is not None:  # comfort: nothing moves the camera but the patient's head
            lk.step = 0.0
            self.headset.eye_height = self.stage.active.eye_height
        elif self.scripted is not None:
            lk.h, lk.p = self.scripted(now - self.t0, vp.look[0], vp.look[1])
        else:
            if self.frames == 0:
                lk.h, lk.p = vp.look
            lk.h -= inp.mouse_dx * 0.15
            lk.p -= inp.mouse_dy * 0.15
            d = self.clock.getDt() * 60.0
            if not self.ui.prompting:
                left = "arrow_left" in inp.held or "a" in inp.held
                right = "arrow_right" in inp.held or "d" in inp.held
                lk.h += d * (left - right)
                lk.p += d * (("arrow_up" in inp.held) - ("arrow_down" in inp.held))
                lk.step += self.clock.getDt() * 0.8 * (("w" in inp.held) - ("s" in inp.held))
            lk.p = max(-89.0, min(89.0, lk.p))
        lk.step = max(-2.5, min(0.0, lk.step))  # a step back from where the scene puts you, no further
        self.stage.place(self.host.body, (0.0, lk.step))
        if self.stereo is None:  # with a stereo rig, its pose source moves the head
            self.host.head.setPosHpr(0, 0, self.stage.active.eye_height, lk.h, lk.p, 0)

    def render(self) -> None:
        if self.stereo is not None:
            self.stereo.render(self.clock.getFrameTime())
        self.host.render_frame()
        t = time.monotonic()
        if t - self._mirror_at >= MIRROR_EVERY_S:
            self._mirror_at = t
            try:
                self.session.mirror_png = self.host.png(MIRROR_WIDTH)
            except Exception as e:  # noqa: BLE001 — a missed mirror frame must not end a session
                log.warning("mirror frame: %s", e)

    def run(self) -> str:
        """Frames until the duration, a stop, a closed window or Ctrl-C; returns how it ended."""
        pace = self.dt is not None and self.session.cfg.speed != "max"
        try:
            while self.done is None:
                t_frame = time.monotonic()
                self.clock.tick()
                self.tm.step()
                if self.done is not None:
                    break
                self.render()
                if self.host.closed:
                    self.done = "window closed"
                    break
                if self.headset is not None and self.headset.exit_requested:
                    self.done = f"headset session ended ({self.headset.exit_reason or 'exit'})"
                    break
                if self.headset is not None and not self.headset.running:
                    time.sleep(0.01)  # no frame loop until the runtime is READY; do not spin
                if pace:
                    wait = 1.0 / FRAME_RATE - (time.monotonic() - t_frame)
                    if wait > 0:
                        time.sleep(wait)
        except KeyboardInterrupt as e:
            self.done = interrupted_reason(e)
        return self.done or "completed"

    def close(self) -> None:
        if self.headset is not None:
            w = self.core.writer
            if w is not None and not w.closed:
                w.write("events", (self.core.t, "headset_frames", {
                    **self.headset.stats(), "system": self.headset.system_name, "errors": self.headset.errors,
                    "profile": self.headset.actions.current_profile(),
                    "safety_exits": self.controls.counts["safety_exit"], "suds_given": self.controls.counts["suds"]}))
            try:  # swapchains and session go while Panda3D's GL context (the runtime's, too) still exists
                self.headset.close()
            except Exception as e:  # noqa: BLE001 — closing the headset must not lose the log
                log.warning("closing the headset: %s", e)
        self.tm.remove(self._task)
        self.stage.destroy()
        self.audio.close()
        if self.stereo is not None:
            self.stereo.close()
        self.host.close()


def make_hud(host):
    """A head-locked layer 1 m ahead of the eyes, drawn over the scene: the fade card (scaled to
    cover any headset's field of view) and, smaller, the patient's prompts."""
    hud = host.head.attachNewNode("hud")
    hud.setPos(0, 1.0, 0)
    hud.setDepthTest(False)
    hud.setDepthWrite(False)
    hud.setLightOff(1)
    hud.setBin("fixed", 50)
    fade = hud.attachNewNode("hud-fade")
    fade.setScale(6.0)
    ui = hud.attachNewNode("hud-ui")
    ui.setScale(0.3)
    return fade, ui


def mirror_left_eye(host, rig) -> None:
    """The window (and the console's patient-view mirror, a screenshot of it) shows the left eye."""
    from panda3d.core import CardMaker

    host.region.setActive(False)
    cm = CardMaker("left-eye")
    cm.setFrameFullscreenQuad()
    card = host.render2d.attachNewNode(cm.generate())
    card.setTexture(rig.eyes[0][1])
    card.setBin("background", 0)


def _sound_device() -> bool:
    """A sound card to open, or a sound server to reach (PulseAudio/PipeWire)."""
    import os

    return (os.path.isdir("/dev/snd") and bool(os.listdir("/dev/snd"))) or bool(os.environ.get("PULSE_SERVER")) \
        or os.path.exists(f"/run/user/{os.getuid()}/pulse/native")


def run_rendered(cfg: SessionConfig, out, on_start) -> tuple[Session, str]:
    """Run a session with its scene on the display the config names. Returns (session, reason)."""
    mode = resolve_display(cfg.display)
    if mode not in ("window", "offscreen", "headset"):
        raise ConfigError(f"--display {cfg.display}: not a rendered display")
    xr = None
    if mode == "headset":
        from engine.render.xr import open_headset

        xr = open_headset()  # ConfigError with one clear message when there is no runtime
    dt = frame_dt(cfg.speed)
    start_console = None
    if cfg.console is not None:
        from engine.console import start_console
    session = Session(cfg, clock=SimClock() if dt is not None else None, start_console=start_console)
    print(f"session {session.id} → {session.path}", file=out, flush=True)
    reason = "interrupted"
    runner = None
    try:
        session.start_io()
        on_start(session, out)
        try:
            runner = Runner(session, mode, stereo=xr)
        except Exception as e:
            why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            reason = f"could not start: the {mode} display did not open ({why})"
            raise
        reason = runner.run()
    except KeyboardInterrupt as e:
        reason = interrupted_reason(e)
    finally:
        if runner is not None:
            try:
                runner.close()
            except Exception as e:  # noqa: BLE001 — closing the display must not lose the log
                log.warning("closing the display: %s", e)
        if xr is not None:
            xr.close()
        session.close(reason)
    return session, session.core.end_reason or reason
