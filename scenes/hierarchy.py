"""Exposure hierarchies: named levels as points on a scene's intensity scale [0, 1].

A hierarchy is a TOML data file a therapist can copy and edit::

    scene = "heights"
    name = "Balcony to glass walkway"
    [[level]]
    name = "Ground floor terrace"
    intensity = 0.0
    [level.params]
    height_m = 3.0
    ...

Levels are sorted by intensity, the first at 0 and the last at 1, and every level names the
same parameters: at least the ones its scene needs (:data:`PARAMS`), each within its range.
Scene parameters between two levels are interpolated linearly. An optional ``[rates]`` table
caps how fast the scene may move each parameter (units per second), so that a change of level
never pops::

    [rates]
    height_m = 4.0
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from scenes.names import SCENES  # noqa: F401  (re-exported)

#: the parameters each scene needs: (lowest, highest allowed value, default rate per second)
PARAMS: dict[str, dict[str, tuple[float, float, float]]] = {
    "heights": {
        "height_m": (0.0, 500.0, 6.0),  # eye level above the street below
        "railing": (0.0, 1.0, 0.25),  # 1 = full glass balustrade, 0.5 = a low rail, 0 = none
        "floor_transparency": (0.0, 1.0, 0.25),  # 0 = concrete slab, 1 = clear glass
        "edge_distance_m": (0.0, 10.0, 0.4),  # from the patient's toes to the open edge
        "wind": (0.0, 1.0, 0.25),  # sway of the view and loudness of the wind
    },
    "crowds": {
        "people": (0.0, 80.0, 4.0),  # how many people are in the street
        "closest_m": (0.3, 50.0, 0.8),  # how close the nearest of them pass
        "looking_share": (0.0, 1.0, 0.15),  # the share of them looking at the patient
        "walk_speed": (0.0, 3.0, 0.3),  # metres per second
        "noise": (0.0, 1.0, 0.25),  # loudness of the crowd
    },
}
_DIR = Path(__file__).with_name("hierarchies")


class HierarchyError(ValueError):
    """A hierarchy file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Level:
    name: str
    intensity: float
    params: dict[str, float]


@dataclass(frozen=True)
class Hierarchy:
    scene: str
    name: str
    levels: tuple[Level, ...]
    source: str = ""
    #: the fastest each parameter may change, in its units per second
    rates: dict[str, float] = field(default_factory=dict)

    @property
    def intensities(self) -> list[float]:
        return [lv.intensity for lv in self.levels]

    @cached_property
    def _table(self) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
        """(intensities, parameter names, values (levels × parameters)) as arrays."""
        names = tuple(self.levels[0].params)
        return (np.array(self.intensities, dtype=float), names,
                np.array([[lv.params[k] for k in names] for lv in self.levels], dtype=float))

    def level_index(self, intensity):
        """The highest level whose intensity is at or below ``intensity`` (with tolerance).

        An int for a number, an int array for an array: the live session (one intensity), the
        evaluator (thousands) and the scene all use this one function."""
        xs = self._table[0]
        # np.minimum/np.maximum rather than np.clip: the same integers, without np.clip's Python-level checks
        # (a noticeable share of the cost on the small arrays of a tick)
        i = np.minimum(np.maximum(np.searchsorted(xs, np.asarray(intensity, dtype=float) + 1e-9, side="right") - 1,
                                  0), len(xs) - 1)
        return int(i) if i.ndim == 0 else i

    def level_name(self, intensity: float) -> str:
        return self.levels[self.level_index(intensity)].name

    def params_at(self, intensity):
        """Scene parameters at ``intensity``, interpolated linearly between levels.

        ``{name: float}`` for a number, ``{name: array}`` for an array of intensities."""
        xs, names, values = self._table
        x = np.minimum(1.0, np.maximum(0.0, np.asarray(intensity, dtype=float)))
        n = len(xs)
        i = self.level_index(x)
        j = np.minimum(i + 1, n - 1)
        lo_x, hi_x = xs[i], xs[j]
        w = (x - lo_x) / np.maximum(hi_x - lo_x, 1e-9)
        lo, hi = values[i], values[j]
        v = np.where(np.expand_dims(i + 1 >= n, -1), lo, lo + np.expand_dims(w, -1) * (hi - lo))
        if v.ndim == 1:
            return {k: float(v[m]) for m, k in enumerate(names)}
        return {k: v[..., m] for m, k in enumerate(names)}


