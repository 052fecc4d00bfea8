"""Population specs: TOML data files naming the priors of every patient parameter, the
model structure, the sensor and the session plan. Validated once, into frozen dataclasses,
with errors that name the file and the field.

A file may give only some priors; the others come from the shipped default population
(``populations/default.toml``). Distributions (each a table with ``dist`` and its fields)::

    normal    mean, sd [, min, max]      lognormal  median, sigma [, min, max]
    beta      a, b [, min, max]          uniform    low, high
    bernoulli p                          fixed      value

Draws use the counter-based generator of :mod:`.noise`, so patient *i* of seed *s* has the
same parameters whatever the population size.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import betaincinv, ndtri

from policy.errors import PolicyError
from policy.sim.patient import noise

STRUCTURES = ("full", "habituation-only", "inhibitory-flat", "no-sensitisation", "abrupt-no-transfer")
SENSORS = ("chest", "optical")
DEFAULT_PATH = Path(__file__).with_name("populations") / "default.toml"

_DIST_FIELDS = {
    "normal": ("mean", "sd"), "lognormal": ("median", "sigma"), "beta": ("a", "b"),
    "uniform": ("low", "high"), "bernoulli": ("p",), "fixed": ("value",),
}
_OPTIONAL = ("min", "max")


class PopulationError(PolicyError):
    """A population file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Prior:
    dist: str
    args: tuple[float, ...]
    lo: float = -math.inf
    hi: float = math.inf

    def ppf(self, u: np.ndarray) -> np.ndarray:
        d, a = self.dist, self.args
        if d == "normal":
            x = a[0] + a[1] * ndtri(u)
        elif d == "lognormal":
            x = a[0] * np.exp(a[1] * ndtri(u))
        elif d == "beta":
            x = betaincinv(a[0], a[1], u)
        elif d == "uniform":
            x = a[0] + (a[1] - a[0]) * u
        elif d == "bernoulli":
            x = (u < a[0]).astype(float)
        else:
            x = np.full_like(u, a[0])
        return np.clip(x, self.lo, self.hi)


@dataclass(frozen=True)
class SessionPlan:
    count: int = 6
    minutes: float = 40.0


