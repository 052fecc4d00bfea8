"""Stereo per-eye rendering for the headset: two offscreen eye buffers beneath one head.

A pose source gives the head pose and each eye's offset and field of view (OpenXR reports
these per frame as ``XrView``s; the thin layer in engine/xr.py would be one such source). The
rig renders each eye into its own texture; a test drives it offscreen with a stand-in source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EyeView:
    offset: tuple[float, float, float]  # metres from the head centre (x right)
    fov: tuple[float, float, float, float]  # left, right, down, up half-angles in degrees (left/down negative)


@dataclass(frozen=True)
class HeadPose:
    pos: tuple[float, float, float]  # relative to the body, metres
    hpr: tuple[float, float, float]  # degrees
    eyes: tuple[EyeView, EyeView]


class StandInPose:
    """A scripted head for tests and demos: a slow turn, IPD 64 mm, 90° symmetric-ish eyes."""

    def __init__(self, ipd: float = 0.064, turn_deg: float = 30.0, period_s: float = 8.0):
        self.ipd, self.turn, self.period = ipd, turn_deg, period_s

    def pose(self, t: float) -> HeadPose:
        h = self.turn * math.sin(2 * math.pi * t / self.period)
        half = self.ipd / 2
        return HeadPose((0.0, 0.0, 1.65), (h, -10.0, 0.0),
                        (EyeView((-half, 0, 0), (-50.0, 40.0, -45.0, 45.0)),
                         EyeView((half, 0, 0), (-40.0, 50.0, -45.0, 45.0))))


class StereoRig:
    def __init__(self, host, pose_source, size=(512, 512), to_ram: bool = True):
        from panda3d.core import (
            Camera,
            FrameBufferProperties,
            GraphicsOutput,
            GraphicsPipe,
            PerspectiveLens,
            Texture,
            WindowProperties,
        )

        self.host, self.source = host, pose_source
        self.eyes = []
        fbp = FrameBufferProperties()
        fbp.setRgbColor(True)
        fbp.setRgbaBits(8, 8, 8, 8)
        fbp.setDepthBits(24)
        for name in ("left", "right"):
            buf = host.engine.makeOutput(host.pipe, f"eye-{name}", -2, fbp, WindowProperties.size(*size),
                                         GraphicsPipe.BF_refuse_window, host.output.getGsg(), host.output)
            if buf is None:
                raise RuntimeError(f"cannot open the {name} eye buffer")
            tex = Texture(f"eye-{name}")
            buf.addRenderTexture(tex, GraphicsOutput.RTM_copy_ram if to_ram else GraphicsOutput.RTM_bind_or_copy)
            buf.setClearColorActive(True)
            buf.setClearColor(host.output.getClearColor())
            lens = PerspectiveLens()
            lens.setNearFar(0.1, 6000.0)
            cam = host.head.attachNewNode(Camera(f"eye-{name}", lens))
            buf.makeDisplayRegion().setCamera(cam)
            self.eyes.append((buf, tex, cam, lens))

    def apply(self, t: float) -> HeadPose | None:
        p = self.source.pose(t)
        if p is None:  # the runtime has no frame for us yet
            return None
        self.host.head.setPosHpr(*p.pos, *p.hpr)
        for (buf, _, cam, lens), eye in zip(self.eyes, p.eyes, strict=True):
            cam.setPos(*eye.offset)
            lf, r, d, u = (math.tan(math.radians(a)) for a in eye.fov)
            # an asymmetric frustum: film size and offset in units of the focal length (1)
            lens.setFocalLength(1.0)
            lens.setFilmSize(r - lf, u - d)
            lens.setFilmOffset((r + lf) / 2, (u + d) / 2)
            buf.setClearColor(self.host.output.getClearColor())
        return p

    def render(self, t: float) -> None:
        self.apply(t)

    def images(self):
        from panda3d.core import PNMImage

        out = []
        for _, tex, _, _ in self.eyes:
            img = PNMImage()
            tex.store(img)
            out.append(img)
        return out

    def close(self) -> None:
        for buf, _, cam, _ in self.eyes:
            cam.removeNode()
            self.host.engine.removeWindow(buf)
        self.eyes = []