def hierarchy_path(scene: str) -> Path:
    return _DIR / f"{scene}.toml"


def load_hierarchy(scene_or_path: str | Path) -> Hierarchy:
    """Load a shipped hierarchy by scene name, or a therapist's own file by path."""
    p = Path(scene_or_path)
    if str(scene_or_path) in SCENES:
        p = hierarchy_path(str(scene_or_path))
    where = str(p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HierarchyError(f"{where}: no such hierarchy file") from None
    except tomllib.TOMLDecodeError as e:
        raise HierarchyError(f"{where}: not valid TOML ({e})") from None
    return parse_hierarchy(data, where)


def parse_hierarchy(data: dict, where: str = "<hierarchy>") -> Hierarchy:
    if not isinstance(data, dict):
        raise HierarchyError(f"{where}: must be a table of fields (scene, name, level)")
    scene = data.get("scene")
    if scene not in SCENES:
        raise HierarchyError(f"{where}: field 'scene' must be one of {', '.join(SCENES)}, not {scene!r}")
    raw = data.get("level")
    if not isinstance(raw, list) or len(raw) < 2:
        raise HierarchyError(f"{where}: needs at least two [[level]] tables")
    levels = []
    keys = None
    for i, lv in enumerate(raw):
        at = f"{where}: level[{i}]"
        if not isinstance(lv, dict):
            raise HierarchyError(f"{at} must be a table")
        name = lv.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HierarchyError(f"{at}.name must be a non-empty string")
        x = lv.get("intensity")
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not 0.0 <= x <= 1.0:
            raise HierarchyError(f"{at}.intensity must be a number in [0, 1], not {x!r}")
        params = lv.get("params", {})
        if not isinstance(params, dict):
            raise HierarchyError(f"{at}.params must be a table")
        for k, v in params.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise HierarchyError(f"{at}.params.{k} must be a finite number, not {v!r}")
            if k in PARAMS[scene]:
                lo, hi, _ = PARAMS[scene][k]
                if not lo <= v <= hi:
                    raise HierarchyError(f"{at}.params.{k} must be in [{lo:g}, {hi:g}], not {v!r}")
        for k in PARAMS[scene]:
            if k not in params:
                raise HierarchyError(f"{at}.params.{k} is missing: a {scene} level needs "
                                     f"{', '.join(PARAMS[scene])}")
        if keys is None:
            keys = set(params)
        elif set(params) != keys:
            missing = sorted(keys ^ set(params))
            raise HierarchyError(f"{at}.params must name the same parameters as level[0]; differs in {missing}")
        levels.append(Level(name.strip(), float(x), {k: float(v) for k, v in params.items()}))
    for i in range(1, len(levels)):
        if levels[i].intensity <= levels[i - 1].intensity:
            raise HierarchyError(f"{where}: level[{i}].intensity must be above level[{i-1}]'s")
    if levels[0].intensity != 0.0:
        raise HierarchyError(f"{where}: level[0].intensity is {levels[0].intensity:g}: the first level must be at "
                             "intensity 0 and the last at 1")
    if levels[-1].intensity != 1.0:
        raise HierarchyError(f"{where}: level[{len(levels) - 1}].intensity is {levels[-1].intensity:g}: the first "
                             "level must be at intensity 0 and the last at 1")
    name = data.get("name", scene)
    if not isinstance(name, str):
        raise HierarchyError(f"{where}: field 'name' must be a string, not {name!r}")
    rates = {k: d for k, (_, _, d) in PARAMS[scene].items()}
    raw_rates = data.get("rates", {})
    if not isinstance(raw_rates, dict):
        raise HierarchyError(f"{where}: field 'rates' must be a table")
    for k, v in raw_rates.items():
        if k not in keys:
            raise HierarchyError(f"{where}: rates.{k} names no parameter of the levels")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and v > 0):
            raise HierarchyError(f"{where}: rates.{k} must be a positive number, not {v!r}")
        rates[k] = float(v)
    return Hierarchy(scene, name, tuple(levels), where, rates)