@dataclass(frozen=True)
class Population:
    name: str
    structure: str
    sensor: str
    sessions: SessionPlan
    priors: tuple[tuple[str, Prior], ...]
    source: str = ""

    def prior(self, name: str) -> Prior:
        return dict(self.priors)[name]

    def with_structure(self, structure: str) -> Population:
        if structure not in STRUCTURES:
            raise PopulationError(f"unknown structure {structure!r}: choose one of {', '.join(STRUCTURES)}")
        return Population(self.name, structure, self.sensor, self.sessions, self.priors, self.source)

    def draw(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters for the patients with these keys: {name: array over patients}."""
        out = {}
        for j, (name, pr) in enumerate(self.priors):
            out[name] = pr.ppf(noise.uniform(keys, 0xA11, j))
        return out


def _num(x, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise PopulationError(f"{where} must be a finite number, not {x!r}")
    return float(x)


def _prior(raw, where: str) -> Prior:
    if not isinstance(raw, dict):
        raise PopulationError(f"{where} must be a table like {{dist = \"normal\", mean = 0, sd = 1}}")
    d = raw.get("dist")
    if d not in _DIST_FIELDS:
        raise PopulationError(f"{where}.dist must be one of {', '.join(_DIST_FIELDS)}, not {d!r}")
    need = _DIST_FIELDS[d]
    extra = set(raw) - set(need) - set(_OPTIONAL) - {"dist"}
    if extra:
        raise PopulationError(f"{where} has unknown field(s) {sorted(extra)} for dist {d!r}")
    args = []
    for f in need:
        if f not in raw:
            raise PopulationError(f"{where}.{f} is missing (dist {d!r} needs {', '.join(need)})")
        args.append(_num(raw[f], f"{where}.{f}"))
    if d == "normal" and args[1] < 0 or d == "lognormal" and (args[0] <= 0 or args[1] < 0):
        raise PopulationError(f"{where}: {need[1] if d == 'normal' else 'median and sigma'} must be positive")
    if d == "beta" and (args[0] <= 0 or args[1] <= 0):
        raise PopulationError(f"{where}.a and .b must be positive")
    if d == "uniform" and args[1] < args[0]:
        raise PopulationError(f"{where}.high must be at least .low")
    if d == "bernoulli" and not 0.0 <= args[0] <= 1.0:
        raise PopulationError(f"{where}.p must be in [0, 1]")
    lo = _num(raw["min"], f"{where}.min") if "min" in raw else -math.inf
    hi = _num(raw["max"], f"{where}.max") if "max" in raw else math.inf
    if hi < lo:
        raise PopulationError(f"{where}.max must be at least .min")
    return Prior(d, tuple(args), lo, hi)


def parse_population(data: dict, where: str = "<population>", base: Population | None = None) -> Population:
    """Validate a parsed TOML document. Priors not named come from ``base``."""
    if not isinstance(data, dict):
        raise PopulationError(f"{where}: must be a TOML table")
    known = {"name", "structure", "sensor", "sessions", "priors"}
    extra = set(data) - known
    if extra:
        raise PopulationError(f"{where}: unknown field(s) {sorted(extra)}; known: {sorted(known)}")
    name = data.get("name", base.name if base else "population")
    if not isinstance(name, str) or not name.strip():
        raise PopulationError(f"{where}: field 'name' must be a non-empty string")
    structure = data.get("structure", base.structure if base else "full")
    if structure not in STRUCTURES:
        raise PopulationError(f"{where}: field 'structure' must be one of {', '.join(STRUCTURES)}, not {structure!r}")
    sensor = data.get("sensor", base.sensor if base else "chest")
    if sensor not in SENSORS:
        raise PopulationError(f"{where}: field 'sensor' must be chest or optical, not {sensor!r}")
    ses = data.get("sessions", {})
    if not isinstance(ses, dict):
        raise PopulationError(f"{where}: field 'sessions' must be a table with count and minutes")
    if set(ses) - {"count", "minutes"}:
        raise PopulationError(f"{where}: sessions has unknown field(s) {sorted(set(ses) - {'count', 'minutes'})}")
    bp = base.sessions if base else SessionPlan()
    count = ses.get("count", bp.count)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise PopulationError(f"{where}: sessions.count must be an integer from 1 to 100, not {count!r}")
    minutes = _num(ses.get("minutes", bp.minutes), f"{where}: sessions.minutes")
    if not 1.0 <= minutes <= 240.0:
        raise PopulationError(f"{where}: sessions.minutes must be between 1 and 240, not {minutes!r}")
    raw = data.get("priors", {})
    if not isinstance(raw, dict):
        raise PopulationError(f"{where}: field 'priors' must be a table of parameter = {{dist = …}}")
    priors = dict(base.priors) if base else {}
    if base is not None:
        unknown = set(raw) - set(priors)
        if unknown:
            raise PopulationError(f"{where}: priors.{sorted(unknown)[0]} is not a parameter of the model; "
                                  f"known: {', '.join(sorted(priors))}")
    for k, v in raw.items():
        priors[k] = _prior(v, f"{where}: priors.{k}")
    return Population(name.strip(), structure, sensor, SessionPlan(count, minutes),
                      tuple(priors.items()), where)


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PopulationError(f"{path}: no such population file") from None
    except tomllib.TOMLDecodeError as e:
        raise PopulationError(f"{path}: not valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PopulationError(f"{path}: cannot read ({e})") from None


def default_population() -> Population:
    return parse_population(_read(DEFAULT_PATH), str(DEFAULT_PATH))


def shipped_populations() -> list[str]:
    """Names of the example population files shipped with the package (``populations/*.toml``)."""
    return sorted(f.stem for f in DEFAULT_PATH.parent.glob("*.toml"))


def load_population(path: str | Path | None = None, structure: str | None = None) -> Population:
    """The default population, or a researcher's file layered over it; optionally another structure.
    ``path`` may also name a shipped example population (``slow-habituators``, …)."""
    pop = default_population()
    if path is not None:
        p = Path(path)
        shipped = DEFAULT_PATH.parent / f"{path}.toml"
        if not p.exists() and p.suffix == "" and p.name == str(path) and shipped.exists():
            p = shipped
        pop = parse_population(_read(p), str(p), base=pop)
    return pop.with_structure(structure) if structure else pop
