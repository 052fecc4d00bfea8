"""Session settings: validated once, into a frozen dataclass, with errors naming the option."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ExposureError
from engine.store.files import StoreError, validate_patient
from policy.controllers import controller_names
from scenes.hierarchy import SCENES

DISPLAYS = ("auto", "window", "headset", "offscreen", "none")


class ConfigError(ExposureError, ValueError):
    """A session setting that cannot be used; the message names the option."""


#: The default when the learned policy has not earned it: the safest clinical baseline on virtual
#: patients — the HR band had no overwhelm, no escapes and the lowest dropout in both scenes
#: (300 held-out patients × 6 × 40 min, seed 777; docs/results.md), as the SUDS protocol did,
#: with more responders and without asking the patient for ratings.
SAFEST_BASELINE = "hr-band"


def default_controller(scene: str = "heights", models_dir: Path | None = None) -> tuple[str, str]:
    """The controller a session uses when none is named, and why: the learned policy only when
    its model card shows every goal met for this scene, otherwise the safest baseline."""
    from policy.learned import goals_met

    ok, why = goals_met(scene, models_dir)
    if ok:
        return "policy", f"the learned policy: {why}"
    return SAFEST_BASELINE, (f"the HR band, the safest clinical baseline on virtual patients; "
                             f"not the learned policy: {why}")


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
    start_level: int | None = None  # overrides the course rule (exposure run --start-level)
    new_course: bool = False  # start a new course for this patient and scene (--new-course)
    controller_reason: str = ""  # why this controller, when it was chosen by default

    def validated(self) -> SessionConfig:
        if self.scene not in SCENES:
            raise ConfigError(f"unknown scene {self.scene!r}: choose {' or '.join(SCENES)}")
        if self.display not in DISPLAYS:
            raise ConfigError(f"unknown display {self.display!r}: choose one of {', '.join(DISPLAYS)}")
        try:
            validate_patient(self.patient)
        except StoreError as e:
            raise ConfigError(f"--patient: {e}") from None
        ctl, why = (self.controller, self.controller_reason) if self.controller else default_controller(self.scene)
        names = controller_names()
        if ctl not in names:
            raise ConfigError(f"unknown controller {ctl!r}: choose one of {', '.join(controller_names(True))}")
        if ctl not in controller_names(live_only=True):
            raise ConfigError(f"controller {ctl!r} is for evaluation only (it sees hidden state)")
        parse_speed(self.speed)
        if self.start_level is not None and (not isinstance(self.start_level, int) or self.start_level < 0):
            raise ConfigError(f"--start-level {self.start_level!r}: use a level number, 0 or more")
        if not self.duration_s > 0:
            raise ConfigError("--duration must be positive")
        return SessionConfig(**{**self.__dict__, "controller": ctl, "controller_reason": why})
