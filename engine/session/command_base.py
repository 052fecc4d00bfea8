"""What every command shares, without the schema: the constants, the errors and the
:class:`Command` itself (the schema in :mod:`engine.session.command_schema` builds on these;
:mod:`engine.session.commands` is the front door that re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import ExposureError
from scenes.names import EVENTS as EVENT_KINDS  # noqa: F401  (the scene events a therapist may inject)

ORIGINS = ("therapist", "patient", "system", "test")
MAX_TEXT = 2000
#: commands that make the session safer or hand it to the therapist: their own queue, never
#: refused for load, applied first at the next tick
SAFETY_TYPES = ("stop", "pause", "resume", "hold", "manual")


class CommandError(ExposureError, ValueError):
    """A command that is malformed; the message says what is wrong."""


class CommandFlood(CommandError):
    """A well-formed command refused because too many are already queued (HTTP 429)."""


class SessionStopped(CommandError):
    """A well-formed command refused because the session has stopped (HTTP 409)."""


# ------------------------------------------------------------------------------ the command
@dataclass(frozen=True)
class Command:
    type: str
    origin: str = "therapist"
    level: int | None = None
    intensity: float | None = None
    value: float | None = None
    kind: str | None = None
    text: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def safety(self) -> bool:
        return self.type in SAFETY_TYPES

    def payload(self) -> dict:
        d = {"type": self.type}
        for k in ("level", "intensity", "value", "kind", "text"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d
