"""What every scene shares: it receives its parent NodePath, a task manager and a clock.

A scene builds its geometry in ``build()`` (called once from ``__init__``, never at import),
follows a target intensity through its hierarchy with rate-limited parameters, animates in a
task it adds to the task manager it was given (per-frame work scaled by the clock's dt), and
measures the patient's behaviour from the head's pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scenes.audio import NullAudio
from scenes.hierarchy import Hierarchy
from scenes.names import EVENTS  # noqa: F401  (re-exported)
from scenes.smooth import ParamSmoother


@dataclass(frozen=True)
class Viewpoint:
    """Where the patient's body stands (feet), which way it faces, and the sway of the view."""

    pos: tuple[float, float, float]
    heading: float = 0.0
    roll: float = 0.0
    #: a comfortable default gaze (heading, pitch) for snapshots and offscreen runs
    look: tuple[float, float] = (0.0, 0.0)


class Scene:
    name = "scene"
    eye_height = 1.65
    clear_color = (0.75, 0.84, 0.93, 1.0)

    def __init__(self, parent, task_mgr, clock, hierarchy: Hierarchy | None = None, *,
                 audio=None, seed: int = 0, sort: int = 0):
        from panda3d.core import NodePath  # noqa: F401 — scenes need Panda3D; fail here if missing

        self.parent = parent
        self.task_mgr = task_mgr
        self.clock = clock
        self.hierarchy = hierarchy
        self.audio = audio if audio is not None else NullAudio()
        self.seed = seed
        self.root = parent.attachNewNode(self.name)
        self.t = 0.0
        self.intensity = 0.0
        self.events: list[tuple[float, str]] = []  # (time, kind) of injected events
        self.active = True
        p0 = hierarchy.params_at(0.0) if hierarchy is not None else {}
        self.smoother = ParamSmoother(p0, hierarchy.rates if hierarchy is not None else {})
        self.build()
        self.apply(self.smoother.current, 0.0)
        self._task = task_mgr.add(self._tick, f"scene-{self.name}-{id(self)}", sort=sort)

    # ------------------------------------------------------------------ to override
    def build(self) -> None:
        """Create the geometry under ``self.root`` (pure builders, then one node per material)."""

    def apply(self, params: dict[str, float], dt: float) -> None:
        """Show the (already smoothed) parameters and animate by ``dt`` seconds."""

    def viewpoint(self) -> Viewpoint:
        return Viewpoint((0.0, 0.0, 0.0))

    def measure(self, head_pos, head_hpr, dt: float) -> dict:
        """Behaviour signals from the head's world position (x, y, z) and (heading, pitch, roll)."""
        return {}

    def on_event(self, kind: str) -> bool:
        """React to an injected event; False if this scene has nothing for it."""
        return False

    # ------------------------------------------------------------------ driving
    @property
    def params(self) -> dict[str, float]:
        return self.smoother.current

    def set_intensity(self, x: float, instant: bool = False) -> None:
        x = min(1.0, max(0.0, float(x))) if math.isfinite(x) else self.intensity
        self.intensity = x
        if self.hierarchy is not None:
            self.smoother.set_target(self.hierarchy.params_at(x))
        if instant:
            self.smoother.snap()
            self.settle()
            self.apply(self.smoother.current, 0.0)

    def settle(self) -> None:
        """After an instant change: place moving things where they would be (nobody sees it)."""

    def inject(self, kind: str) -> bool:
        if kind not in EVENTS:
            raise ValueError(f"unknown scene event {kind!r}: one of {', '.join(EVENTS)}")
        self.events.append((self.t, kind))
        return self.on_event(kind)

    def step(self, dt: float) -> None:
        """Advance by ``dt`` seconds: smooth the parameters towards the target and animate."""
        dt = max(0.0, float(dt))
        self.t += dt
        self.apply(self.smoother.step(dt), dt)

    def _tick(self, task):
        if self.active:
            self.step(self.clock.getDt())
        return task.cont

    def show(self) -> None:
        self.active = True
        self.root.show()

    def hide(self) -> None:
        self.active = False
        self.root.hide()

    def destroy(self) -> None:
        self.task_mgr.remove(self._task)
        self.root.removeNode()


def lights(root, sun_hpr=(-35, -50, 0), sun=(0.9, 0.86, 0.78), ambient=(0.42, 0.44, 0.5)):
    """A sun and sky light on ``root`` (fixed-function lighting: cheap on any GPU)."""
    from panda3d.core import AmbientLight, DirectionalLight

    a = root.attachNewNode(AmbientLight("ambient"))
    a.node().setColor((*ambient, 1))
    d = root.attachNewNode(DirectionalLight("sun"))
    d.node().setColor((*sun, 1))
    d.setHpr(*sun_hpr)
    root.setLight(a)
    root.setLight(d)
    return a, d


def fog(root, color, density: float):
    from panda3d.core import Fog

    f = Fog("haze")
    f.setColor(*color[:3])
    f.setExpDensity(density)
    root.setFog(f)
    return f


def sky(root, radius, horizon, zenith, ground):
    """A sky dome drawn first, unlit and unfogged."""
    from scenes.geometry import sky_dome, to_geom_node

    np_ = root.attachNewNode(to_geom_node("sky", *sky_dome(radius, horizon, zenith, ground)))
    np_.setLightOff(1)
    np_.setFogOff(1)
    np_.setBin("background", 0)
    np_.setDepthWrite(False)
    np_.setDepthTest(False)
    np_.setTextureOff(1)
    return np_


def head_direction(h: float, p: float) -> tuple[float, float, float]:
    """Unit gaze vector for Panda3D heading/pitch in degrees (y forward, z up)."""
    hr, pr = math.radians(h), math.radians(p)
    return (-math.sin(hr) * math.cos(pr), math.cos(hr) * math.cos(pr), math.sin(pr))
