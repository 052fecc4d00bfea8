"""The session core: ingest → features → decide → shield → arbitrate → ramp → log.

Plain Python stepped by a clock; it never imports Panda3D and never blocks on I/O. Other
threads (the BLE loop, the serial reader, the console) hand it samples and commands through
thread-safe queues; :meth:`SessionCore.tick` drains them, in that order, every tick — so a
therapist command is applied in the very tick after it arrives, before any controller decision.

The numbers (ramp, level, features, shielded decisions, SUDS) are :class:`policy.step.SessionStep`
with N = 1, the code the evaluator and the env run over thousands of virtual patients; this
core is the shell around it: queues, commands, the arbiter and the log.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.session.arbiter import AUTO, HOLD, MANUAL, PAUSED, STOPPED, Arbiter
from engine.session.commands import Command, CommandError, CommandFlood, SessionStopped, parse_command
from engine.store.files import SessionWriter
from policy import step as session_step
from policy.controllers import Controller
from policy.observation import Observation
from policy.shield import ASK_REFUSED, REASONS, SafetyShield
from policy.step import SessionStep
from scenes.hierarchy import Hierarchy
from sensors.features import FeatureConfig, finite_or_none
from sensors.sample import Sample

log = logging.getLogger(__name__)

MAX_QUEUED_COMMANDS = 256


@dataclass(frozen=True)
class CoreConfig:
    ramp_up_per_s: float = session_step.RAMP_UP_PER_S  # intensity units per second, controller-driven rises
    therapist_ramp_up_per_s: float = 0.05  # rises a therapist asked for
    ramp_down_per_s: float = session_step.RAMP_DOWN_PER_S
    scene_log_s: float = 1.0
    max_hr: float = session_step.MAX_HR_ESTIMATE  # 208 − 0.7·age; 180 ≈ age 40 when the age is not given
    start_intensity: float = 0.0


class SessionCore:
    def __init__(self, hierarchy: Hierarchy, controller: Controller, shield: SafetyShield,
                 writer: SessionWriter | None = None, config: CoreConfig | None = None,
                 features: FeatureConfig | None = None, seed: int = 0, t0: float = 0.0):
        self.cfg = c = config or CoreConfig()
        self.hierarchy = hierarchy
        #: the session's numbers, N = 1 (policy/step.py: the same code as the evaluator's)
        self.step = SessionStep(hierarchy, 1, ramp_up_per_s=c.ramp_up_per_s, ramp_down_per_s=c.ramp_down_per_s,
                                max_hr=c.max_hr, start=c.start_intensity, features=features, t0=t0)
        self.levels = self.step.levels
        self.controller = controller
        self.shield = shield
        self.writer = writer
        self.arbiter = Arbiter(AUTO)
        self.who = "policy" if getattr(controller, "learned", False) else "baseline"
        controller.reset(1, self.levels, np.random.default_rng(seed))
        shield.reset(1)
        self._samples: queue.SimpleQueue[Sample] = queue.SimpleQueue()
        # -- command queue: two lanes under one lock, applied in arrival order at the next tick.
        # Safety commands (stop, pause, resume, hold, manual) have their own unbounded lane and are
        # never refused for load; the rest share MAX_QUEUED_COMMANDS slots (429 beyond).
        self._cmd_lock = threading.Lock()
        self._cmd_seq = 0
        self._lane_safety: deque[tuple[int, Command]] = deque()
        self._lane_other: deque[tuple[int, Command]] = deque()
        self._stop_queued = False  # a stop is queued or applied: every later command is refused (409)
        # -- end command queue
        self._events: queue.SimpleQueue[tuple[str, dict]] = queue.SimpleQueue()
        self.behaviour: dict = {}
        self.next_decision = t0 + controller.decision_interval
        self.next_scene_log = t0
        self.suds_history: list[dict] = []
        self.last_decision: dict | None = None
        self.shield_recent: list[dict] = []  # the last few interventions, for the console
        self.commands_recent: list[dict] = []  # the last few commands applied, for the console
        self.connection = "connecting"
        self.rejected_commands = 0
        self.end_reason: str | None = None
        self.n_samples = 0
        self.counts = {"decisions": 0, "commands": 0, "samples": 0}
        self._snapshot: dict = {}
        self._update_snapshot()
        if writer is not None:
            # What replay needs to rebuild this core exactly (engine/replay.py).
            writer.set_meta(t0=t0, core_config=dict(self.cfg.__dict__),
                            feature_config=dict(self.bank.cfg.__dict__))

    # ------------------------------------------------------------------ the step's state, N = 1
    t = property(lambda self: self.step.t)
    target = property(lambda self: float(self.step.target[0]))
    level = property(lambda self: int(self.step.level[0]))
    level_since = property(lambda self: float(self.step.level_since[0]))
    suds_last = property(lambda self: float(self.step.suds_last[0]))
    suds_t = property(lambda self: float(self.step.suds_t[0]))
    suds_peak = property(lambda self: float(self.step.suds_peak[0]))
    bank = property(lambda self: self.step.bank)
    frame = property(lambda self: self.step.frame)

    @property
    def intensity(self) -> float:
        return float(self.step.intensity[0])

    @intensity.setter
    def intensity(self, x: float) -> None:  # a stop drops to 0 at once (with _anchor_x)
        self.step.intensity[0] = x

    @property
    def _anchor_x(self) -> float:
        return float(self.step.anchor_x[0])

    @_anchor_x.setter
    def _anchor_x(self, x: float) -> None:
        self.step.anchor_x[0] = x

    @property
    def course_ctx(self) -> dict:
        """Where this session stands in the patient's course (``policy.step.first_course_context``
        for a first session); the live session and replay set it from the session's metadata."""
        return self.step.course_ctx

    @course_ctx.setter
    def course_ctx(self, ctx: dict) -> None:
        self.step.course_ctx = ctx

    @property
    def suds_pending_since(self) -> float | None:
        """When the open SUDS question was asked; None if none is open."""
        x = float(self.step.pending[0])
        return None if math.isnan(x) else x

    @suds_pending_since.setter
    def suds_pending_since(self, t: float | None) -> None:
        self.step.pending[0] = math.nan if t is None else t

    def suds_due(self, now: float, delay_s: float) -> bool:
        """A (simulated) patient answers now: the open question was asked ``delay_s`` ago."""
        return bool(self.step.suds_due(now, delay_s)[0])

    # ------------------------------------------------------------------ inputs (thread-safe)
    def push_sample(self, s: Sample) -> None:
        self._samples.put(s)

    def push_command(self, cmd: Command | dict, origin: str = "therapist") -> Command:
        """Validate and queue a command (thread-safe).

        Raises CommandError for a malformed one, CommandFlood when the non-safety lane is full,
        SessionStopped once a stop has been queued. A command that returns is applied and logged
        at the next tick, or logged there as refused with its reason; it is never dropped.
        """
        try:
            if not isinstance(cmd, Command):
                cmd = parse_command(cmd, origin, n_levels=len(self.levels))
        except CommandError:
            self.rejected_commands += 1
            raise
        with self._cmd_lock:
            if self._stop_queued:
                raise SessionStopped("the session has stopped")
            if cmd.safety:
                lane = self._lane_safety
                self._stop_queued = cmd.type == "stop"
            elif len(self._lane_other) >= MAX_QUEUED_COMMANDS:
                self.rejected_commands += 1
                raise CommandFlood("too many commands queued; slow down")
            else:
                lane = self._lane_other
            self._cmd_seq += 1
            lane.append((self._cmd_seq, cmd))
        return cmd

    def _take_commands(self) -> list[Command]:
        """Everything queued so far, both lanes, in arrival order."""
        with self._cmd_lock:
            a, b = list(self._lane_safety), list(self._lane_other)
            self._lane_safety.clear()
            self._lane_other.clear()
        return [c for _, c in sorted(a + b, key=lambda x: x[0])] if a and b else [c for _, c in a or b]

    @property
    def stop_queued(self) -> bool:
        return self._stop_queued

    def push_event(self, kind: str, **detail) -> None:
        self._events.put((kind, detail))

    def push_behaviour(self, behaviour: dict) -> None:
        """Behaviour the scene measures (share of time looking down/away, distances)."""
        self.behaviour = dict(behaviour)

    # ------------------------------------------------------------------ the tick
    def tick(self, now: float) -> None:
        if self.arbiter.stopped:
            return
        self.advance(now)
        for cmd in self._take_commands():  # after a stop, the rest are logged as refused
            self._apply_command(cmd, now)
        if self.arbiter.stopped:
            self._update_snapshot()
            return
        while True:
            try:
                kind, detail = self._events.get_nowait()
            except queue.Empty:
                break
            self._event(now, kind, detail)
        while True:
            try:
                s = self._samples.get_nowait()
            except queue.Empty:
                break
            self._ingest(s)
        if self.arbiter.mode == AUTO:
            held = float(self.step.held(now)[0])
            if held != self.target:
                self._set_target(now, held, "shield", "shield", "signal lost: holding")
            if now >= self.next_decision:
                self.next_decision = now + self.controller.decision_interval
                self._decide(now)
        if now >= self.next_scene_log:
            self.next_scene_log = now + self.cfg.scene_log_s
            self._log_scene(now)
        self._update_snapshot()

    # ------------------------------------------------------------------ pieces
    def signal_lost(self, now: float) -> bool:
        """Loss of signal at ``now``: no valid reading for the feature config's lost_after_s."""
        return bool(self.step.lost(now)[0])

    def _ingest(self, s: Sample) -> None:
        self.n_samples += 1
        rr = np.full((1, max(1, len(s.rr_ms))), np.nan)
        if s.rr_ms:
            rr[0, :len(s.rr_ms)] = s.rr_ms
        contact = np.array([-1 if s.contact is None else int(s.contact)], dtype=np.int8)
        t = self.step.ingest(s.t, np.array([s.bpm]), rr, contact)  # out-of-order times never move features back
        if self.connection != "streaming":
            self.connection = "streaming"
        w = self.writer
        if w is not None:
            w.write("samples", (s.t, s.wall, s.bpm, list(s.rr_ms), s.contact, s.source))
            f = self.frame
            w.write("features", (t, f.hr[0], f.baseline[0], f.hr_delta[0], f.hr_slope[0],
                                 f.rmssd[0], f.quality[0], bool(f.lost[0]),
                                 self.behaviour.get("look_away")))
            rej = int(f.rejected_rr[0])
            if rej:  # count and reasons (ectopic, missed, extra, long, short): sensors.features.REASONS
                w.write("events", (t, "rr_rejected", {"count": rej, "reasons": f.rejected_reasons()}))

    def observation(self, now: float | None = None) -> Observation:
        look = self.behaviour.get("look_away")
        self.step.look[0] = math.nan if look is None else look
        return self.step.observation(self.t if now is None else now)

    def _decide(self, now: float) -> None:
        st = self.step
        st.refresh(now)
        obs = self.observation(now)
        prop = self.controller.propose(obs)
        before = self.target
        res, asked = st.decide(now, obs, prop, self.shield)
        proposed = float(prop.delta[0])
        d = float(res.delta[0])
        code = int(res.code[0])
        if asked[0]:
            self._suds_requested(now, origin=self.controller.name)
        if code:
            self._shield_event(now, res.why(), proposed, d)
        ask = None
        refused = res.ask_refused is not None and bool(res.ask_refused[0])
        if asked[0] or refused:
            # each question the controller wanted: why (the controller's reason), its cost estimate
            # (a learned policy's expected overwhelm cost, None for rules) and whether the shield's
            # question budget let it through
            why_ask = prop.info.get("ask_reason") if isinstance(prop.info, dict) else None
            ask = {"asked": bool(asked[0]), "reason": why_ask or prop.why(),
                   "cost_estimate": prop.info.get("cost_estimate") if isinstance(prop.info, dict) else None,
                   "refused": REASONS[ASK_REFUSED] if refused else ""}
            if refused:
                self._shield_event(now, REASONS[ASK_REFUSED], proposed, d)
        who, reason = (("shield", res.why()) if code else (self.who, prop.why()))
        self._record_target(now, before, self.target, who, self.controller.name, reason, proposed=proposed,
                            shield=res.why() if code else "", obs=obs.row(), info=prop.info, ask=ask)

    def _shield_event(self, now: float, reason: str, proposed: float, allowed: float) -> None:
        """One shield intervention: kept for the console and logged as an event."""
        ev = {"reason": reason, "proposed": proposed, "allowed": allowed}
        self.shield_recent = [*self.shield_recent[-19:], {"t": now, **ev}]
        if self.writer is not None:
            self.writer.write("events", (now, "shield", ev))

    def _set_target(self, now: float, new: float, who: str, name: str, reason: str, *,
                    rate: float | None = None) -> None:
        """Change the target intensity (rising at ``rate``, default the controller's) and record
        who did it and why; nothing happens if it does not change."""
        new = min(1.0, max(0.0, float(new)))
        before = self.target
        if new == before:
            return
        self.step.set_target(np.array([new]), rate=rate)
        self._record_target(now, before, new, who, name, reason)

    def _record_target(self, now: float, before: float, new: float, who: str, name: str, reason: str, *,
                       proposed: float | None = None, shield: str = "", obs: dict | None = None,
                       info: dict | None = None, ask: dict | None = None) -> None:
        """Record a change of target, or a controller decision even when it holds, with the
        observation it saw and how many samples had been ingested, so that replay can re-derive it."""
        h = self.hierarchy
        lb, la = h.level_index(before), h.level_index(new)
        rec = {"t": now, "who": who, "name": name, "reason": reason, "mode": self.arbiter.mode,
               "intensity": self.intensity, "target_before": before, "target_after": new,
               "level_before": lb, "level_after": la, "level_name_before": h.levels[lb].name,
               "level_name_after": h.levels[la].name, "proposed": proposed, "shield": shield,
               "obs": obs, "info": info, "samples_seen": self.n_samples}
        if ask is not None:  # in the logged info (the decisions table's columns stay as they are)
            rec["info"] = {**(info or {}), "suds_ask": ask}
        if new != before:
            self.last_decision = rec
        self.counts["decisions"] += 1
        if self.writer is not None:
            self.writer.write_dict("decisions", rec)

    def advance(self, now: float) -> None:
        """Bring the ramp (intensity, level, time at level) to ``now``; consults no controller.
        Tick-rate independent (see :meth:`policy.step.SessionStep.advance`)."""
        self.step.advance(now)

    def _log_scene(self, now: float) -> None:
        if self.writer is not None:
            self.writer.write("scene", (now, self.intensity, self.level, self.arbiter.mode,
                                        self.arbiter.paused, self.behaviour or None))

    def _event(self, now: float, kind: str, detail: dict) -> None:
        if kind in ("connected", "disconnected", "reconnecting", "connect_failed"):
            self.connection = {"connected": "connected", "disconnected": "lost",
                               "reconnecting": "reconnecting", "connect_failed": "reconnecting"}[kind]
        if self.writer is not None:
            self.writer.write("events", (now, kind, detail))

    def _ask_suds(self, now: float, origin: str) -> None:
        self.suds_pending_since = now
        self._suds_requested(now, origin)

    def _suds_requested(self, now: float, origin: str) -> None:
        if self.writer is not None:
            self.writer.write("events", (now, "suds_request", {"origin": origin}))

    def _apply_command(self, cmd: Command, now: float) -> None:
        self.counts["commands"] += 1
        typ = cmd.type
        err = None
        try:
            if self.arbiter.stopped:
                raise ValueError("the session has stopped")
            if typ in ("stop", "pause", "resume", "hold", "auto", "manual", "set_level", "set_intensity"):
                before, after = self.arbiter.transition(typ)
                if typ == "stop":
                    self.end_reason = f"stopped by {cmd.origin}"
                    self._set_target(now, 0.0, cmd.origin, cmd.origin, "stop")
                    # the calm start, at once: intensity and level (no ramp down after a stop)
                    self.step.jump(0.0, now)
                elif typ in ("set_level", "set_intensity"):
                    new = self.levels[cmd.level] if typ == "set_level" else cmd.intensity
                    why = (f"set level {cmd.level} ({self.hierarchy.levels[cmd.level].name})"
                           if typ == "set_level" else f"set intensity {cmd.intensity:.2f}")
                    self._set_target(now, new, cmd.origin, cmd.origin, why,
                                     rate=self.cfg.therapist_ramp_up_per_s)
                elif typ == "hold" and self.target != self.intensity:
                    self._set_target(now, self.intensity, cmd.origin, cmd.origin, "hold")
                elif typ == "pause" and before != after and self.target != self.intensity:
                    # Paused, the intensity holds where the patient last saw it (no ramp behind the calm scene).
                    self._set_target(now, self.intensity, cmd.origin, cmd.origin, "pause: holding")
                elif typ == "resume":
                    self.next_decision = now + self.controller.decision_interval
                if before != after and self.writer is not None:
                    self.writer.write("events", (now, "mode", {"from": before, "to": after,
                                                               "by": cmd.origin}))
            elif typ == "suds":
                self._record_suds(now, float(cmd.value), cmd.origin)
            elif typ == "ask_suds":
                self._ask_suds(now, cmd.origin)
            elif typ == "event":
                if self.writer is not None:
                    self.writer.write("events", (now, "scene_event", {"kind": cmd.kind, "by": cmd.origin}))
                self.behaviour = {**self.behaviour, "injected": cmd.kind}
            elif typ == "annotate":
                if self.writer is not None:
                    self.writer.write("events", (now, "annotation", {"text": cmd.text, "by": cmd.origin}))
        except ValueError as e:
            err = str(e)
            self.rejected_commands += 1
            log.warning("command %s refused: %s", typ, err)
        self.commands_recent = [*self.commands_recent[-19:], {"t": now, "type": typ, "origin": cmd.origin,
                                                              "payload": cmd.payload(), "accepted": err is None,
                                                              "error": err}]
        if self.writer is not None:
            self.writer.write("commands", (now, typ, cmd.origin, cmd.payload(), err is None, err))

    def _refuse(self, cmd: Command, why: str) -> None:
        self.counts["commands"] += 1
        self.rejected_commands += 1
        if self.writer is not None and not self.writer.closed:
            self.writer.write("commands", (self.t, cmd.type, cmd.origin, cmd.payload(), False, why))

    def _record_suds(self, now: float, value: float, origin: str) -> None:
        rec = {"t": now, "value": value, "origin": origin, "asked_t": self.suds_pending_since,
               "level": self.level, "intensity": self.intensity}
        self.step.record_suds(now, value)
        self.suds_history.append(rec)
        if self.writer is not None:
            self.writer.write_dict("suds", rec)

    # ------------------------------------------------------------------ outputs
    def end(self, reason: str) -> None:
        """Record how the session ended and close the log. Safe to call twice."""
        if self.end_reason is None or not self.arbiter.stopped:
            self.end_reason = self.end_reason or reason
        with self._cmd_lock:
            self._stop_queued = True  # nothing is accepted after the end
        for cmd in self._take_commands():  # queued but no tick came to apply it: logged as refused
            self._refuse(cmd, "the session ended before it could be applied")
        if self.arbiter.mode != STOPPED:
            self.arbiter.mode = STOPPED
        if self.writer is not None and not self.writer.closed:
            self._log_scene(self.t)
            self.writer.write("events", (self.t, "end", {"reason": self.end_reason}))
            self.writer.close(end_reason=self.end_reason, duration_s=self.t,
                              ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              shield_counts=self.shield.counts,
                              rejected_commands=self.rejected_commands)
        self._update_snapshot()

    def _update_snapshot(self) -> None:
        f = self.frame
        self._snapshot = {
            "t": self.t,
            "bpm": finite_or_none(f.hr[0]), "baseline": finite_or_none(f.baseline[0]),
            "hr_delta": finite_or_none(f.hr_delta[0]),
            "rmssd": finite_or_none(f.rmssd[0]), "quality": float(f.quality[0]), "lost": self.signal_lost(self.t),
            "intensity": self.intensity, "target": self.target, "level": self.level,
            "level_name": self.hierarchy.levels[self.level].name, "n_levels": len(self.levels),
            "mode": self.arbiter.mode, "paused": self.arbiter.paused,
            "connection": self.connection, "samples": self.n_samples,
            "last_decision": None if self.last_decision is None else {
                k: self.last_decision[k] for k in ("t", "who", "name", "reason", "target_before",
                                                   "target_after", "level_after")},
            "suds": self.suds_history[-20:], "suds_pending": self.suds_pending_since is not None,
            "shield": {k: v for k, v in self.shield.counts.items() if v},
            "shield_recent": self.shield_recent[-10:], "commands_recent": self.commands_recent[-10:],
            "rejected_commands": self.rejected_commands, "behaviour": self.behaviour,
            "end_reason": self.end_reason,
        }

    def snapshot(self) -> dict:
        """The latest state, safe to read from any thread (replaced whole each tick)."""
        return self._snapshot


__all__ = ["CoreConfig", "SessionCore", "CommandError", "MANUAL", "HOLD", "PAUSED", "AUTO"]
