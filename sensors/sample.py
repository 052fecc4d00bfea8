"""The typed sample every heart-rate source yields, and the events sources report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sample:
    """One heart-rate reading.

    ``t`` is monotonic time in seconds on the session's clock; ``wall`` is Unix time.
    ``bpm`` is what the device reported (may be NaN when a device only sends RR);
    ``rr_ms`` are the RR intervals the reading carried, in milliseconds;
    ``contact`` is the sensor-contact flag: True/False when the device reports it,
    None when it does not support contact detection.
    """

    t: float
    wall: float
    bpm: float
    rr_ms: tuple[float, ...] = ()
    contact: bool | None = None
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "t": self.t,
            "wall": self.wall,
            "bpm": None if math.isnan(self.bpm) else self.bpm,
            "rr_ms": list(self.rr_ms),
            "contact": self.contact,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """A change of a source's state: connected, disconnected, reconnecting, rejected input."""

    t: float
    kind: str
    detail: dict = field(default_factory=dict)
