"""Heights: a balcony, ledge or glass walkway on a building over a city.

The patient stands on a platform that projects from their building's facade (the plane y = 0)
towards +y, its floor at z = 0. The street and the city lie ``height_m`` below, so a change of
height moves the city node and stretches the facade — no geometry is rebuilt. Depth cues:
window rows (one per 3.2 m floor, on every building), cars, people, trees and lamp posts of
known size, the texture gradient of the facades, and haze with distance.

Parameters (see scenes/hierarchies/heights.toml): ``height_m``, ``railing`` (1 = a full glass
balustrade, 0.5 = a low rail, 0 = none), ``floor_transparency`` (0 = concrete, 1 = clear glass),
``edge_distance_m`` (toes to the open edge), ``wind``.
"""

from __future__ import annotations

import math

import numpy as np

from scenes import geometry as g
from scenes.base import Scene, Viewpoint, fog, head_direction, lights, sky

PLATFORM_W = 4.0  # across (x)
PLATFORM_L = 3.2  # out from the facade (y)
FLOOR_H = 3.2  # one storey
BAY_W = 3.5  # one window bay
RAIL_H = 1.1
HORIZON = (0.80, 0.86, 0.92)


def city_arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The city around the street below, street level at z = 0 (a pure function of the seed)."""
    rng = np.random.default_rng(seed)
    m = g.Mesh()
    # fixed-function fog is computed per vertex: big flat things are tiled so that it stays right
    ground(m, (0.42, 0.47, 0.40), -0.3)
    asphalt, walk, line = (0.30, 0.30, 0.32), (0.70, 0.69, 0.66), (0.95, 0.95, 0.9)
    # the main street in front of the building: pavement, road with a dashed centre line, pavement
    for x in np.arange(-600, 600, 50.0):
        m.box((x + 25, 2.0, 0.0), (50, 4.0, 0.3), walk)
        m.box((x + 25, 10.0, -0.1), (50, 12.0, 0.2), asphalt)
        m.box((x + 25, 18.0, 0.0), (50, 4.0, 0.3), walk)
    for x in np.arange(-600, 600, 6.0):
        m.box((x, 10.0, 0.01), (3.0, 0.15, 0.02), line)
    for x in np.arange(-600, 600, 25.0):  # zebra crossings now and then
        if rng.random() < 0.15:
            for k in range(8):
                m.box((x + k * 0.9, 10.0, 0.01), (0.5, 11.0, 0.02), line)
    # trees and lamp posts along both pavements, standing people for scale
    for y in (2.8, 17.2):
        for x in np.arange(-300, 300, 9.0) + rng.uniform(-1, 1):
            m.box((x, y, 1.2), (0.25, 0.25, 2.4), (0.35, 0.25, 0.18))
            m.add(*g.cone((x, y, 1.8), 1.6, 4.2 + rng.uniform(-0.5, 1.0), (0.22, 0.45, 0.20), 7))
        for x in np.arange(-300, 300, 22.0) + 4:
            m.box((x, y + (0.6 if y < 10 else -0.6), 3.0), (0.14, 0.14, 6.0), (0.25, 0.27, 0.3))
            m.box((x, y + (1.1 if y < 10 else -1.1), 6.0), (0.3, 1.2, 0.15), (0.25, 0.27, 0.3))
        for x in rng.uniform(-120, 120, 40):
            _person(m, (x, y + rng.uniform(-1.2, 1.2), 0.15), rng)
    # parked cars on the far kerb
    for x in np.arange(-300, 300, 7.5):
        if rng.random() < 0.5:
            _car(m, (x + rng.uniform(-1, 1), 15.0, 0.0), rng, along_x=True)
    # city blocks beyond the street; cross streets every 60 m, parallel streets every 50 m
    for bx in np.arange(-420, 420, 60.0):
        for by in np.arange(20.0, 720.0, 50.0):
            m.box((bx + 30, by + 25, -0.1), (10, 50, 0.2), asphalt)  # cross street
            m.box((bx, by + 45, -0.1), (60, 10, 0.2), asphalt)  # parallel street
            x0, x1, y0, y1 = bx - 25, bx + 25, by + 1, by + 40
            if abs(bx) < 1 and by == 20.0:  # a small park right across the street
                m.box(((x0 + x1) / 2, (y0 + y1) / 2, -0.1), (x1 - x0, y1 - y0, 0.2), (0.35, 0.58, 0.30))
                for _ in range(26):
                    tx, ty = rng.uniform(x0 + 3, x1 - 3), rng.uniform(y0 + 3, y1 - 3)
                    m.box((tx, ty, 1.0), (0.3, 0.3, 2.0), (0.35, 0.25, 0.18))
                    m.add(*g.cone((tx, ty, 1.5), rng.uniform(1.8, 3.0), rng.uniform(4, 7), (0.20, 0.42, 0.2), 7))
                for k in range(6):
                    _person(m, (rng.uniform(x0, x1), y0 + 20 + k, 0.0), rng)
                continue
            near = by < 80
            _block(m, rng, x0, x1, y0, y1, (8, 22) if near else (12, 48), tall=0.0 if near else 0.08)
    # neighbours of the patient's building along the same street (seen when looking sideways)
    for side in (-1, 1):
        x = side * 22.0
        while abs(x) < 420:
            w = rng.uniform(14, 30)
            h = rng.uniform(15, 70)
            _building(m, rng, (x + side * w / 2, -14.0), (w - 1.0, 24.0), h)
            x += side * w
    return m.arrays()


def ground(m, color, z, tile: float = 50.0, near: float = 800.0, far: float = 3000.0) -> None:
    """A ground plane: tiles near the middle, four big quads around them."""
    for x in np.arange(-near, near, tile):
        for y in np.arange(-near, near, tile):
            m.add(*g.quad([(x, y, z), (x + tile, y, z), (x + tile, y + tile, z), (x, y + tile, z)], color))
    for (x0, y0, x1, y1) in ((-far, -far, far, -near), (-far, near, far, far), (-far, -near, -near, near),
                             (near, -near, far, near)):
        m.add(*g.quad([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)], color))


def _block(m, rng, x0, x1, y0, y1, hrange, tall):
    nx = int(rng.integers(1, 3))
    ny = int(rng.integers(1, 3))
    ws = np.diff(np.sort(np.r_[x0, rng.uniform(x0 + 12, x1 - 12, nx - 1), x1]))
    hs = np.diff(np.sort(np.r_[y0, rng.uniform(y0 + 12, y1 - 12, ny - 1), y1]))
    x = x0
    for w in ws:
        y = y0
        for d in hs:
            h = rng.uniform(*hrange)
            if rng.random() < tall:
                h = rng.uniform(60, 130)
            _building(m, rng, (x + w / 2, y + d / 2), (w - 1.5, d - 1.5), h)
            y += d
        x += w


_WALLS = ((0.95, 0.90, 0.80), (0.85, 0.86, 0.88), (0.90, 0.70, 0.60), (0.75, 0.80, 0.88),
          (0.96, 0.93, 0.86), (0.80, 0.75, 0.70), (0.70, 0.76, 0.80))


def _building(m, rng, xy, size, h):
    col = _WALLS[int(rng.integers(len(_WALLS)))]
    col = tuple(min(1.0, c * rng.uniform(0.9, 1.1)) for c in col)
    m.box((xy[0], xy[1], h / 2), (size[0], size[1], h), col, uv_m=(BAY_W, FLOOR_H))
    roof = tuple(c * 0.6 for c in col)
    m.box((xy[0], xy[1], h + 0.3), (size[0] - 0.8, size[1] - 0.8, 0.6), roof)  # parapet & roof
    for _ in range(int(rng.integers(1, 3))):  # plant rooms on the roof
        m.box((xy[0] + rng.uniform(-size[0], size[0]) * 0.3, xy[1] + rng.uniform(-size[1], size[1]) * 0.3,
               h + 1.2), (rng.uniform(2, 5), rng.uniform(2, 5), 1.8), (0.6, 0.6, 0.62))


def _person(m, feet, rng):
    x, y, z = feet
    shirt = tuple(rng.uniform(0.1, 0.9, 3))
    m.box((x, y, z + 0.45), (0.3, 0.2, 0.9), (0.2, 0.2, 0.3))
    m.box((x, y, z + 1.2), (0.45, 0.25, 0.6), shirt)
    m.box((x, y, z + 1.62), (0.22, 0.22, 0.24), (0.85, 0.68, 0.55))


_CARS = ((0.75, 0.1, 0.1), (0.1, 0.2, 0.6), (0.9, 0.9, 0.92), (0.15, 0.15, 0.17), (0.85, 0.75, 0.2),
         (0.5, 0.55, 0.6))


def _car(m, pos, rng, along_x=True):
    x, y, z = pos
    c = _CARS[int(rng.integers(len(_CARS)))]
    L, W = 4.4, 1.8
    m.box((x, y, z + 0.55), (L, W, 0.75) if along_x else (W, L, 0.75), c)
    m.box((x - 0.2, y, z + 1.2), (2.2, W - 0.15, 0.6) if along_x else (W - 0.15, 2.2, 0.6),
          (0.25, 0.3, 0.35))


def traffic_arrays(seed: int, period: float, lane_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Cars in one lane, repeating every ``period`` metres over ±600 m (moved as one node)."""
    rng = np.random.default_rng(seed)
    m = g.Mesh()
    xs = np.sort(rng.uniform(0, period, 5))
    for rep in range(-3, 3):
        for x in xs:
            _car(m, (rep * period + x, lane_y, 0.0), rng)
    return m.arrays()


