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
same parameters. Scene parameters between two levels are interpolated linearly.
"""

from __future__ import annotations

import bisect
import tomllib
from dataclasses import dataclass
from pathlib import Path

SCENES = ("heights", "crowds")
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

    @property
    def intensities(self) -> list[float]:
        return [lv.intensity for lv in self.levels]

    def level_index(self, intensity: float) -> int:
        """The highest level whose intensity is at or below ``intensity`` (with tolerance)."""
        i = bisect.bisect_right(self.intensities, intensity + 1e-9) - 1
        return max(0, min(i, len(self.levels) - 1))

    def level_name(self, intensity: float) -> str:
        return self.levels[self.level_index(intensity)].name

    def params_at(self, intensity: float) -> dict[str, float]:
        x = min(1.0, max(0.0, intensity))
        i = self.level_index(x)
        lo = self.levels[i]
        if i + 1 >= len(self.levels):
            return dict(lo.params)
        hi = self.levels[i + 1]
        w = (x - lo.intensity) / max(hi.intensity - lo.intensity, 1e-9)
        return {k: lo.params[k] + w * (hi.params[k] - lo.params[k]) for k in lo.params}


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
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise HierarchyError(f"{at}.params.{k} must be a number, not {v!r}")
        if keys is None:
            keys = set(params)
        elif set(params) != keys:
            missing = sorted(keys ^ set(params))
            raise HierarchyError(f"{at}.params must name the same parameters as level[0]; differs in {missing}")
        levels.append(Level(name.strip(), float(x), {k: float(v) for k, v in params.items()}))
    for i in range(1, len(levels)):
        if levels[i].intensity <= levels[i - 1].intensity:
            raise HierarchyError(f"{where}: level[{i}].intensity must be above level[{i-1}]'s")
    if levels[0].intensity != 0.0 or levels[-1].intensity != 1.0:
        raise HierarchyError(f"{where}: the first level must be at intensity 0 and the last at 1")
    return Hierarchy(scene, str(data.get("name", scene)), tuple(levels), where)
