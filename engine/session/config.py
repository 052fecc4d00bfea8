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


#: Goal 2's tolerances: differences of overwhelm and escapes within these count as ties.
SAFETY_TIES = {"overwhelm_s_per_session": 0.1, "escapes_per_patient": 0.01}
#: The clinical baselines the safest is chosen from (goal 2's: the HR PID is not a clinical rule).
CLINICAL_BASELINES = ("ladder", "suds", "hr-band")


def safest_baseline(metrics: dict[str, dict]) -> str:
    """The safest clinical baseline of one evaluation (``{controller: metrics}``, as ``exposure
    evaluate --json`` gives them), by the rule of the policy page: the fewest overwhelm seconds per
    session and escapes per patient among the ladder, the SUDS protocol and the HR band, where a
    difference within goal 2's tolerance (0.1 s per session, 0.01 escapes per patient) is a tie;
    ties are broken by responders. A baseline is out when another is safer by more than the
    tolerance on one measure and not less safe beyond it on the other."""
    names = [n for n in CLINICAL_BASELINES if n in metrics]
    if not names:
        raise ValueError(f"no clinical baseline among {sorted(metrics)}: need one of {', '.join(CLINICAL_BASELINES)}")

    def safer(a: str, b: str) -> bool:  # a is safer than b beyond the tolerance
        d = {k: metrics[b][k] - metrics[a][k] for k in SAFETY_TIES}
        return (any(d[k] > tol + 1e-12 for k, tol in SAFETY_TIES.items())
                and all(d[k] >= -tol - 1e-12 for k, tol in SAFETY_TIES.items()))

    safest = [n for n in names if not any(safer(o, n) for o in names if o != n)]
    return max(safest, key=lambda n: (metrics[n]["responder_rate"], -metrics[n]["overwhelm_s_per_session"]))


#: The default when the learned policy has not earned it, per scene: the safest clinical baseline
#: on virtual patients by :func:`safest_baseline`, applied to the three baselines on 1,000 patients
#: × 6 × 40 min (seed 0, the calibration's course protocol) and on 300 held-out ones (seed 777),
#: pooled (1,300 patients): the SUDS protocol in both scenes. In crowds the 300 alone tie it with
#: the HR band (neither overwhelmed anyone), the 1,000 and the pooled figures do not. Figures and
#: commands: docs/results.md, "Which controller is the default". It waits at its level while a
#: question is unanswered (tests/policy/test_default_suds_unanswered.py).
SAFEST_BASELINE = {"heights": "suds", "crowds": "suds"}
SAFEST_WHY = {
    "heights": ("the SUDS protocol, the safest clinical baseline on virtual patients: no overwhelm and no escapes, "
                "against 0.20 s/session and 0.016 escapes per patient for the HR band (1,000 patients × 6 × 40 min), "
                "at fewer responders (0.63, HR band 0.74)"),
    "crowds": ("the SUDS protocol, the safest clinical baseline on virtual patients: no overwhelm and no escapes, "
               "against 0.16 s/session and 0.016 escapes per patient for the HR band (1,000 patients × 6 × 40 min), "
               "at fewer responders (0.61, HR band 0.73)"),
}


def default_controller(scene: str = "heights", models_dir: Path | None = None) -> tuple[str, str]:
    """The controller a session uses when none is named, and why: the learned policy only when
    its model card shows every goal met for this scene, otherwise the safest baseline."""
    from policy.learned import goals_met

    ok, why = goals_met(scene, models_dir)
    if ok:
        return "policy", f"the learned policy: {why}"
    return SAFEST_BASELINE[scene], f"{SAFEST_WHY[scene]}; not the learned policy: {why}"


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
