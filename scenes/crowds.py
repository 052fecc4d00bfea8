"""Crowds: a pedestrian street with people walking past, some of them looking at the patient.

The patient stands at the origin with a shop front behind them, facing across the street (+y).
People walk along the street (±x) in lanes from ``closest_m`` out to ``closest_m`` + 10 m; the
share ``looking_share`` of them turn their heads towards the patient, and the most attentive
half of those stop and stand facing them. People arrive and leave by walking in from, or out
to, the far ends of the street (out of view, in the haze): nobody pops in or out of view.

The whole crowd is ONE Geom (one draw call): every figure's vertices — torso, head with eyes,
two legs and two arms swinging about hip and shoulder — are written each frame by numpy from a
template, so it stays cheap whatever the count.
"""

from __future__ import annotations

import math

import numpy as np

from scenes import geometry as g
from scenes.base import Scene, Viewpoint, fog, head_direction, lights, sky
from scenes.heights import BAY_W, FLOOR_H, ground

MAX_PEOPLE = 80
STREET_HALF = 60.0  # people enter and leave at x = ±STREET_HALF
LANE_SPREAD = 10.0
HORIZON = (0.83, 0.86, 0.90)

# body parts: 0 torso, 1 head, 2 left leg, 3 right leg, 4 left arm, 5 right arm
PIVOTS = np.array([[0, 0, 0], [0, 0, 1.50], [-0.11, 0, 0.88], [0.11, 0, 0.88], [-0.29, 0, 1.45],
                   [0.29, 0, 1.45]], np.float32)


def figure_template() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One person, facing +y, feet at the origin: vertices, triangles, part of each vertex, and
    which colour slot (0 shirt, 1 trousers, 2 skin, 3 hair, 4 eyes/shoes) each vertex takes."""
    m = g.Mesh()
    parts, slots = [], []

    def add(part, slot, center, size, faces=(0, 1, 2, 3, 4)):  # no bottoms: never seen
        first = m.box(center, size, (1, 1, 1), faces=faces)
        n = m.n_vertices - first
        parts.extend([part] * n)
        slots.extend([slot] * n)

    add(0, 0, (0, 0, 1.17), (0.46, 0.24, 0.58))  # torso
    add(0, 1, (0, 0, 0.84), (0.40, 0.22, 0.14))  # hips
    add(1, 2, (0, 0, 1.62), (0.21, 0.22, 0.25))  # head
    add(1, 3, (0, -0.02, 1.76), (0.23, 0.24, 0.06))  # hair
    add(1, 4, (-0.05, 0.112, 1.64), (0.045, 0.01, 0.035), (1,))  # eyes: on the face (+y)
    add(1, 4, (0.05, 0.112, 1.64), (0.045, 0.01, 0.035), (1,))
    for part, x in ((2, -0.11), (3, 0.11)):
        add(part, 1, (x, 0, 0.47), (0.15, 0.16, 0.82))  # leg
        add(part, 4, (x, 0.04, 0.04), (0.15, 0.26, 0.08))  # shoe
    for part, x in ((4, -0.29), (5, 0.29)):
        add(part, 0, (x, 0, 1.22), (0.11, 0.12, 0.5))  # sleeve
        add(part, 2, (x, 0, 0.92), (0.09, 0.10, 0.14))  # hand
    v, t = m.arrays()
    return v, t, np.array(parts, np.int8), np.array(slots, np.int8)


def crowd_state(n: int, seed: int) -> dict[str, np.ndarray]:
    """Fixed per-person traits: lane, direction, pace, attentiveness rank, where they would stop."""
    rng = np.random.default_rng(seed)
    return {
        "lane": rng.permutation(np.linspace(0.0, 1.0, n)),
        "dir": np.where(rng.random(n) < 0.5, -1.0, 1.0),
        "pace": rng.uniform(0.8, 1.2, n),
        "rank": rng.permutation(np.linspace(0.0, 1.0, n, endpoint=False)),
        "stop": rng.uniform(-0.75, 0.75, n),
        "phase0": rng.uniform(0, 2 * math.pi, n),
    }


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def part_slices(parts: np.ndarray) -> list[tuple[int, slice]]:
    """The template's vertices come in one contiguous run per body part."""
    out, start = [], 0
    for i in range(1, len(parts) + 1):
        if i == len(parts) or parts[i] != parts[start]:
            out.append((int(parts[start]), slice(start, i)))
            start = i
    return out


