"""Therapist (and patient) commands: one schema, validated once, here, before reaching the core.

The schema is a pydantic discriminated union (one model per command type, told apart by
``type``). It validates every command — from the console, the CLI, the Panda3D key handlers,
replay and the tests — and the console's OpenAPI document is generated from it, so the two
cannot disagree. A malformed command raises :class:`CommandError` with a one-line message; it
never reaches the session core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_KINDS = ("gust", "surge", "noise")
ORIGINS = ("therapist", "patient", "system", "test")
MAX_TEXT = 2000
#: commands that make the session safer or hand it to the therapist: their own queue, never
#: refused for load, applied first at the next tick
SAFETY_TYPES = ("stop", "pause", "resume", "hold", "manual")


class CommandError(ValueError):
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


def parse_command(d: object, origin: str = "therapist", n_levels: int | None = None) -> Command:
    """Validate a JSON-like command. Raises CommandError with a one-line reason."""
    from engine.session.command_schema import parse_command as parse

    return parse(d, origin, n_levels)


def json_schema() -> dict:
    """The JSON schema of a command (a ``oneOf`` told apart by ``type``), with no ``$ref``s."""
    from engine.session.command_schema import json_schema as schema

    return schema()


def __getattr__(name: str):
    # the command types and their fields come from the schema's models (one source), loaded on use
    if name in ("COMMAND_TYPES", "FIELDS", "MODELS", "CommandModel"):
        from engine.session import command_schema

        return getattr(command_schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
