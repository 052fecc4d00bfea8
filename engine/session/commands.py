"""Therapist (and patient) commands: parsed and validated once, here, before reaching the core.

A malformed command raises :class:`CommandError` with a one-line message; it never reaches the
session core. The console, the CLI, the Panda3D key handlers and the tests all use this parser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.errors import ExposureError
from scenes.base import EVENTS as EVENT_KINDS  # the scene events a therapist may inject

COMMAND_TYPES = ("stop", "pause", "resume", "hold", "auto", "manual", "set_level",
                 "set_intensity", "suds", "ask_suds", "event", "annotate")
ORIGINS = ("therapist", "patient", "system", "test")
MAX_TEXT = 2000
#: the fields each command type takes (all required)
FIELDS = {"set_level": ("level",), "set_intensity": ("intensity",), "suds": ("value",),
          "event": ("kind",), "annotate": ("text",)}




class CommandError(ExposureError, ValueError):
    """A command that is malformed; the message says what is wrong."""


class CommandFlood(CommandError):
    """A well-formed command refused because too many are already queued (HTTP 429)."""


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

    def payload(self) -> dict:
        d = {"type": self.type}
        for k in ("level", "intensity", "value", "kind", "text"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


def _num(d: dict, key: str, lo: float, hi: float, typ: str) -> float:
    if key not in d:
        raise CommandError(f"command {typ!r} needs field {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CommandError(f"command {typ!r}: field {key!r} must be a number, not {v!r}")
    if not lo <= v <= hi:
        raise CommandError(f"command {typ!r}: field {key!r} must be in [{lo:g}, {hi:g}], not {v!r}")
    return float(v)


def parse_command(d: object, origin: str = "therapist", n_levels: int | None = None) -> Command:
    """Validate a JSON-like command. Raises CommandError with a one-line reason."""
    if not isinstance(d, dict):
        raise CommandError(f"a command must be a JSON object, not {type(d).__name__}")
    typ = d.get("type")
    if typ not in COMMAND_TYPES:
        raise CommandError(f"unknown command type {typ!r}: one of {', '.join(COMMAND_TYPES)}")
    if origin not in ORIGINS:
        raise CommandError(f"unknown origin {origin!r}")
    allowed = {"type"} | set(FIELDS.get(typ, ()))
    unknown = sorted(map(str, set(d) - allowed))
    if unknown:
        if len(allowed) == 1:
            raise CommandError(f"command {typ!r} takes no fields, got {', '.join(unknown)}")
        raise CommandError(f"command {typ!r}: unknown field(s) {', '.join(unknown)}")
    if typ == "set_level":
        top = (n_levels - 1) if n_levels else 1000
        lv = _num(d, "level", 0, top, typ)
        if lv != int(lv):
            raise CommandError(f"command 'set_level': field 'level' must be a whole number, not {lv!r}")
        return Command(typ, origin, level=int(lv))
    if typ == "set_intensity":
        return Command(typ, origin, intensity=_num(d, "intensity", 0.0, 1.0, typ))
    if typ == "suds":
        v = _num(d, "value", 0, 100, typ)
        return Command(typ, origin, value=v)
    if typ == "event":
        kind = d.get("kind")
        if kind not in EVENT_KINDS:
            raise CommandError(f"command 'event': field 'kind' must be one of {', '.join(EVENT_KINDS)}, not {kind!r}")
        return Command(typ, origin, kind=kind)
    if typ == "annotate":
        text = d.get("text")
        if not isinstance(text, str) or not text.strip():
            raise CommandError("command 'annotate' needs a non-empty string field 'text'")
        if len(text) > MAX_TEXT:
            raise CommandError(f"command 'annotate': text longer than {MAX_TEXT} characters")
        return Command(typ, origin, text=text)
    return Command(typ, origin)
