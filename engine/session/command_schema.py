"""The command schema: a pydantic discriminated union, one model per command type.

Imported by :mod:`engine.session.commands` when a command is first parsed (so ``import
engine.cli`` stays light); the console's OpenAPI document is generated from it.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from engine.session.command_base import EVENT_KINDS, MAX_TEXT, CommandError


class _Cmd(BaseModel):
    # strict: no "0.5" for 0.5, no true for 1; forbid: an unknown field is an error, not ignored
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _bare(name: str, doc: str) -> type[_Cmd]:
    return type(name, (_Cmd,), {"__annotations__": {"type": Literal[name]}, "__doc__": doc,
                                "model_config": ConfigDict(title=name, **_Cmd.model_config)})


Stop = _bare("stop", "End the session now: intensity and level back to the calm start.")
Pause = _bare("pause", "Fade to the calm scene; the level is kept for resume.")
Resume = _bare("resume", "Leave pause, back to the mode before it.")
Hold = _bare("hold", "Keep the intensity where it is.")
Auto = _bare("auto", "Let the controller drive.")
Manual = _bare("manual", "The therapist drives; the controller is not consulted.")
AskSuds = _bare("ask_suds", "Ask the patient for a SUDS rating.")


class SetLevel(_Cmd):
    """Go to a hierarchy level (switches to manual)."""

    model_config = ConfigDict(title="set_level")
    type: Literal["set_level"]
    level: Annotated[int, Field(ge=0, le=1000, description="level index, 0 = the calm start")]


class SetIntensity(_Cmd):
    """Set the intensity 0..1 (switches to manual)."""

    model_config = ConfigDict(title="set_intensity")
    type: Literal["set_intensity"]
    intensity: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class Suds(_Cmd):
    """Record a SUDS rating (0-100) the patient said aloud."""

    model_config = ConfigDict(title="suds")
    type: Literal["suds"]
    value: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class SceneEvent(_Cmd):
    """Inject a scene event."""

    model_config = ConfigDict(title="event")
    type: Literal["event"]
    kind: Literal[EVENT_KINDS]


class Annotate(_Cmd):
    """Write a note into the session log (UTF-8 text; no control characters but tab and newline)."""

    model_config = ConfigDict(title="annotate")
    type: Literal["annotate"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]

    @field_validator("text")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the note is blank")
        # A lone surrogate (which JSON.stringify can send) cannot be written as UTF-8: refuse it
        # here, before anything is applied, rather than fail later in the log, state or report.
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the note is not valid Unicode text (lone surrogate)") from None
        bad = [c for c in v if c not in "\t\n\r" and unicodedata.category(c) == "Cc"]
        if bad:
            raise ValueError(f"the note holds a control character ({bad[0]!r})")
        return v


MODELS = (Stop, Pause, Resume, Hold, Auto, Manual, SetLevel, SetIntensity, Suds, AskSuds, SceneEvent, Annotate)
CommandModel = Annotated[Union[MODELS], Field(discriminator="type")]  # noqa: UP007 — a tuple of models
_ADAPTER = TypeAdapter(CommandModel)
COMMAND_TYPES = tuple(get_args(m.model_fields["type"].annotation)[0] for m in MODELS)
#: the fields each command type takes (all required)
FIELDS = {t: tuple(k for k in m.model_fields if k != "type") for t, m in zip(COMMAND_TYPES, MODELS, strict=True)}


def json_schema() -> dict:
    """The JSON schema of a command (a ``oneOf`` told apart by ``type``), with no ``$ref``s."""
    schema = _ADAPTER.json_schema()
    defs = schema.pop("$defs", {})

    def inline(x):
        if isinstance(x, dict):
            if "$ref" in x:
                return inline(defs[x["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in x.items() if k != "mapping"}
        if isinstance(x, list):
            return [inline(v) for v in x]
        return x

    return inline(schema)


_RANGES = {"level": "[0, {top}]", "intensity": "[0, 1]", "value": "[0, 100]"}


def _one_line(e: ValidationError, typ: object, n_levels: int | None) -> str:
    """pydantic's first error as one line a therapist or a script can act on."""
    errs = e.errors(include_url=False)
    err = errs[0]
    kind = err["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"unknown command type {typ!r}: one of {', '.join(COMMAND_TYPES)}"
    if kind == "model_attributes_type":
        return "a command must be a JSON object"
    loc = [str(p) for p in err["loc"][1:]]
    name = loc[0] if loc else ""
    got = repr(err.get("input"))
    got = got if len(got) <= 40 else got[:37] + "..."
    if kind == "extra_forbidden":
        extra = ", ".join(sorted(str(x["loc"][-1]) for x in errs if x["type"] == "extra_forbidden"))
        if set(FIELDS.get(str(typ), ())) == set():
            return f"command {typ!r} takes no fields, got {extra}"
        return f"command {typ!r}: unknown field(s) {extra}"
    if kind == "missing":
        return f"command {typ!r} needs field {name!r}"
    if kind == "string_unicode":
        return f"command {typ!r}: text that is not valid Unicode (a lone surrogate?) is refused"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"command {typ!r}: field {name!r} must be a whole number, not {got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"command {typ!r}: field {name!r} must be a finite number, not {got}"
    if kind in ("greater_than_equal", "less_than_equal"):
        top = (n_levels - 1) if n_levels else 1000
        return f"command {typ!r}: field {name!r} must be in {_RANGES[name].format(top=top)}, not {got}"
    if kind == "literal_error":
        return f"command {typ!r}: field {name!r} must be one of {', '.join(EVENT_KINDS)}, not {got}"
    if kind in ("string_type", "string_too_short"):
        return f"command {typ!r} needs a non-empty string field {name!r}"
    if kind == "string_too_long":
        return f"command {typ!r}: text longer than {MAX_TEXT} characters"
    msg = str(err["msg"]).replace("Value error, ", "").splitlines()[0]
    return f"command {typ!r}: field {name!r}: {msg}"[:280]


def parse_command(d: object, origin: str = "therapist", n_levels: int | None = None):
    """Validate a JSON-like command. Raises CommandError with a one-line reason."""
    from engine.session.command_base import ORIGINS, Command

    if origin not in ORIGINS:
        raise CommandError(f"unknown origin {origin!r}")
    if not isinstance(d, dict):
        raise CommandError(f"a command must be a JSON object, not {type(d).__name__}")
    try:
        m = _ADAPTER.validate_python(d)
    except ValidationError as e:
        typ = d.get("type")
        raise CommandError(_one_line(e, typ if isinstance(typ, str) else repr(typ), n_levels)) from None
    except (RecursionError, ValueError, TypeError) as e:  # pragma: no cover — pydantic turns these into errors
        raise CommandError(f"not a valid command ({type(e).__name__})") from None
    fields = m.model_dump(exclude={"type"})
    if m.type == "set_level" and n_levels and m.level > n_levels - 1:
        raise CommandError(f"command 'set_level': field 'level' must be in [0, {n_levels - 1}], not {m.level!r}")
    return Command(m.type, origin, **fields)
