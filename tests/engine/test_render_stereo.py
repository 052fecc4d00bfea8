"""Stereo per-eye rendering beneath the OpenXR layer, offscreen, with a stand-in pose source."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("panda3d")

from direct.task.Task import TaskManager  # noqa: E402
from panda3d.core import ClockObject  # noqa: E402

from engine.render.stereo import StandInPose, StereoRig  # noqa: E402
from scenes.hierarchy import load_hierarchy  # noqa: E402
from scenes.host import Host  # noqa: E402
from scenes.stage import make_scene  # noqa: E402


def arr(img):
    return np.array([[img.getXel(x, y) for x in range(0, img.getXSize(), 4)] for y in range(0, img.getYSize(), 4)])


def test_each_eye_renders_its_own_view_and_follows_the_head():
    host = Host("offscreen", (64, 64))
    clock = ClockObject(ClockObject.M_non_real_time)
    clock.setFrameRate(30)
    tm = TaskManager()
    tm.setClock(clock)
    scene = make_scene("crowds", host.render, tm, clock, load_hierarchy("crowds"))
    scene.set_intensity(1.0, instant=True)
    host.set_clear_color(scene.clear_color)
    rig = StereoRig(host, StandInPose(), size=(128, 128))
    try:
        pose = rig.apply(0.0)
        assert pose.eyes[1].offset[0] - pose.eyes[0].offset[0] == pytest.approx(0.064)
        clock.tick()
        tm.step()
        host.render_frame()
        host.render_frame()
        left, right = (arr(i) for i in rig.images())
        assert left.shape == right.shape == (32, 32, 3)
        assert left.std() > 0.05 and right.std() > 0.05  # both eyes see the scene, not a blank
        assert np.abs(left - right).max(axis=-1).mean() > 0.01  # parallax and asymmetric frusta differ
        rig.apply(2.0)  # a quarter period later the head has turned 30°
        assert host.head.getH() == pytest.approx(30.0)
        host.render_frame()
        host.render_frame()
        turned = arr(rig.images()[0])
        assert np.abs(turned - left).max(axis=-1).mean() > 0.05
    finally:
        rig.close()
        scene.destroy()
        host.close()


def test_openxr_poses_map_to_panda_axes():
    import math
    from types import SimpleNamespace as NS

    from engine.render.xr import xr_to_panda_hpr, xr_to_panda_pos

    assert xr_to_panda_pos(NS(x=0.1, y=1.7, z=-2.0)) == (0.1, 2.0, 1.7)  # 2 m ahead, 1.7 m up
    s, c = math.sin(math.radians(45)), math.cos(math.radians(45))
    h, p, r = xr_to_panda_hpr(NS(x=0.0, y=s, z=0.0, w=c))  # 90° about OpenXR's up axis: a left turn
    assert (h, p, r) == pytest.approx((90.0, 0.0, 0.0), abs=1e-4)
    h, p, r = xr_to_panda_hpr(NS(x=math.sin(math.radians(15)), y=0.0, z=0.0, w=math.cos(math.radians(15))))
    assert (h, p, r) == pytest.approx((0.0, 30.0, 0.0), abs=1e-4)  # looking 30° up


def test_rig_skips_frames_the_runtime_has_not_given():
    host = Host("offscreen", (64, 64))

    class NoFrameYet:
        def pose(self, t):
            return None

    rig = StereoRig(host, NoFrameYet(), size=(32, 32))
    try:
        host.head.setH(12.0)
        assert rig.apply(0.0) is None and host.head.getH() == pytest.approx(12.0)
    finally:
        rig.close()
        host.close()
