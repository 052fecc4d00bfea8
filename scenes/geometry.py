"""Pure geometry builders: numpy arrays in, one Panda3D ``GeomNode`` out.

Every builder returns plain arrays (vertices ``(n, 12)`` float32 rows of position, normal,
RGBA colour and texture coordinates; triangles ``(m, 3)`` uint32) so that shapes can be combined
into a single Geom — one draw call for a whole city or a whole crowd — and tested without a GPU.
Only :func:`to_geom_node` and :func:`write_vertices` touch Panda3D.
"""

from __future__ import annotations

import math

import numpy as np

STRIDE = 12  # x y z  nx ny nz  r g b a  u v
POS, NRM, COL, UV = slice(0, 3), slice(3, 6), slice(6, 10), slice(10, 12)

# the six faces of a unit box: normal, and the four corners (in -0.5..0.5 units), CCW from outside
_FACES = (
    ((0, -1, 0), ((-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1))),  # front (-y)
    ((0, 1, 0), ((1, 1, -1), (-1, 1, -1), (-1, 1, 1), (1, 1, 1))),  # back (+y)
    ((-1, 0, 0), ((-1, 1, -1), (-1, -1, -1), (-1, -1, 1), (-1, 1, 1))),  # left (-x)
    ((1, 0, 0), ((1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1))),  # right (+x)
    ((0, 0, 1), ((-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1))),  # top
    ((0, 0, -1), ((-1, 1, -1), (1, 1, -1), (1, -1, -1), (-1, -1, -1))),  # bottom
)
_BOX_CORNERS = np.array([c for _, cs in _FACES for c in cs], dtype=np.float32) * 0.5
_BOX_NORMALS = np.repeat(np.array([n for n, _ in _FACES], dtype=np.float32), 4, axis=0)
_QUAD_TRIS = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.uint32)
BOX_TRIS = np.concatenate([_QUAD_TRIS + 4 * i for i in range(6)])
BOX_VERTS = 24

# where the facade texture is plain wall: solid-coloured faces sample this texel
PLAIN_UV = (0.04, 0.04)


class Mesh:
    """Accumulates shapes; :meth:`arrays` concatenates them."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._t: list[np.ndarray] = []
        self._n = 0

    def add(self, verts: np.ndarray, tris: np.ndarray) -> int:
        """Append a shape; returns the index of its first vertex."""
        first = self._n
        self._v.append(np.asarray(verts, dtype=np.float32))
        self._t.append(np.asarray(tris, dtype=np.uint32) + first)
        self._n += len(verts)
        return first

    def box(self, center, size, color, *, uv_m: tuple[float, float] | None = None,
            faces: tuple[int, ...] | None = None) -> int:
        return self.add(*box(center, size, color, uv_m=uv_m, faces=faces))

    @property
    def n_vertices(self) -> int:
        return self._n

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._v:
            return np.zeros((0, STRIDE), np.float32), np.zeros((0, 3), np.uint32)
        return np.concatenate(self._v), np.concatenate(self._t)


def box(center, size, color, *, uv_m: tuple[float, float] | None = None,
        faces: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned box. ``uv_m`` = (metres per texture repeat across, up): the side faces get
    world-scaled texture coordinates (windows stay the same size on every building); top and
    bottom (and every face without ``uv_m``) sample the plain-wall texel."""
    c = np.asarray(center, dtype=np.float32)
    s = np.asarray(size, dtype=np.float32)
    v = np.zeros((BOX_VERTS, STRIDE), np.float32)
    v[:, POS] = _BOX_CORNERS * s + c
    v[:, NRM] = _BOX_NORMALS
    v[:, COL] = _rgba(color)
    v[:, UV] = PLAIN_UV
    if uv_m is not None:
        su, sv = uv_m
        p = v[:, POS]
        for f in range(4):  # side faces: u along the face, v up
            rows = slice(4 * f, 4 * f + 4)
            along = p[rows, 0] if f < 2 else p[rows, 1]
            v[rows, 10] = along / su
            v[rows, 11] = p[rows, 2] / sv
    if faces is None:
        return v, BOX_TRIS.copy()
    keep = np.concatenate([np.arange(4 * f, 4 * f + 4) for f in faces])
    return v[keep], np.concatenate([_QUAD_TRIS + 4 * i for i in range(len(faces))])