def facade_arrays(width: float = 40.0, depth: float = 24.0) -> tuple[np.ndarray, np.ndarray]:
    """The patient's own building below the platform: one storey-unit tall (z from −1 to 0),
    stretched to the height by the node's scale; texture v in storeys × (1 / height)."""
    m = g.Mesh()
    m.box((0, -depth / 2, -0.5), (width, depth, 1.0), (0.93, 0.90, 0.85), uv_m=(BAY_W, 1.0))
    return m.arrays()


def platform_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The slab (concrete or glass), its steel frame, the railing posts and its glass panes."""
    w, L = PLATFORM_W, PLATFORM_L
    slab = g.Mesh()
    slab.box((0, L / 2, -0.1), (w, L, 0.2), (0.78, 0.77, 0.74))
    frame = g.Mesh()
    steel = (0.35, 0.37, 0.40)
    frame.box((0, L - 0.04, -0.1), (w, 0.08, 0.22), steel)
    for x in (-w / 2 + 0.04, w / 2 - 0.04, -w / 6, w / 6):
        frame.box((x, L / 2, -0.1), (0.08 if abs(x) > 1 else 0.05, L, 0.21), steel)
    for y in np.arange(0.8, L, 0.8):
        frame.box((0, y, -0.1), (w, 0.05, 0.21), steel)
    posts = g.Mesh()
    glass = g.Mesh()
    for x in np.linspace(-w / 2, w / 2, 5):
        posts.box((x, L - 0.05, 0.5), (0.06, 0.06, 1.0), steel)
    for y in np.linspace(0.3, L - 0.05, 4):
        for x in (-w / 2, w / 2):
            posts.box((x, y, 0.5), (0.06, 0.06, 1.0), steel)
    posts.box((0, L - 0.05, 1.0), (w + 0.08, 0.08, 0.06), steel)  # hand rail
    for x in (-w / 2, w / 2):
        posts.box((x, L / 2, 1.0), (0.08, L, 0.06), steel)
    glass.box((0, L - 0.05, 0.48), (w, 0.02, 0.9), (0.75, 0.88, 0.95, 0.28))
    for x in (-w / 2, w / 2):
        glass.box((x, L / 2, 0.48), (0.02, L, 0.9), (0.75, 0.88, 0.95, 0.28))
    return {"slab": slab.arrays(), "frame": frame.arrays(), "posts": posts.arrays(), "glass": glass.arrays()}


class HeightsScene(Scene):
    name = "heights"
    clear_color = (*HORIZON, 1.0)

    def build(self) -> None:
        from panda3d.core import TextureStage, TransparencyAttrib

        r = self.root
        lights(r)
        fog(r, HORIZON, 0.0016)
        self.sky = sky(r, 2500, HORIZON, (0.42, 0.62, 0.88), (0.5, 0.55, 0.5))
        self.tex = g.make_texture("facade", g.facade_pixels())
        r.setTexture(self.tex)
        self.city = r.attachNewNode("city")
        self.city.attachNewNode(g.to_geom_node("city", *city_arrays(self.seed)))
        self.lanes = []
        for k, (y, speed) in enumerate(((7.0, 11.0), (13.0, -9.0))):
            node = self.city.attachNewNode(g.to_geom_node(f"traffic{k}", *traffic_arrays(self.seed + k, 200, y)))
            self.lanes.append((node, speed))
        self.facade = r.attachNewNode(g.to_geom_node("facade", *facade_arrays()))
        self.facade_stage = TextureStage.getDefault()
        parts = platform_arrays()
        self.platform = r.attachNewNode("platform")
        self.slab = self.platform.attachNewNode(g.to_geom_node("slab", *parts["slab"]))
        self.slab.setTransparency(TransparencyAttrib.M_alpha)
        self.slab.setDepthWrite(False)
        self.slab.setBin("transparent", 10)
        self.frame = self.platform.attachNewNode(g.to_geom_node("frame", *parts["frame"]))
        self.railing = self.platform.attachNewNode("railing")
        self.railing.attachNewNode(g.to_geom_node("posts", *parts["posts"]))
        rg = self.railing.attachNewNode(g.to_geom_node("railglass", *parts["glass"]))
        rg.setTransparency(TransparencyAttrib.M_alpha)
        rg.setDepthWrite(False)
        self.gust = 0.0  # 0..1, decays
        self._h = None
        self.look_down = None
        self.audio.loop("wind", 0.0)
        self.audio.loop("city", 0.0)

    # ------------------------------------------------------------------ per frame
    def apply(self, p: dict[str, float], dt: float) -> None:
        h = max(0.0, p["height_m"])
        if h != self._h:
            self._h = h
            self.city.setZ(-h)
            self.facade.setSz(max(h, 1e-3))
            self.facade.setTexScale(self.facade_stage, 1.0, max(h, 1e-3) / FLOOR_H)
            self.facade.setTexOffset(self.facade_stage, 0.0, 0.3)
        for node, speed in self.lanes:
            node.setX((node.getX() + speed * dt) % 200.0)
        t = p["floor_transparency"]
        self.slab.setColorScale(1 - 0.25 * t, 1 - 0.1 * t, 1.0, 1.0 - 0.85 * t)
        rail = p["railing"]
        if rail < 0.02:
            self.railing.hide()
        else:
            self.railing.show()
            self.railing.setSz(rail)
        self.gust = max(0.0, self.gust - dt / 3.0)
        w = min(1.0, p["wind"] + self.gust)
        self.audio.set_volume("wind", 0.15 + 0.85 * w if h > 2 else 0.1 + 0.3 * w)
        self.audio.set_volume("city", 0.7 * math.exp(-h / 60.0) + 0.1)

    def viewpoint(self) -> Viewpoint:
        p = self.params
        w = min(1.0, p["wind"] + self.gust)
        t = self.t
        sway = w * (0.025 * math.sin(1.3 * t) + 0.012 * math.sin(3.1 * t + 1)) + self.gust * 0.05 * math.sin(7 * t)
        y = PLATFORM_L - max(0.0, p["edge_distance_m"])
        return Viewpoint((sway, y, 0.0), 0.0, roll=w * 0.6 * math.sin(0.9 * t) + self.gust * 1.5 * math.sin(5 * t),
                         look=(0.0, -14.0 - 36.0 * min(1.0, p["height_m"] / 40.0) - 22.0 * p["floor_transparency"]))

    def settle(self) -> None:
        self._h = None

    def on_event(self, kind: str) -> bool:
        if kind == "gust":
            self.gust = 1.0
            self.audio.play_once("gust", 0.9)
            return True
        if kind == "noise":
            self.audio.play_once("bang", 1.0)
            return True
        return False

    # ------------------------------------------------------------------ behaviour
    def edge_y(self) -> float:
        return PLATFORM_L

    def measure(self, head_pos, head_hpr, dt: float) -> dict:
        h, p, _ = head_hpr
        d = head_direction(h, p)
        down = p < -30.0
        out = d[1] > 0.3 and p < 10.0  # facing the open side, not up at the sky
        from scenes.smooth import ShareMeter

        if self.look_down is None:
            self.look_down, self.look_away = ShareMeter(), ShareMeter()
        return {
            "look_down": round(self.look_down.update(down, dt), 4),
            "look_away": round(self.look_away.update(not (down or out), dt), 4),
            "edge_distance_m": round(max(0.0, self.edge_y() - head_pos[1]), 3),
            "height_m": round(self.params["height_m"], 2),
        }
