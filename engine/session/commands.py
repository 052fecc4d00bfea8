"""Therapist (and patient) commands: one schema, validated once, here, before reaching the core.

The schema is a pydantic discriminated union (one model per command type, told apart by
``type``). It validates every command — from the console, the CLI, the Panda3D key handlers,
replay and the tests — and the console's OpenAPI document is generated from it, so the two
cannot disagree. A malformed command raises :class:`CommandError` with a one-line message; it
never reaches the session core.
"""

from __future__ import annotations

from engine.session.command_base import (  # noqa: F401  (re-exported: the commands' front door)
    EVENT_KINDS,
    MAX_TEXT,
    ORIGINS,
    SAFETY_TYPES,
    Command,
    CommandError,
    CommandFlood,
    SessionStopped,
)


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
