"""Calm: a neutral, safe place for pauses — a quiet shore at a soft sky, nothing to fear."""

from __future__ import annotations

import numpy as np

from scenes import geometry as g
from scenes.base import Scene, Viewpoint, fog, lights, sky
from scenes.heights import ground

HORIZON = (0.93, 0.88, 0.82)


def shore_arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = g.Mesh()
    ground(m, (0.93, 0.86, 0.70), -0.02, tile=20.0, near=200.0, far=2000.0)  # sand
    for x in np.arange(-200, 200, 20.0):  # the sea, from 12 m out
        for y in np.arange(12, 400, 20.0):
            m.add(*g.quad([(x, y, 0.01), (x + 20, y, 0.01), (x + 20, y + 20, 0.01), (x, y + 20, 0.01)],
                          (0.45, 0.68, 0.78)))
    for _ in range(9):  # soft distant hills across the bay
        x = rng.uniform(-400, 400)
        m.add(*g.cone((x, rng.uniform(500, 700), 0), rng.uniform(80, 160), rng.uniform(30, 70),
                      (0.62, 0.72, 0.62), 12))
    for x, y in ((-6, 4), (-8, 6), (7, 5)):  # a few smooth stones and grasses on the sand
        m.box((x, y, 0.15), (0.9, 0.6, 0.3), (0.7, 0.68, 0.64))
        m.add(*g.cone((x - 1.2, y + 0.5, 0), 0.4, 0.9, (0.55, 0.65, 0.4), 6))
    return m.arrays()


class CalmScene(Scene):
    name = "calm"
    clear_color = (*HORIZON, 1.0)

    def build(self) -> None:
        r = self.root
        lights(r, sun_hpr=(10, -25, 0), sun=(0.85, 0.75, 0.65), ambient=(0.55, 0.52, 0.55))
        fog(r, HORIZON, 0.0012)
        self.sky = sky(r, 2000, HORIZON, (0.55, 0.68, 0.86), (0.8, 0.75, 0.65))
        r.setTexture(g.make_texture("facade", g.facade_pixels()))
        r.attachNewNode(g.to_geom_node("shore", *shore_arrays(self.seed)))
        self.audio.loop("waves", 0.0)

    def viewpoint(self) -> Viewpoint:
        return Viewpoint((0.0, 0.0, 0.0), 0.0, look=(0.0, -4.0))

    def show(self) -> None:
        super().show()
        self.audio.set_volume("waves", 0.35)

    def hide(self) -> None:
        super().hide()
        self.audio.set_volume("waves", 0.0)