def pose_vertices(tpl: np.ndarray, parts: np.ndarray, pos: np.ndarray, yaw: np.ndarray,
                  swing: np.ndarray, head_yaw: np.ndarray) -> np.ndarray:
    """All figures' vertex positions and normals, ``(n, V, 6)``: limbs swung about hip and shoulder
    by ``swing`` (radians, legs opposite arms), heads turned by ``head_yaw``, the body turned by
    ``yaw`` (radians, 0 = facing +y) and stood at ``pos`` ``(n, 3)``. A pure function: one 3×3
    matrix per person and part, applied to that part's run of template vertices."""
    n = len(pos)
    out = np.empty((n, len(tpl), 6), np.float32)
    body = _rot_z(np.asarray(yaw, np.float32))
    swing = np.asarray(swing, np.float32)
    limb = {2: swing, 3: -swing, 4: -0.7 * swing, 5: 0.7 * swing}
    for part, sl in part_slices(parts):
        if part in limb:
            m = body @ _rot_x(limb[part])
        elif part == 1:
            m = body @ _rot_z(np.asarray(head_yaw, np.float32))
        else:
            m = body
        piv = PIVOTS[part]
        local = tpl[sl, 0:3] - piv
        out[:, sl, 0:3] = np.einsum("nij,vj->nvi", m, local) + (body @ piv)[:, None, :] + pos[:, None, :]
        out[:, sl, 3:6] = np.einsum("nij,vj->nvi", m, tpl[sl, 3:6])
    return out


