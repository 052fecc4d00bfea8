"""The stage: the exposure scene and the calm place, with a fade between them (≤ 2 s in all).

Pausing fades to a soft colour, swaps to the calm scene at full cover, and fades back in;
resuming does the reverse. The stage also places the patient's body at the active scene's
viewpoint each frame.
"""

from __future__ import annotations

from scenes.audio import NullAudio
from scenes.base import Scene
from scenes.calm import CalmScene

FADE_S = 0.75  # each half of the fade: out, then in — 1.5 s in all
FADE_COLOR = (0.93, 0.90, 0.86)


def make_scene(name: str, parent, task_mgr, clock, hierarchy, **kw) -> Scene:
    if name == "heights":
        from scenes.heights import HeightsScene as cls
    elif name == "crowds":
        from scenes.crowds import CrowdsScene as cls
    elif name == "calm":
        cls = CalmScene
    else:
        raise ValueError(f"unknown scene {name!r}")
    return cls(parent, task_mgr, clock, hierarchy, **kw)


class Stage:
    def __init__(self, scene: str, hierarchy, render, overlay, task_mgr, clock, *, audio=None,
                 seed: int = 0, on_clear_color=None):
        from panda3d.core import CardMaker, TransparencyAttrib

        self.audio = audio if audio is not None else NullAudio()
        self.clock = clock
        self.exposure = make_scene(scene, render, task_mgr, clock, hierarchy, audio=self.audio, seed=seed)
        self.calm = CalmScene(render, task_mgr, clock, None, audio=self.audio, seed=seed)
        self.calm.hide()
        self.active: Scene = self.exposure
        self.on_clear_color = on_clear_color
        cm = CardMaker("fade")
        cm.setFrameFullscreenQuad()
        self.card = overlay.attachNewNode(cm.generate())
        self.card.setColor(*FADE_COLOR, 1.0)
        self.card.setTransparency(TransparencyAttrib.M_alpha)
        self.card.setBin("fixed", 0)
        self.paused = False
        self.cover = 0.0  # 0 clear … 1 fully covered
        self._set_cover(0.0)
        self._clear(self.active)
        self._task = task_mgr.add(self._tick, "stage", sort=10)
        self.task_mgr = task_mgr

    def set_paused(self, paused: bool) -> None:
        self.paused = bool(paused)

    @property
    def showing(self) -> str:
        return self.active.name

    @property
    def want(self) -> Scene:
        return self.calm if self.paused else self.exposure

    def step(self, dt: float) -> None:
        if self.active is not self.want:
            self.cover = min(1.0, self.cover + dt / FADE_S)
            if self.cover >= 1.0:
                self.active.hide()
                self.active = self.want
                self.active.show()
                self._clear(self.active)
        else:
            self.cover = max(0.0, self.cover - dt / FADE_S)
        self._set_cover(self.cover)

    def _tick(self, task):
        self.step(self.clock.getDt())
        return task.cont

    def _set_cover(self, c: float) -> None:
        if c <= 0.0:
            self.card.hide()
        else:
            self.card.show()
            self.card.setAlphaScale(c)

    def _clear(self, scene: Scene) -> None:
        if self.on_clear_color is not None:
            self.on_clear_color(scene.clear_color)

    def place(self, body, head_offset=(0.0, 0.0), look=None) -> None:
        """Put the patient's body at the active scene's viewpoint."""
        vp = self.active.viewpoint()
        body.setPos(vp.pos[0] + head_offset[0], vp.pos[1] + head_offset[1], vp.pos[2])
        body.setH(vp.heading)
        body.setR(vp.roll)

    def destroy(self) -> None:
        self.task_mgr.remove(self._task)
        self.exposure.destroy()
        self.calm.destroy()
        self.card.removeNode()
