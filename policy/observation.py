"""What a controller sees: the live features plus the session's own state, over N patients.

The live session builds it with N = 1 each tick; the gymnasium env and the evaluator build it
over many virtual patients. No hidden patient state appears here: only what a real session
can measure (the oracle controller gets the hidden state separately, in evaluation only).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from sensors.features import finite_or_none

#: The course context: where this session stands in the patient's course (one value per patient).
#: The live session reads it from the store (engine.store.course), the env and the evaluator from
#: their course state; both through :func:`policy.step.course_observation`.
COURSE_FIELDS = ("course_session", "prev_highest_level", "prev_peak_suds", "prev_peak_hr_rise", "course_minutes",
                 "return_of_fear")
# Order of the vector given to learned policies. Changing it is a new observation version.
# Version 2 added the course fields at the end; a policy trained on version 1 still gets exactly
# its 12 inputs (the learned controller picks its inputs by name, from its bundle's metadata).
VECTOR_FIELDS = (
    "intensity", "level_frac", "time_at_level", "hr_delta", "hr_slope", "rmssd", "quality",
    "lost", "suds", "suds_age", "look_away", "t", *COURSE_FIELDS,
)
OBS_VERSION = 2
#: what a session with nothing before it sees (a first session, an anonymous one)
COURSE_DEFAULTS = {"course_session": 1.0, "prev_highest_level": np.nan, "prev_peak_suds": np.nan,
                   "prev_peak_hr_rise": np.nan, "course_minutes": 0.0, "return_of_fear": np.nan}


@dataclass
class Observation:
    t: np.ndarray  # seconds since session start
    intensity: np.ndarray  # current intensity [0, 1]
    target: np.ndarray  # intensity being ramped towards
    level: np.ndarray  # index of the current hierarchy level (int)
    level_frac: np.ndarray  # level / (number of levels − 1)
    time_at_level: np.ndarray  # seconds since the level last changed
    hr: np.ndarray
    baseline: np.ndarray
    hr_delta: np.ndarray  # hr − baseline (bpm)
    hr_slope: np.ndarray  # bpm/s
    rmssd: np.ndarray  # ms
    quality: np.ndarray  # [0, 1]
    lost: np.ndarray  # bool: signal lost
    since_valid: np.ndarray  # seconds since the last valid reading (inf if none yet)
    suds: np.ndarray  # last SUDS answer (0..100), NaN if none yet
    suds_age: np.ndarray  # seconds since that answer (inf if none)
    suds_peak: np.ndarray  # highest SUDS at the current level (NaN if none)
    look_away: np.ndarray  # share of recent time looking down/away (NaN if the scene does not say)
    max_hr: np.ndarray  # the patient's estimated max HR (208 − 0.7·age)
    # the course context (None: a session with nothing before it, COURSE_DEFAULTS)
    course_session: np.ndarray | None = None  # 1-based index of this session in the course
    prev_highest_level: np.ndarray | None = None  # highest level reached in the previous session (NaN: none)
    prev_peak_suds: np.ndarray | None = None  # highest SUDS of the previous session (NaN: none)
    prev_peak_hr_rise: np.ndarray | None = None  # highest HR rise over baseline then, bpm (NaN: none)
    course_minutes: np.ndarray | None = None  # minutes in VR in the course before this session
    return_of_fear: np.ndarray | None = None  # first SUDS now − last SUDS at that level last time (NaN: not yet)

    def __post_init__(self):
        for name, v in COURSE_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, np.full(len(self.t), v))

    @property
    def n(self) -> int:
        return len(self.t)

    def vector(self, names: tuple[str, ...] = VECTOR_FIELDS) -> np.ndarray:
        """(N, len(names)) float32 with NaN/inf replaced by neutral values; ``names`` from VECTOR_FIELDS."""
        cols = []
        for name in names:
            x = np.asarray(getattr(self, name), dtype=np.float64)
            if name == "t" or name == "time_at_level":
                x = x / 600.0
            elif name == "suds" or name == "look_away":
                x = np.where(np.isnan(x), -1.0, x / 100.0 if name == "suds" else x)
            elif name == "suds_age":
                x = np.minimum(np.where(np.isfinite(x), x, 600.0), 600.0) / 600.0
            elif name in ("hr_delta",):
                x = np.where(np.isnan(x), 0.0, x) / 20.0
            elif name == "rmssd":
                x = np.where(np.isnan(x), 40.0, x) / 50.0
            elif name == "course_session":
                x = (x - 1.0) / 10.0
            elif name in ("prev_highest_level", "prev_peak_suds"):
                x = np.where(np.isnan(x), -1.0, x / (10.0 if name == "prev_highest_level" else 100.0))
            elif name == "prev_peak_hr_rise":
                x = np.where(np.isnan(x), 0.0, x) / 20.0
            elif name == "course_minutes":
                x = x / 300.0
            elif name == "return_of_fear":
                x = np.where(np.isnan(x), 0.0, x) / 100.0
            cols.append(np.where(np.isfinite(x), x, 0.0))  # NaN and ±inf → 0
        return np.stack(cols, axis=1).astype(np.float32)

    def row(self, i: int = 0) -> dict:
        """One lane as plain floats, None where not finite (as logged with each decision)."""
        return {f.name: finite_or_none(getattr(self, f.name)[i]) for f in fields(self)}


def empty_observation(n: int) -> Observation:
    nan = np.full(n, np.nan)
    z = np.zeros(n)
    return Observation(t=z.copy(), intensity=z.copy(), target=z.copy(), level=np.zeros(n, int),
                       level_frac=z.copy(), time_at_level=z.copy(), hr=nan.copy(),
                       baseline=nan.copy(), hr_delta=nan.copy(), hr_slope=z.copy(),
                       rmssd=nan.copy(), quality=z.copy(), lost=np.ones(n, bool),
                       since_valid=np.full(n, np.inf),
                       suds=nan.copy(), suds_age=np.full(n, np.inf), suds_peak=nan.copy(),
                       look_away=nan.copy(), max_hr=np.full(n, 180.0))


# The learned policy's action and input encoding, shared by the env (training) and the live
# controller, so a trained policy acts live exactly as in training.
DOWN, HOLD, UP = 0, 1, 2
OBS_LOW, OBS_HIGH = -10.0, 10.0


def action_to_delta(action, step_size: float = 0.05, ask_suds: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Env actions (n,) or (n, 2) → (intensity change, ask SUDS) per lane. Used by the env and
    by :class:`ActionController`, so a trained policy acts live exactly as in training."""
    a = np.asarray(action)
    if ask_suds:
        a = a.reshape(-1, 2)
        move, ask = a[:, 0], a[:, 1].astype(bool)
    else:
        move, ask = a.reshape(-1), np.zeros(a.size, bool)
    return (move.astype(float) - 1.0) * step_size, ask


def observation_vector(obs: Observation, names: tuple[str, ...] = VECTOR_FIELDS) -> np.ndarray:
    return np.clip(obs.vector(names), OBS_LOW, OBS_HIGH)