def street_arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The street: paving, a shop front behind the patient, buildings across, lamps, planters."""
    rng = np.random.default_rng(seed)
    m = g.Mesh()
    ground(m, (0.62, 0.61, 0.58), -0.05, tile=10.0, near=150.0, far=2000.0)
    for x in np.arange(-150, 150, 10.0):  # a paler strip of paving down the middle
        m.box((x + 5, 8.0, -0.04), (10, 4.0, 0.02), (0.74, 0.72, 0.68))
    walls = ((0.92, 0.86, 0.76), (0.80, 0.70, 0.62), (0.86, 0.88, 0.90), (0.78, 0.82, 0.74), (0.95, 0.92, 0.84))
    for y0, side in ((-2.0, -1), (26.0, 1)):
        x = -150.0
        while x < 150:
            w = rng.uniform(8, 16)
            h = rng.uniform(10, 22)
            col = walls[int(rng.integers(len(walls)))]
            cy = y0 + side * 6.0
            m.box((x + w / 2, cy, h / 2), (w - 0.3, 12.0, h), col, uv_m=(BAY_W, FLOOR_H))
            shop = tuple(rng.uniform(0.2, 0.8, 3))
            m.box((x + w / 2, y0 - side * 0.05, 1.6), (w - 1.2, 0.1, 2.6), (0.25, 0.3, 0.35))  # shop window
            m.box((x + w / 2, y0 - side * 0.4, 3.1), (w - 0.8, 0.8, 0.25), shop)  # awning
            x += w
    for x in np.arange(-137, 140, 14.0):
        for y in (2.5, 22.0):
            m.box((x, y, 2.5), (0.12, 0.12, 5.0), (0.2, 0.22, 0.25))  # lamp post
            m.box((x, y, 5.0), (0.35, 0.35, 0.3), (0.95, 0.93, 0.8))
            m.box((x + 7, y, 0.35), (1.2, 1.2, 0.7), (0.5, 0.48, 0.45))  # planter
            m.add(*g.cone((x + 7, y, 0.7), 0.9, 2.2, (0.25, 0.5, 0.22), 7))
    m.box((-3.5, 0.8, 0.45), (1.8, 0.5, 0.08), (0.45, 0.3, 0.2))  # a bench beside the patient
    for dx in (-0.8, 0.8):
        m.box((-3.5 + dx, 0.8, 0.2), (0.08, 0.45, 0.4), (0.2, 0.2, 0.2))
    return m.arrays()


_SHIRTS = np.array([(0.75, 0.2, 0.2), (0.2, 0.35, 0.7), (0.9, 0.85, 0.7), (0.2, 0.55, 0.35), (0.85, 0.6, 0.2),
                    (0.35, 0.35, 0.4), (0.95, 0.95, 0.95), (0.55, 0.25, 0.55), (0.15, 0.15, 0.18)], np.float32)
_TROUSERS = np.array([(0.15, 0.17, 0.25), (0.3, 0.3, 0.32), (0.45, 0.38, 0.3), (0.12, 0.12, 0.12),
                      (0.25, 0.3, 0.45)], np.float32)
_SKIN = np.array([(0.96, 0.80, 0.69), (0.87, 0.68, 0.52), (0.68, 0.49, 0.36), (0.45, 0.32, 0.24)], np.float32)
_HAIR = np.array([(0.1, 0.08, 0.06), (0.35, 0.22, 0.12), (0.75, 0.6, 0.35), (0.5, 0.5, 0.5)], np.float32)


class CrowdsScene(Scene):
    name = "crowds"
    clear_color = (*HORIZON, 1.0)

    def build(self) -> None:
        r = self.root
        lights(r, sun_hpr=(30, -55, 0))
        fog(r, HORIZON, 0.018)
        self.sky = sky(r, 2000, HORIZON, (0.45, 0.62, 0.85), (0.6, 0.6, 0.58))
        r.setTexture(g.make_texture("facade", g.facade_pixels()))
        self.street = r.attachNewNode(g.to_geom_node("street", *street_arrays(self.seed)))
        tpl, tris, parts, slots = figure_template()
        self.tpl, self.parts = tpl, parts
        n, V = MAX_PEOPLE, len(tpl)
        rng = np.random.default_rng(self.seed + 100)
        palette = np.stack([_SHIRTS[rng.integers(len(_SHIRTS), size=n)],
                            _TROUSERS[rng.integers(len(_TROUSERS), size=n)],
                            _SKIN[rng.integers(len(_SKIN), size=n)], _HAIR[rng.integers(len(_HAIR), size=n)],
                            np.full((n, 3), 0.08, np.float32)], 1)  # (n, 5, 3)
        self.verts = np.zeros((n, V, g.STRIDE), np.float32)
        self.verts[:, :, 6:9] = palette[:, slots]
        self.verts[:, :, 9] = 1.0
        self.verts[:, :, 10:12] = g.PLAIN_UV
        all_tris = (tris[None] + (np.arange(n) * V)[:, None, None]).reshape(-1, 3)
        self.people_node = g.to_geom_node("people", self.verts.reshape(-1, g.STRIDE), all_tris, dynamic=True)
        from panda3d.core import OmniBoundingVolume

        self.people_node.setBounds(OmniBoundingVolume())  # vertices move every frame: never culled
        self.people_node.setFinal(True)
        self.people = r.attachNewNode(self.people_node)
        self.people.setTextureOff(1)
        self.vdata = self.people_node.modifyGeom(0).modifyVertexData()
        self.traits = crowd_state(n, self.seed)
        self.x = np.zeros(n)
        self.state = np.zeros(n, np.int8)  # 0 off, 1 walking in the street, 2 leaving
        self.stand = np.zeros(n)  # 0 walking … 1 standing still facing the patient
        self.head = np.zeros(n)  # head turn (radians)
        self.phase = self.traits["phase0"].copy()
        self.surge = 0.0
        self.startle = 0.0
        self.look_at = None
        self._settle = True
        self.audio.loop("murmur", 0.0)
        self.audio.loop("city", 0.0)

    # ------------------------------------------------------------------ per frame
    def _lanes(self, p) -> np.ndarray:
        closest = p["closest_m"] * (1.0 - 0.5 * self.surge)
        return closest + self.traits["lane"] * LANE_SPREAD

    def settle(self) -> None:
        self._settle = True

    def apply(self, p: dict[str, float], dt: float) -> None:
        tr = self.traits
        n = MAX_PEOPLE
        count = min(n, int(round(p["people"] + 6 * self.surge)))
        want = np.arange(n) < count
        y = self._lanes(p)
        if self._settle:  # place everyone where they would be (before the first frame is seen)
            self._settle = False
            self.state[:] = np.where(want, 1, 0)
            self.x = np.linspace(-STREET_HALF * 0.9, STREET_HALF * 0.9, n)[np.argsort(tr["lane"] * 7.3 % 1)]
            watching = tr["rank"] < p["looking_share"]
            standing = watching & (tr["rank"] < 0.5 * p["looking_share"])
            self.stand = standing.astype(float)
            self.x = np.where(standing, tr["stop"] * (y + 1.0), self.x)
            self.head[:] = 0.0
        # arrivals walk in from the far end; departures walk out and are then switched off
        arrive = want & (self.state == 0)
        self.x[arrive] = -tr["dir"][arrive] * STREET_HALF
        self.state[arrive] = 1
        self.state[(~want) & (self.state == 1)] = 2
        self.state[want & (self.state == 2)] = 1
        on = self.state > 0
        watching = (tr["rank"] < p["looking_share"]) & (self.state == 1)
        wants_stand = watching & (tr["rank"] < 0.5 * p["looking_share"])
        at_stop = np.abs(self.x - tr["stop"] * (y + 1.0)) < 0.6
        target_stand = (wants_stand & (at_stop | (self.stand > 0.5))).astype(float)
        self.stand += np.clip(target_stand - self.stand, -dt * 1.5, dt * 1.5)
        speed = p["walk_speed"] * tr["pace"] * (1.0 + 0.6 * self.surge) * (1.0 - self.stand)
        self.x += tr["dir"] * speed * dt
        gone = (self.state == 2) & (np.abs(self.x) > STREET_HALF)
        self.state[gone] = 0
        wrap = (self.state == 1) & (np.abs(self.x) > STREET_HALF)  # walked out: come back round
        self.x[wrap] = -np.sign(self.x[wrap]) * STREET_HALF
        self.phase += speed * dt * 2.2
        # body yaw: along the street, or turning to face the patient when standing
        walk_yaw = np.where(tr["dir"] > 0, -math.pi / 2, math.pi / 2)
        to_patient = np.arctan2(self.x, -y)  # yaw that faces the origin from (x, y)
        yaw = walk_yaw + _wrap(to_patient - walk_yaw) * self.stand
        look = watching | (self.startle > 0)
        head_target = np.where(look, np.clip(_wrap(to_patient - yaw), -1.4, 1.4), 0.0)
        self.head += np.clip(head_target - self.head, -dt * 2.5, dt * 2.5)
        swing = 0.45 * np.minimum(1.0, speed / 0.8) * np.sin(self.phase)
        pos = np.stack([self.x, y, np.where(on, 0.0, -500.0)], -1)
        self.verts[:, :, 0:6] = pose_vertices(self.tpl, self.parts, pos, yaw, swing, self.head)
        g.write_vertices(self.vdata, self.verts.reshape(-1, g.STRIDE))
        self.surge = max(0.0, self.surge - dt / 6.0)
        self.startle = max(0.0, self.startle - dt)
        self.audio.set_volume("murmur", min(1.0, 0.05 + 0.95 * p["noise"] + 0.3 * self.surge))
        self.audio.set_volume("city", 0.2)
        self._pos, self._on = pos, on

    def viewpoint(self) -> Viewpoint:
        return Viewpoint((0.0, 0.0, 0.0), 0.0, look=(0.0, -6.0))

    def on_event(self, kind: str) -> bool:
        if kind == "surge":
            self.surge = 1.0
            return True
        if kind == "noise":
            self.startle = 2.5
            self.audio.play_once("bang", 1.0)
            return True
        if kind == "gust":
            self.audio.play_once("gust", 0.6)
            return True
        return False

    # ------------------------------------------------------------------ behaviour
    def nearest_person(self, head_pos) -> float:
        on = self._on
        if not on.any():
            return math.inf
        d = np.hypot(self._pos[on, 0] - head_pos[0], self._pos[on, 1] - head_pos[1])
        return float(d.min())

    def measure(self, head_pos, head_hpr, dt: float) -> dict:
        from scenes.smooth import ShareMeter

        if self.look_at is None:
            self.look_at, self.look_away = ShareMeter(), ShareMeter()
        gaze = np.array(head_direction(head_hpr[0], head_hpr[1]))
        on = self._on
        seen = False
        if on.any():
            rel = self._pos[on] + np.array([0, 0, 1.5]) - np.asarray(head_pos)
            dist = np.linalg.norm(rel, axis=1)
            cos = rel @ gaze / np.maximum(dist, 1e-6)
            seen = bool(np.any((dist < 25.0) & (cos > math.cos(math.radians(12)))))
        near = self.nearest_person(head_pos)
        return {
            "look_at_people": round(self.look_at.update(seen, dt), 4),
            "look_away": round(self.look_away.update(not seen, dt), 4),
            "nearest_person_m": None if not math.isfinite(near) else round(near, 3),
            "people": int(on.sum()),
        }


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi
