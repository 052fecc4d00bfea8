"""The session core: ingest → features → decide → shield → arbitrate → ramp → log.

Plain Python stepped by a clock; it never imports Panda3D and never blocks on I/O. Other
threads (the BLE loop, the serial reader, the console) hand it samples and commands through
thread-safe queues; :meth:`SessionCore.tick` drains them, in that order, every tick — so a
therapist command is applied in the very tick after it arrives, before any controller decision.
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
from policy.shield import SafetyShield
from scenes.hierarchy import Hierarchy
from sensors.features import FeatureBank, FeatureConfig
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
        self.cfg = config or CoreConfig()
        self.hierarchy = hierarchy
        self.levels = np.array(hierarchy.intensities)
        self.controller = controller
        self.shield = shield
        self.writer = writer
        self.arbiter = Arbiter(AUTO)
        self.who = "policy" if getattr(controller, "learned", False) else "baseline"
        controller.reset(1, self.levels, np.random.default_rng(seed))
        shield.reset(1)
        self.bank = FeatureBank(1, features, t0=t0)
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
        self.t = t0
        self.intensity = self.cfg.start_intensity
        self.target = self.intensity
        self.target_rate = self.cfg.ramp_up_per_s
        # The ramp is anchored at the last change of target: intensity at any time is a pure
        # function of that anchor, so it does not depend on how often the core is ticked.
        self._anchor_t = t0
        self._anchor_x = self.intensity
        self.level = hierarchy.level_index(self.intensity)
        self.level_since = t0
        self.next_decision = t0 + controller.decision_interval
        self.next_scene_log = t0
        self.last_feature_t = t0
        self.frame = self.bank.update(t0, np.array([np.nan]))
        self.suds_last = math.nan
        self.suds_t = -math.inf
        self.suds_peak = math.nan
        self.suds_history: list[dict] = []
        self.suds_pending_since: float | None = None
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
        lost = self.signal_lost(now)
        if self.arbiter.mode == AUTO:
            held = float(session_step.lost_hold(self.target, self.intensity, lost))
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
        b = self.bank
        return bool(session_step.signal_lost(b.seen_valid[0], b.t_valid[0], now, b.cfg.lost_after_s))

    def _ingest(self, s: Sample) -> None:
        self.n_samples += 1
        rr = np.full((1, max(1, len(s.rr_ms))), np.nan)
        if s.rr_ms:
            rr[0, :len(s.rr_ms)] = s.rr_ms
        contact = np.array([-1 if s.contact is None else int(s.contact)], dtype=np.int8)
        t = max(s.t, self.last_feature_t)  # out-of-order timestamps never move features back
        self.frame = self.bank.update(t, np.array([s.bpm]), rr, contact)
        self.last_feature_t = t
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
            if rej:
                w.write("events", (t, "rr_rejected", {"count": rej}))

    def observation(self, now: float | None = None) -> Observation:
        now = self.t if now is None else now
        f = self.frame
        a = lambda x: np.array([x], dtype=float)  # noqa: E731
        n_levels = len(self.levels)
        return Observation(
            t=a(now), intensity=a(self.intensity), target=a(self.target),
            level=np.array([self.level]), level_frac=a(self.level / max(n_levels - 1, 1)),
            time_at_level=a(now - self.level_since), hr=f.hr, baseline=f.baseline,
            hr_delta=f.hr_delta, hr_slope=f.hr_slope, rmssd=f.rmssd, quality=f.quality,
            lost=f.lost, since_valid=a(now - self.bank.t_valid[0] if self.bank.seen_valid[0] else math.inf),
            suds=a(self.suds_last), suds_age=a(now - self.suds_t), suds_peak=a(self.suds_peak),
            look_away=a(self.behaviour.get("look_away", math.nan)), max_hr=a(self.cfg.max_hr))

    def _decide(self, now: float) -> None:
        # Features are brought up to ``now`` only here (and on samples), so that a decision
        # depends on the samples seen and the decision times alone, never on the frame rate:
        # a replay re-derives it exactly from the log.
        self.frame = self.bank.update(max(now, self.last_feature_t), np.array([np.nan]))
        self.last_feature_t = max(now, self.last_feature_t)
        obs = self.observation(now)
        prop = self.controller.propose(obs)
        res = self.shield.apply(obs, prop.delta)
        proposed = float(prop.delta[0])
        d = float(res.delta[0])
        code = int(res.code[0])
        if prop.ask_suds is not None and bool(prop.ask_suds[0]) and self.suds_pending_since is None:
            self._ask_suds(now, origin=self.controller.name)
        if code:
            self.shield_recent = [*self.shield_recent[-19:], {"t": now, "reason": res.why(),
                                                              "proposed": proposed, "allowed": d}]
            if self.writer is not None:
                self.writer.write("events", (now, "shield", {"reason": res.why(), "proposed": proposed,
                                                             "allowed": d}))
        who, reason = (("shield", res.why()) if code else (self.who, prop.why()))
        self._set_target(now, float(session_step.retarget(self.target, d)), who, self.controller.name, reason,
                         proposed=proposed, shield=res.why() if code else "", obs=obs.row(), info=prop.info,
                         always=True)

    def _set_target(self, now: float, new: float, who: str, name: str, reason: str, *,
                    proposed: float | None = None, shield: str = "", obs: dict | None = None,
                    info: dict | None = None, rate: float | None = None, always: bool = False) -> None:
        """Change the target intensity and record who did it and why.

        Controller decisions are recorded even when they hold (``always``), with the
        observation they saw and how many samples had been ingested, so that replay can
        re-derive each one; other sources of change are recorded only when they change it.
        """
        new = min(1.0, max(0.0, float(new)))
        before = self.target
        if new == before and not always:
            return
        if new != before:
            self._anchor_t, self._anchor_x = self.t, self.intensity_at(self.t)
            self.target = new
            self.target_rate = rate if rate is not None else self.cfg.ramp_up_per_s
        h = self.hierarchy
        lb, la = h.level_index(before), h.level_index(new)
        rec = {"t": now, "who": who, "name": name, "reason": reason, "mode": self.arbiter.mode,
               "intensity": self.intensity, "target_before": before, "target_after": new,
               "level_before": lb, "level_after": la, "level_name_before": h.levels[lb].name,
               "level_name_after": h.levels[la].name, "proposed": proposed, "shield": shield,
               "obs": obs, "info": info, "samples_seen": self.n_samples}
        if new != before:
            self.last_decision = rec
        self.counts["decisions"] += 1
        if self.writer is not None:
            self.writer.write_dict("decisions", rec)

    def intensity_at(self, t: float) -> float:
        """Intensity at time ``t`` on the current ramp (from the last change of target)."""
        return float(session_step.ramp(self._anchor_x, self.target, self.target_rate,
                                   self.cfg.ramp_down_per_s, max(0.0, t - self._anchor_t)))

    def advance(self, now: float) -> None:
        """Bring the ramp (intensity, level, time at level) to ``now``; consults no controller.

        Tick-rate independent: the intensity and the time a level was entered follow from the
        last change of target alone, so a replay that visits only the logged times sees the
        same values as the live session that ticked once a frame.
        """
        if now > self.t:
            self.t = now
        x = self.intensity_at(self.t)
        self.intensity = x
        lv = self.hierarchy.level_index(x)
        if lv != self.level:
            t_in = session_step.level_entry(self._anchor_x, self._anchor_t, self.level, lv, self.levels,
                                        self.target_rate, self.cfg.ramp_down_per_s, self.t)
            self.level = lv
            self.level_since = float(t_in)
            self.suds_peak = math.nan

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
                    self.intensity = self._anchor_x = 0.0
                    self._anchor_t = now
                    self.level = self.hierarchy.level_index(0.0)
                    self.level_since = now
                elif typ in ("set_level", "set_intensity"):
                    new = self.levels[cmd.level] if typ == "set_level" else cmd.intensity
                    why = (f"set level {cmd.level} ({self.hierarchy.levels[cmd.level].name})"
                           if typ == "set_level" else f"set intensity {cmd.intensity:.2f}")
                    self._set_target(now, new, cmd.origin, cmd.origin, why,
                                     rate=self.cfg.therapist_ramp_up_per_s)
                elif typ == "hold" and self.target != self.intensity:
                    self._set_target(now, self.intensity, cmd.origin, cmd.origin, "hold")
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
        self.suds_last = value
        self.suds_t = now
        self.suds_peak = value if math.isnan(self.suds_peak) else max(self.suds_peak, value)
        rec = {"t": now, "value": value, "origin": origin, "asked_t": self.suds_pending_since,
               "level": self.level, "intensity": self.intensity}
        self.suds_history.append(rec)
        self.suds_pending_since = None
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
            "bpm": _fin(f.hr[0]), "baseline": _fin(f.baseline[0]), "hr_delta": _fin(f.hr_delta[0]),
            "rmssd": _fin(f.rmssd[0]), "quality": float(f.quality[0]), "lost": self.signal_lost(self.t),
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


def _fin(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


__all__ = ["CoreConfig", "SessionCore", "CommandError", "MANUAL", "HOLD", "PAUSED", "AUTO"]
