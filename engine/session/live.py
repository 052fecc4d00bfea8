"""A session: configuration validated once, the pieces built from it, and the headless loop.

The Panda3D runner builds the same :class:`Session` and calls :meth:`Session.step` once a frame;
``--display none`` calls it from :meth:`Session.run_headless`. The same code runs in both.
"""

from __future__ import annotations

import logging
import math
import platform
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine import __version__
from engine.session.clock import make_clock
from engine.session.commands import Command
from engine.session.core import CoreConfig, SessionCore
from engine.session.watch import SignalWatch
from engine.sources import SOURCE_HANDLERS
from engine.store.files import SessionWriter, StoreError, validate_patient
from policy import step as session_step
from policy.controllers import ControllerError, controller_names, make_controller
from policy.shield import SafetyShield
from scenes.hierarchy import SCENES, HierarchyError, load_hierarchy
from sensors.errors import SensorError
from sensors.source import Exposure, HRSource, open_source

log = logging.getLogger(__name__)

DISPLAYS = ("auto", "window", "headset", "offscreen", "none")
SIM_SUDS_DELAY_S = session_step.SUDS_DELAY_S


class ConfigError(ValueError):
    """A session setting that cannot be used; the message names the option."""


def default_controller() -> str:
    names = controller_names(live_only=True)
    for pref in ("policy", "suds", "ladder"):
        if pref in names:
            return pref
    return names[0]


def default_sessions_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("exposure", appauthor=False)) / "sessions"


_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(h|m|min|s)?\s*$")


def parse_duration(text: str) -> float:
    """'45m', '90s', '1.5h' or plain seconds → seconds."""
    m = _DUR.match(str(text))
    if not m and str(text).startswith("-") and _DUR.match(str(text)[1:]):
        raise ConfigError(f"--duration {text!r}: a duration must be positive (e.g. 45m, 90s or 1h)")
    if not m:
        raise ConfigError(f"--duration {text!r} is not a duration: use e.g. 45m, 90s or 1h")
    v = float(m.group(1))
    unit = m.group(2) or "s"
    secs = v * {"h": 3600, "m": 60, "min": 60, "s": 1}[unit]
    if secs <= 0:
        raise ConfigError("--duration must be positive")
    return secs


def parse_speed(text: str) -> str:
    t = str(text).strip().lower()
    if t == "max":
        return t
    try:
        v = float(t.rstrip("x"))
    except ValueError:
        raise ConfigError(f"--speed {text!r}: use 1, a factor like 10, or max") from None
    if not v > 0 or not math.isfinite(v):
        raise ConfigError("--speed must be positive")
    return f"{v:g}"


def parse_console(text: str) -> tuple[str, int] | None:
    t = str(text).strip()
    if t.lower() == "off":
        return None
    host, sep, port = t.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", t
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"--console {text!r}: use HOST:PORT, PORT or off") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"--console port {p} is out of range")
    return (host or "127.0.0.1").strip("[]"), p


@dataclass(frozen=True)
class SessionConfig:
    scene: str = "heights"
    sensor: str = "sim://"
    controller: str = ""
    display: str = "none"
    duration_s: float = 45 * 60.0
    speed: str = "1"
    patient: str = "anon"
    sessions_dir: Path = field(default_factory=default_sessions_dir)
    console: tuple[str, int] | None = None
    seed: int = 0
    hierarchy: str | None = None  # a therapist's own hierarchy file; default: the scene's
    tick_s: float = 0.25  # headless tick; a rendered session ticks once per frame
    lsl: bool = False

    def validated(self) -> SessionConfig:
        if self.scene not in SCENES:
            raise ConfigError(f"unknown scene {self.scene!r}: choose {' or '.join(SCENES)}")
        if self.display not in DISPLAYS:
            raise ConfigError(f"unknown display {self.display!r}: choose one of {', '.join(DISPLAYS)}")
        try:
            validate_patient(self.patient)
        except StoreError as e:
            raise ConfigError(f"--patient: {e}") from None
        ctl = self.controller or default_controller()
        names = controller_names()
        if ctl not in names:
            raise ConfigError(f"unknown controller {ctl!r}: choose one of {', '.join(controller_names(True))}")
        if ctl not in controller_names(live_only=True):
            raise ConfigError(f"controller {ctl!r} is for evaluation only (it sees hidden state)")
        parse_speed(self.speed)
        if not self.duration_s > 0:
            raise ConfigError("--duration must be positive")
        return SessionConfig(**{**self.__dict__, "controller": ctl})


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
        try:
            self.source = source or open_source(cfg.sensor, SOURCE_HANDLERS, seed=cfg.seed, scene=cfg.scene,
                                                clock=self.clock.now, sessions_dir=cfg.sessions_dir)
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
        self.core = SessionCore(self.hierarchy, self.controller, self.shield, self.writer,
                                core_config, seed=cfg.seed, t0=self.clock.now())
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
            if core.suds_pending_since is not None and now - core.suds_pending_since >= SIM_SUDS_DELAY_S:
                v = src.suds(now)
                if v is not None:
                    core.push_command(Command("suds", origin="patient", value=float(v)))
        core.tick(now)
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
        self.watch.update(self.core.t, self.core.n_samples, self.core.connection)
        if self.writer is not None and not self.writer.closed:
            self.writer.set_meta(no_signal_s=round(self.watch.no_signal_s, 3), no_signal=self.watch.summary())
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


