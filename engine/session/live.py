"""A session: configuration validated once, the pieces built from it, and the headless loop.

The Panda3D runner builds the same :class:`Session` and calls :meth:`Session.step` once a frame;
``--display none`` calls it from :meth:`Session.run_headless`. The same code runs in both.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from dataclasses import replace

from engine import __version__
from engine.errors import Terminated
from engine.session.clock import make_clock
from engine.session.commands import Command
from engine.session.config import (  # noqa: F401  (re-exported: the session's settings)
    DISPLAYS,
    ConfigError,
    SessionConfig,
    default_controller,
    default_sessions_dir,
    parse_console,
    parse_duration,
    parse_speed,
)
from engine.session.core import CoreConfig, SessionCore
from engine.session.watch import SignalWatch
from engine.sources import SOURCE_HANDLERS
from engine.store.course import course_context_from_meta, next_session, previous_source_state
from engine.store.files import SessionWriter, StoreError
from policy import step as session_step
from policy.controllers import ControllerError, make_controller
from policy.shield import SafetyShield
from scenes.hierarchy import HierarchyError, load_hierarchy
from sensors.errors import SensorError
from sensors.source import Exposure, HRSource, open_source

log = logging.getLogger(__name__)

SIM_SUDS_DELAY_S = session_step.SUDS_DELAY_S

class Session:
    """The pieces of one session, built from a validated config."""

    def __init__(self, cfg: SessionConfig, clock=None, source: HRSource | None = None,
                 core_config: CoreConfig | None = None, start_console=None):
        """``start_console(session, host, port)`` starts the therapist console when the config
        asks for one; the CLI passes :func:`engine.console.start_console` (the session core
        never imports the console itself)."""
        cfg = cfg.validated()
        self._start_console = start_console
        self.cfg = cfg
        try:
            self.hierarchy = load_hierarchy(cfg.hierarchy or cfg.scene)
        except HierarchyError as e:
            raise ConfigError(f"--hierarchy: {e}") from None
        if self.hierarchy.scene != cfg.scene:
            raise ConfigError(f"--hierarchy is for scene {self.hierarchy.scene!r}, not {cfg.scene!r}")
        self.clock = clock or make_clock(cfg.speed)
        try:  # where this session stands in the patient's course, and the level it starts at
            self.course = next_session(cfg.sessions_dir, cfg.patient, cfg.scene,
                                       [lv.name for lv in self.hierarchy.levels], cfg.start_level, cfg.new_course)
        except StoreError as e:
            raise ConfigError(str(e)) from None
        for w in self.course.warnings:  # printed as warnings by the CLI at start (engine.cli.run)
            log.info("%s", w)
        try:
            self.source = source or open_source(cfg.sensor, SOURCE_HANDLERS, seed=cfg.seed, scene=cfg.scene,
                                                clock=self.clock.now, sessions_dir=cfg.sessions_dir,
                                                course_state=previous_source_state(self.course))
        except SensorError as e:
            raise ConfigError(f"--sensor: {e}") from None
        if cfg.speed != "1" and not self.source.clocked:
            self.source.close()
            raise ConfigError(f"--speed {cfg.speed} needs a simulated or replayed sensor; "
                              f"{cfg.sensor} runs in real time only")
        try:
            self.controller = make_controller(cfg.controller, scene=cfg.scene) \
                if _takes_scene(cfg.controller) else make_controller(cfg.controller)
        except ControllerError as e:
            raise ConfigError(f"--controller: {e}") from None
        self.shield = SafetyShield()
        started = time.time()
        meta = {
            "scene": cfg.scene, "hierarchy": {"name": self.hierarchy.name,
                                              "file": self.hierarchy.source,
                                              "levels": [[lv.name, lv.intensity] for lv in self.hierarchy.levels]},
            "controller": self.controller.name, "controller_info": self.controller.describe(),
            "controller_reason": cfg.controller_reason or "chosen with --controller",
            "shield": self.shield.describe(), "sensor": cfg.sensor, "seed": cfg.seed,
            "software_version": __version__, "python": platform.python_version(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "started_wall": started, "speed": cfg.speed, "display": cfg.display,
            "planned_duration_s": cfg.duration_s,
        }
        try:
            self.writer = SessionWriter(cfg.sessions_dir, cfg.patient, meta)
        except StoreError as e:
            self.source.close()
            raise ConfigError(str(e)) from None
        n_levels = len(self.hierarchy.levels)
        ctx = self.course.context(n_levels)
        if cfg.patient != "anon":
            self.writer.set_meta(**self.course.meta(self.writer.id), course_context=ctx)
        else:
            self.writer.set_meta(start_level=self.course.start_level, start_reason=self.course.start_reason)
        k = self.course.start_level
        if k:
            core_config = replace(core_config or CoreConfig(),
                                  start_intensity=float(self.hierarchy.levels[k].intensity))
        self.core = SessionCore(self.hierarchy, self.controller, self.shield, self.writer,
                                core_config, seed=cfg.seed, t0=self.clock.now())
        if cfg.patient != "anon":  # the controller sees the course (an anonymous session: none before it)
            self.core.course_ctx = course_context_from_meta({"course_context": ctx}, n_levels)
        if cfg.patient != "anon" or cfg.start_level is not None:  # an anonymous session at level 0 decides nothing
            log_course_start(self.core, self.course)
        #: the highest level the session reached (ticks of :meth:`step`), for the next session of the course
        self.highest_level = self.core.level
        self.peak_hr_rise: float | None = None  # highest HR above baseline so far, signal not lost (bpm)
        self.started_at = meta["started_at"]
        self.id = self.writer.id
        self.path = self.writer.path
        self.watch = SignalWatch(cfg.sensor, self.clock.now(), quiet=self.source.clocked)
        self.stop_event = threading.Event()
        self.io = None
        self.console = None
        self.extras: list = []  # things with .stop() to shut down at the end (LSL outlets, …)
        #: the latest small PNG of the patient's view (set by the Panda3D runner a few times a
        #: second when a scene is rendered; None otherwise) — the console mirrors it
        self.mirror_png: bytes | None = None
        self._closed = False

    # -------------------------------------------------------------------------------------
    def start_io(self) -> None:
        """Start the background I/O loop for live sources and the console, when needed."""
        need_loop = not self.source.clocked or self.cfg.console is not None
        if need_loop and self.io is None:
            from engine.session.aio import BackgroundLoop, pump

            self.io = BackgroundLoop()
            if not self.source.clocked:
                self.io.submit(pump(self.source, self.core))
        if self.cfg.console is not None and self.console is None:
            if self._start_console is None:
                raise ConfigError("--console: this session was built without a console; use --console off")
            host, port = self.cfg.console
            self.console = self._start_console(self, host, port)

    def step(self, now: float) -> None:
        """One tick: feed the source's due samples and the patient's view, then the core."""
        core, src = self.core, self.source
        if src.clocked:
            for s in src.poll(now):
                core.push_sample(s)
            for ev in src.drain_events():
                core.push_event(ev.kind, **ev.detail)
            behaviour = src.behaviour(now)
            if behaviour is not None:  # a simulated patient's behaviour, as a scene would report it
                core.push_behaviour({**core.behaviour, **behaviour})
            if core.suds_due(now, SIM_SUDS_DELAY_S):
                v = src.suds(now)
                if v is not None:
                    core.push_command(Command("suds", origin="patient", value=float(v)))
        core.tick(now)
        self.highest_level = max(self.highest_level, core.level)
        rise = float(core.frame.hr_delta[0])
        if rise == rise and not core.frame.lost[0] and (self.peak_hr_rise is None or rise > self.peak_hr_rise):
            self.peak_hr_rise = rise
        self.watch.update(now, core.n_samples, core.connection)
        src.observe(Exposure(now, core.intensity, self.cfg.scene, core.arbiter.paused,
                             core.suds_pending_since is not None, self.hierarchy.params_at(core.intensity)))

    @property
    def over(self) -> bool:
        return self.core.arbiter.stopped or self.stop_event.is_set()

    def run_headless(self) -> str:
        """Run without a scene until the duration, a stop command or Ctrl-C. Returns how it ended."""
        cfg, clock = self.cfg, self.clock
        reason = "completed"
        self.start_io()
        try:
            t = clock.now()
            end = t + cfg.duration_s
            while True:
                if self.core.arbiter.stopped:
                    reason = self.core.end_reason or "stopped"
                    break
                if self.stop_event.is_set():
                    reason = "interrupted"
                    break
                if t >= end:
                    self.core.tick(end)
                    break
                self.step(t)
                nxt = min(t + cfg.tick_s, end)
                clock.sleep_until(nxt, self.stop_event)
                t = max(nxt, clock.now())
        except KeyboardInterrupt as e:
            reason = interrupted_reason(e)
        finally:
            self.close(reason)
        return self.core.end_reason or reason

    def close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        state = getattr(self.source, "course_state", None)
        self.watch.update(self.core.t, self.core.n_samples, self.core.connection)
        if self.writer is not None and not self.writer.closed:
            self.writer.set_meta(highest_level=self.highest_level, no_signal_s=round(self.watch.no_signal_s, 3),
                                 no_signal=self.watch.summary(),
                                 **({"source_state": state()} if callable(state) else {}))
        self.core.end(reason)
        for x in [self.console, *self.extras]:
            if x is not None:
                try:
                    x.stop()
                except Exception as e:  # noqa: BLE001 — shutting down; report and go on
                    log.warning("stopping %s: %s", type(x).__name__, e)
        if self.io is not None:
            self.io.stop()
        self.source.close()


def log_course_start(core: SessionCore, course) -> None:
    """The start level, recorded as a decision (who ``course``) with its reason. It changes
    nothing: the core already starts there (``CoreConfig.start_intensity``); replay keeps the
    row in its place as a given (it rebuilds the core from the same config)."""
    h, k = core.hierarchy, core.level
    rec = {"t": core.t, "who": "course", "name": "course", "reason": f"start at level {k}: {course.start_reason}",
           "mode": core.arbiter.mode, "intensity": core.intensity, "target_before": core.target,
           "target_after": core.target, "level_before": k, "level_after": k,
           "level_name_before": h.levels[k].name, "level_name_after": h.levels[k].name, "shield": "",
           "samples_seen": 0}
    core.last_decision = rec
    if core.writer is not None:
        core.writer.write_dict("decisions", rec)
    log.info("session starts at level %d: %s", k, course.start_reason)


def _takes_scene(name: str) -> bool:
    return name == "policy"


def interrupted_reason(e: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
