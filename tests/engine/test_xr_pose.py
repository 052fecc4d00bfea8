"""Located OpenXR views → the rig's head pose (engine/xr.py head_pose, frame_stats): axes,
recentring, eye offsets in the head's frame, and frame statistics in the runtime's timing."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import pytest

pytest.importorskip("panda3d")

from engine.render.xr import frame_stats, head_pose  # noqa: E402

IPD = 0.064
FOV = NS(angle_left=math.radians(-45), angle_right=math.radians(40), angle_down=math.radians(-50),
         angle_up=math.radians(45))


def views(yaw_deg: float, head=(0.0, 0.0, 0.0)):
    """Two eyes of a head at ``head`` (OpenXR axes) turned ``yaw_deg`` to the left about +y."""
    a = math.radians(yaw_deg)
    q = NS(x=0.0, y=math.sin(a / 2), z=0.0, w=math.cos(a / 2))
    right = (math.cos(a), 0.0, -math.sin(a))  # the head's +x in OpenXR axes after the turn
    out = []
    for sign in (-1, 1):
        p = NS(x=head[0] + sign * IPD / 2 * right[0], y=head[1], z=head[2] + sign * IPD / 2 * right[2])
        out.append(NS(pose=NS(position=p, orientation=q), fov=FOV))
    return out


class Headset:
    def __init__(self):
        self._recenter_pending = True
        self._recenter_at = None
        self.eye_height = 1.65
        self.last_head = None


def test_first_frame_recentres_heading_and_place_and_raises_to_eye_height():
    hs = Headset()
    p = head_pose(views(30.0, head=(0.4, 0.1, -0.2)), hs)
    assert p.hpr == pytest.approx((0.0, 0.0, 0.0), abs=1e-4)
    assert p.pos == pytest.approx((0.0, 0.0, 1.65 + 0.1), abs=1e-6)
    assert [e.offset for e in p.eyes] == [pytest.approx((-IPD / 2, 0, 0), abs=1e-6),
                                          pytest.approx((IPD / 2, 0, 0), abs=1e-6)]
    assert p.eyes[0].fov == pytest.approx((-45.0, 40.0, -50.0, 45.0))


def test_after_recentring_head_turns_and_steps_are_relative_to_the_patient():
    hs = Headset()
    head_pose(views(30.0), hs)
    # 10° further left, and 0.1 m along the runtime's -z (which was 30° right of the patient's forward)
    p = head_pose(views(40.0, head=(0.0, 0.0, -0.1)), hs)
    assert p.hpr[0] == pytest.approx(10.0, abs=1e-4)
    assert p.pos[:2] == pytest.approx((0.1 * math.sin(math.radians(30)), 0.1 * math.cos(math.radians(30))),
                                      abs=1e-6)
    # eye offsets stay in the head's own frame, whatever the heading
    assert p.eyes[1].offset == pytest.approx((IPD / 2, 0, 0), abs=1e-6)


def test_recenter_request_takes_the_current_heading_as_forward():
    hs = Headset()
    head_pose(views(0.0), hs)
    assert head_pose(views(25.0), hs).hpr[0] == pytest.approx(25.0, abs=1e-4)
    hs._recenter_pending = True  # XrHeadset.recenter() / the runtime's reference-space change
    assert head_pose(views(25.0), hs).hpr[0] == pytest.approx(0.0, abs=1e-4)


def test_frame_stats_count_missed_display_periods():
    period = 16_666_667
    t = [0, 1, 2, 4, 5, 6, 9]  # in periods: late once by one period, once by two
    s = frame_stats([k * period for k in t], period, rendered=7)
    assert s["frames"] == 7 and s["median_ms"] == pytest.approx(16.667, abs=1e-3)
    assert s["missed_periods"] == 3 and s["over_2x_median"] == 1 and s["max_ms"] == pytest.approx(50.0, abs=1e-3)
    assert s["rate_hz"] == pytest.approx(60.0, abs=0.01)
    assert frame_stats([], 0) == {"frames": 0, "rendered": 0, "skipped": 0, "period_ms": None}