def _takes_scene(name: str) -> bool:
    return name == "policy"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, ``kill``): ends the session as Ctrl-C does, recorded as such."""


def interrupted_reason(e: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"


def _without_prefix(reason: str, who: str) -> str:
    """"policy: step up" said by the policy reads "step up" after "policy:"."""
    return reason[len(who) + 2:] if reason.startswith(f"{who}: ") else reason


def _json_reason(detail) -> str:
    import json

    try:
        return str(json.loads(detail).get("reason", "?"))
    except (TypeError, ValueError, AttributeError):
        return "?"


def summarize(path: Path) -> dict:
    """What happened in a session, from its log: for the demo and for reports."""
    from engine.store.files import SessionReader

    with SessionReader(path) as r:
        info = r.info()
        feats = r.records("features")
        decisions = r.records("decisions")
        shield = [e for e in r.records("events") if e["kind"] == "shield"]
        suds = r.records("suds")
        scene = r.records("scene")
        # a fact drawn from a damaged table cannot be established: None, listed in "unknown"
        unsure = {t: r.unsure(t) for t in ("meta", "features", "decisions", "events", "suds", "scene", "samples")}
        problems = list(r.problems)
    hr = [f["hr"] for f in feats if f["hr"] is not None and not f["lost"]]
    base = next((f["baseline"] for f in reversed(feats) if f["baseline"] is not None), None)
    levels = [s["level"] for s in scene]
    names = info.meta.get("hierarchy", {}).get("levels", [])
    top = max(levels) if levels else 0
    who = Counter((d["who"], _without_prefix(str(d["reason"]), str(d["who"])))
                  for d in decisions if d["target_before"] != d["target_after"])
    shield_why = Counter(str(e["detail"].get("reason") if isinstance(e["detail"], dict) else
                             _json_reason(e["detail"])) for e in shield)
    out = {
        "id": info.id, "path": str(info.path), "patient": info.meta.get("patient"),
        "scene": info.meta.get("scene"), "controller": info.meta.get("controller"),
        "duration_s": info.duration_s, "samples": info.counts.get("samples", 0),
        "baseline_hr": base, "peak_hr": max(hr) if hr else None,
        "top_level": top, "top_level_name": names[top][0] if isinstance(top, int) and top < len(names) else None,
        "final_level": levels[-1] if levels else 0,
        "changes": [{"who": w, "reason": r, "count": n} for (w, r), n in who.most_common()],
        "shield_interventions": len(shield), "shield_reasons": dict(shield_why.most_common()),
        "suds": [(s["t"], s["value"]) for s in suds],
        "ended": info.meta.get("end_reason") or "incomplete",
        "no_signal_s": info.meta.get("no_signal_s"), "no_signal": info.meta.get("no_signal") or "",
        "problems": problems,
    }
    from_table = {"features": ("baseline_hr", "peak_hr"), "scene": ("top_level", "top_level_name", "final_level"),
                  "decisions": ("changes",), "events": ("shield_interventions", "shield_reasons"), "suds": ("suds",),
                  "samples": ("samples",), "meta": ("duration_s", "ended", "no_signal_s", "no_signal")}
    unknown = [k for t, keys in from_table.items() if unsure[t] for k in keys]
    for k in unknown:
        out[k] = None
    out["unknown"] = unknown
    return out
