"""A small Panda3D host without ShowBase: no builtins, no global task manager, one per use.

It owns a graphics engine and one output (an offscreen buffer, or a desktop window), the 3D
scene root ``render`` with the patient's ``body`` → ``head`` → camera, and a 2D overlay
``aspect2d`` for text. Scenes are given ``host.render``; the caller owns the task manager and
the clock and calls :meth:`Host.render_frame` once a frame.

Offscreen rendering works without any display through EGL (``p3headlessgl``, e.g. Mesa
llvmpipe); a window needs a display (X11; ``Xvfb`` for tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MODES = ("offscreen", "window")


class HostError(RuntimeError):
    """The graphics output could not be opened; the message says what to do."""


@dataclass
class InputFrame:
    """The keyboard and mouse since the last frame: keys newly pressed, keys held, mouse motion
    (pixels) while the left button is held."""

    pressed: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)
    mouse_dx: float = 0.0
    mouse_dy: float = 0.0


KEYS = tuple("0123456789pqwasd") + ("enter", "backspace", "space", "arrow_up", "arrow_down",
                                    "arrow_left", "arrow_right", "escape")


def _prc_once() -> None:
    from panda3d.core import ConfigVariableString, loadPrcFileData

    if ConfigVariableString("exposure-host-configured", "").getValue():
        return
    loadPrcFileData("exposure-host", "\n".join([
        "exposure-host-configured 1",
        "notify-level-egldisplay error",  # EGL's 'no default display' warning when headless
        "notify-level-glxdisplay error",
        "sync-video 0",
        "textures-power-2 none",
        "framebuffer-multisample 0",
    ]))


def make_pipe(mode: str):
    """The graphics pipe: for offscreen, EGL (no display needed) unless a display is there."""
    from panda3d.core import GraphicsPipeSelection

    _prc_once()
    sel = GraphicsPipeSelection.getGlobalPtr()
    order = ["pandagl"] if mode == "window" else (
        ["pandagl", "p3headlessgl"] if os.environ.get("DISPLAY") else ["p3headlessgl", "pandagl"])
    for mod in order:
        pipe = sel.makeModulePipe(mod)
        if pipe is not None and pipe.isValid():
            return pipe
    if mode == "window":
        raise HostError("cannot open a window: no display (is $DISPLAY set?); use --display offscreen")
    raise HostError("cannot render offscreen: no OpenGL (install Mesa: libegl1 libgl1-mesa-dri)")


class Host:
    def __init__(self, mode: str = "offscreen", size: tuple[int, int] = (960, 540), *,
                 fov: float = 80.0, title: str = "Exposure", pipe=None, engine=None):
        from panda3d.core import (
            Camera,
            FrameBufferProperties,
            GraphicsEngine,
            GraphicsPipe,
            NodePath,
            OrthographicLens,
            PerspectiveLens,
            WindowProperties,
        )

        if mode not in MODES:
            raise HostError(f"unknown display mode {mode!r}: {' or '.join(MODES)}")
        self.mode = mode
        self.pipe = pipe or make_pipe(mode)
        self.engine = engine or GraphicsEngine(self.pipe)
        fbp = FrameBufferProperties()
        fbp.setRgbColor(True)
        fbp.setRgbaBits(8, 8, 8, 8)
        fbp.setDepthBits(24)
        wp = WindowProperties.size(*size)
        if mode == "window":
            wp.setTitle(title)
            flags = GraphicsPipe.BF_require_window
        else:
            flags = GraphicsPipe.BF_refuse_window
        self.output = self.engine.makeOutput(self.pipe, f"exposure-{mode}", 0, fbp, wp, flags)
        if self.output is None:
            raise HostError(f"cannot open the {mode} output ({self.pipe.getInterfaceName()}): "
                            "no usable OpenGL context")
        self.engine.openWindows()
        self.size = size
        self.render = NodePath("render")
        self.body = self.render.attachNewNode("body")
        self.head = self.body.attachNewNode("head")
        self.lens = PerspectiveLens()
        self.lens.setNearFar(0.1, 6000.0)
        self.set_fov(fov)
        self.camera = self.head.attachNewNode(Camera("camera", self.lens))
        self.region = self.output.makeDisplayRegion()
        self.region.setCamera(self.camera)
        self.output.setClearColorActive(True)
        self.output.setClearColor((0.5, 0.5, 0.5, 1))
        # 2D overlay: x and y in [-aspect, aspect] × [-1, 1]
        self.render2d = NodePath("render2d")
        self.render2d.setDepthTest(False)
        self.render2d.setDepthWrite(False)
        self.render2d.setTwoSided(True)
        self.aspect2d = self.render2d.attachNewNode("aspect2d")
        self.aspect2d.setScale(1.0 / self.aspect, 1, 1)
        lens2 = OrthographicLens()
        lens2.setFilmSize(2, 2)
        lens2.setNearFar(-1000, 1000)
        cam2d = self.render2d.attachNewNode(Camera("camera2d", lens2))
        self.region2d = self.output.makeDisplayRegion()
        self.region2d.setSort(20)
        self.region2d.setCamera(cam2d)
        self._input = None
        if mode == "window":
            self._setup_input()

    @property
    def aspect(self) -> float:
        return self.size[0] / self.size[1]

    def set_fov(self, fov: float) -> None:
        self.lens.setFov(fov)
        self.lens.setAspectRatio(self.size[0] / self.size[1])

    def set_clear_color(self, rgba) -> None:
        self.output.setClearColor(tuple(rgba))

    def render_frame(self) -> None:
        self.engine.renderFrame()

    @property
    def closed(self) -> bool:
        """True once the user closed the window."""
        if self.mode != "window":
            return False
        return not self.output.isValid() or self.output.isClosed()

    # ------------------------------------------------------------------ pictures and figures
    def screenshot(self):
        """The last rendered frame as a PNMImage."""
        from panda3d.core import PNMImage

        tex = self.output.getScreenshot()
        img = PNMImage()
        if tex is None or not tex.store(img):
            raise HostError("could not read back the rendered frame")
        return img

    def png(self, width: int | None = None) -> bytes:
        """The last frame as PNG bytes, scaled to ``width`` pixels across if given."""
        from panda3d.core import PNMImage, StringStream

        img = self.screenshot()
        if width and width < img.getXSize():
            h = max(1, round(img.getYSize() * width / img.getXSize()))
            small = PNMImage(width, h)
            small.gaussianFilterFrom(1.0, img)
            img = small
        ss = StringStream()
        if not img.write(ss, "frame.png"):
            raise HostError("could not encode the frame as PNG")
        return bytes(ss.getData())

    def stats(self) -> dict:
        """What one frame submits: geoms (one draw call each — counted over the visible scene
        graph, before frustum culling, so an upper bound), triangles and nodes."""
        out = {"draw_calls": 0, "triangles": 0, "nodes": 0}
        for root in (self.render, self.render2d):
            _count(root, out)
        return out

    # ------------------------------------------------------------------ input (window mode)
    def _setup_input(self) -> None:
        from panda3d.core import DataGraphTraverser, MouseAndKeyboard, MouseWatcher, NodePath

        self._data_root = NodePath("data")
        mk = self._data_root.attachNewNode(MouseAndKeyboard(self.output, 0, "mouse-keyboard"))
        self._watcher = MouseWatcher("watcher")
        mk.attachNewNode(self._watcher)
        self._traverser = DataGraphTraverser()
        self._buttons = _button_map()
        self._down: set[str] = set()
        self._last_pointer = None
        self._input = True

    def poll_input(self) -> InputFrame:
        """Keys and mouse since the last call (always empty offscreen)."""
        if not self._input:
            return InputFrame()
        from panda3d.core import MouseButton

        self._traverser.traverse(self._data_root.node())
        w = self._watcher
        held = {name for name, b in self._buttons.items() if w.isButtonDown(b)}
        pressed = held - self._down
        self._down = held
        frame = InputFrame(pressed=pressed, held=held)
        ptr = self.output.getPointer(0)
        if w.isButtonDown(MouseButton.one()) and ptr.getInWindow():
            if self._last_pointer is not None:
                frame.mouse_dx = ptr.getX() - self._last_pointer[0]
                frame.mouse_dy = ptr.getY() - self._last_pointer[1]
            self._last_pointer = (ptr.getX(), ptr.getY())
        else:
            self._last_pointer = None
        return frame

    def close(self) -> None:
        self.render.removeNode()
        self.render2d.removeNode()
        self.engine.removeAllWindows()


def _button_map() -> dict:
    from panda3d.core import KeyboardButton as K

    m = {c: K.asciiKey(c) for c in "0123456789pqwasd"}
    m.update({"enter": K.enter(), "backspace": K.backspace(), "space": K.space(), "arrow_up": K.up(),
              "arrow_down": K.down(), "arrow_left": K.left(), "arrow_right": K.right(),
              "escape": K.escape()})
    return m


def _text_node_type():
    from panda3d.core import TextNode

    return TextNode.getClassType()


def _count(np_, out: dict) -> None:
    if np_.isHidden():
        return
    node = np_.node()
    out["nodes"] += 1
    if node.isGeomNode():
        for i in range(node.getNumGeoms()):
            geom = node.getGeom(i)
            out["draw_calls"] += 1
            out["triangles"] += sum(geom.getPrimitive(k).getNumFaces() for k in range(geom.getNumPrimitives()))
    elif node.isOfType(_text_node_type()):
        out["draw_calls"] += 1  # a text node draws its glyphs as one geom (one font page)
    for child in np_.getChildren():
        _count(child, out)