def quad(corners, color, normal=(0, 0, 1), uv=None) -> tuple[np.ndarray, np.ndarray]:
    """A flat quad from four corners given counter-clockwise as seen from its front."""
    v = np.zeros((4, STRIDE), np.float32)
    v[:, POS] = np.asarray(corners, dtype=np.float32)
    v[:, NRM] = normal
    v[:, COL] = _rgba(color)
    v[:, UV] = PLAIN_UV if uv is None else np.asarray(uv, dtype=np.float32)
    return v, _QUAD_TRIS.copy()


def cone(base_center, radius, height, color, segments: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A faceted cone (trees, hills): flat-shaded sides, no base."""
    cx, cy, cz = (float(x) for x in base_center)
    rows, tris = [], []
    for i in range(segments):
        a0 = 2 * math.pi * i / segments
        a1 = 2 * math.pi * (i + 1) / segments
        p0 = (cx + radius * math.cos(a0), cy + radius * math.sin(a0), cz)
        p1 = (cx + radius * math.cos(a1), cy + radius * math.sin(a1), cz)
        top = (cx, cy, cz + height)
        n = np.cross(np.subtract(p1, p0), np.subtract(top, p0))
        n = n / (np.linalg.norm(n) or 1.0)
        k = len(rows)
        for p in (p0, p1, top):
            rows.append([*p, *n, *_rgba(color), *PLAIN_UV])
        tris.append([k, k + 1, k + 2])
    return np.array(rows, np.float32), np.array(tris, np.uint32)


def sky_dome(radius: float, horizon, zenith, ground, segments: int = 24,
             rings: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """An inward-facing sphere coloured from ``ground`` (below) through ``horizon`` to ``zenith``."""
    rows, tris = [], []
    h, z, g = (np.array(_rgba(c)) for c in (horizon, zenith, ground))
    lats = np.linspace(-math.pi / 2, math.pi / 2, 2 * rings + 1)
    for la in lats:
        s = math.sin(la)
        col = h + (z - h) * (s ** 0.6) if s >= 0 else h + (g - h) * min(1.0, -s * 4)
        for j in range(segments + 1):
            lo = 2 * math.pi * j / segments
            p = (radius * math.cos(la) * math.cos(lo), radius * math.cos(la) * math.sin(lo), radius * s)
            rows.append([*p, 0, 0, 1, *col, *PLAIN_UV])
    w = segments + 1
    for i in range(len(lats) - 1):
        for j in range(segments):
            a, b, c, d = i * w + j, i * w + j + 1, (i + 1) * w + j + 1, (i + 1) * w + j
            tris += [[a, c, b], [a, d, c]]  # wound to face inwards
    return np.array(rows, np.float32), np.array(tris, np.uint32)


def _rgba(color) -> tuple[float, float, float, float]:
    c = tuple(float(x) for x in color)
    return c if len(c) == 4 else (*c, 1.0)


# ------------------------------------------------------------------------------ Panda3D side
_FORMAT = None


def vertex_format():
    """One interleaved array: position, normal, RGBA colour (float32), texture coordinates."""
    global _FORMAT
    if _FORMAT is None:
        from panda3d.core import Geom, GeomVertexArrayFormat, GeomVertexFormat, InternalName

        arr = GeomVertexArrayFormat()
        arr.addColumn(InternalName.getVertex(), 3, Geom.NT_float32, Geom.C_point)
        arr.addColumn(InternalName.getNormal(), 3, Geom.NT_float32, Geom.C_normal)
        arr.addColumn(InternalName.getColor(), 4, Geom.NT_float32, Geom.C_color)
        arr.addColumn(InternalName.getTexcoord(), 2, Geom.NT_float32, Geom.C_texcoord)
        _FORMAT = GeomVertexFormat.registerFormat(GeomVertexFormat(arr))
    return _FORMAT


def to_geom_node(name: str, verts: np.ndarray, tris: np.ndarray, dynamic: bool = False):
    """One GeomNode holding one Geom: one draw call."""
    from panda3d.core import Geom, GeomNode, GeomTriangles, GeomVertexData

    vd = GeomVertexData(name, vertex_format(), Geom.UH_dynamic if dynamic else Geom.UH_static)
    vd.uncleanSetNumRows(len(verts))
    write_vertices(vd, verts)
    prim = GeomTriangles(Geom.UH_static)
    prim.setIndexType(Geom.NT_uint32)
    idx = prim.modifyVertices()
    idx.uncleanSetNumRows(tris.size)
    np.frombuffer(memoryview(idx).cast("B"), dtype=np.uint32)[:] = tris.reshape(-1)
    geom = Geom(vd)
    geom.addPrimitive(prim)
    node = GeomNode(name)
    node.addGeom(geom)
    return node


def write_vertices(vdata, verts: np.ndarray) -> None:
    """Overwrite a vertex table's rows in place (animated combined geometry)."""
    arr = vdata.modifyArray(0)
    np.frombuffer(memoryview(arr).cast("B"), dtype=np.float32)[:] = np.ascontiguousarray(
        verts, dtype=np.float32).reshape(-1)


def make_texture(name: str, rgb: np.ndarray, mipmap: bool = True):
    """A Panda3D texture from an ``(h, w, 3)`` float array in [0, 1] (row 0 at the bottom)."""
    from panda3d.core import SamplerState, Texture

    h, w, _ = rgb.shape
    tex = Texture(name)
    tex.setup2dTexture(w, h, Texture.T_unsigned_byte, Texture.F_rgb8)
    bgr = (np.clip(rgb, 0, 1)[:, :, ::-1] * 255 + 0.5).astype(np.uint8)
    tex.setRamImage(bgr.tobytes())
    if mipmap:
        tex.setMinfilter(SamplerState.FT_linear_mipmap_linear)
        tex.setAnisotropicDegree(4)
    tex.setMagfilter(SamplerState.FT_linear)
    return tex


def facade_pixels(size: int = 64, wall=(0.82, 0.80, 0.76), window=(0.20, 0.28, 0.38),
                  frame=(0.55, 0.55, 0.55)) -> np.ndarray:
    """One bay of a facade: plain wall around a framed window. The texel at :data:`PLAIN_UV` is
    plain wall. Vertex colours tint it, so one texture serves every building."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = wall
    a, b = int(size * 0.22), int(size * 0.80)  # window from 22 % to 80 % across
    c, d = int(size * 0.30), int(size * 0.85)  # and from 30 % to 85 % up
    img[c - 2:d + 2, a - 2:b + 2] = frame
    img[c:d, a:b] = window
    # a little sky reflection: lighter towards the top of each pane
    grad = np.linspace(0.0, 0.18, d - c)[:, None, None]
    img[c:d, a:b] += grad
    return img


def paving_pixels(size: int = 64) -> np.ndarray:
    """Light paving stones with darker joints."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = (0.80, 0.79, 0.76)
    j = max(1, size // 32)
    for k in range(0, size, size // 4):
        img[k:k + j, :] = (0.55, 0.54, 0.52)
        img[:, k:k + j] = (0.55, 0.54, 0.52)
    img[: size // 32 * 3 + 1, : size // 32 * 3 + 1] = (0.80, 0.79, 0.76)  # plain texel at PLAIN_UV
    return img
