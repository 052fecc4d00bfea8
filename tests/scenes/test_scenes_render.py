"""Scenes rendered offscreen by Panda3D (EGL / Mesa llvmpipe) with a private, hand-stepped task
manager and a clock in non-real-time mode: every frame advances exactly 1/30 s."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("panda3d")

from direct.task.Task import TaskManager  # noqa: E402
from panda3d.core import ClockObject, PNMImage, StringStream  # noqa: E402

from scenes.audio import NullAudio  # noqa: E402
from scenes.crowds import MAX_PEOPLE, STREET_HALF, figure_template, pose_vertices  # noqa: E402
from scenes.hierarchy import load_hierarchy  # noqa: E402
from scenes.host import Host, InputFrame  # noqa: E402
from scenes.stage import Stage, make_scene  # noqa: E402

DT = 1.0 / 30.0


@pytest.fixture(scope="module")
def host():
    h = Host("offscreen", (320, 240), fov=90.0)
    yield h
    h.close()


@pytest.fixture
def rig(host):
    clock = ClockObject(ClockObject.M_non_real_time)
    clock.setFrameRate(1.0 / DT)
    tm = TaskManager()
    tm.setClock(clock)
    made = []

    def frame(scene=None, n=1):
        for _ in range(n):
            clock.tick()
            tm.step()
            sc = scene or made[0]
            vp = sc.viewpoint()
            host.body.setPos(*vp.pos)
            host.head.setPosHpr(0, 0, sc.eye_height, vp.look[0], vp.look[1], 0)
            host.render_frame()

    def build(name, **kw):
        sc = make_scene(name, host.render, tm, clock, None if name == "calm" else load_hierarchy(name), **kw)
        made.append(sc)
        host.set_clear_color(sc.clear_color)
        return sc

    yield build, frame, clock, tm
    for sc in made:
        sc.destroy()


def pixels(png: bytes) -> np.ndarray:
    img = PNMImage()
    assert img.read(StringStream(png), "x.png")
    return np.array([[img.getXel(x, y) for x in range(0, img.getXSize(), 4)] for y in range(0, img.getYSize(), 4)])


@pytest.mark.parametrize("name", ["heights", "crowds"])
def test_snapshots_at_0_half_and_1_differ(host, rig, name):
    build, frame, _, _ = rig
    sc = build(name)
    shots = []
    for x in (0.0, 0.5, 1.0):
        sc.set_intensity(x, instant=True)
        frame(n=3)
        shots.append(pixels(host.png()))
    for a, b in ((0, 1), (1, 2), (0, 2)):
        changed = (np.abs(shots[a] - shots[b]).max(axis=-1) > 0.1).mean()
        assert changed > 0.015, (a, b, changed)  # share of pixels that clearly changed (people are small)
    assert host.stats()["draw_calls"] <= 60


def test_heights_params_are_rate_limited_no_popping(rig):
    build, frame, _, _ = rig
    sc = build("heights")
    sc.set_intensity(0.0, instant=True)
    sc.set_intensity(1.0)
    heights = []
    for _ in range(30):
        frame()
        heights.append(sc.params["height_m"])
    steps = np.diff([1.5, *heights])
    rate = sc.hierarchy.rates["height_m"]
    assert steps.max() <= rate * DT + 1e-9
    assert heights[-1] == pytest.approx(1.5 + 30 * rate * DT)
    assert sc.city.getZ() == pytest.approx(-heights[-1])  # the street really went down


def test_crowd_arrivals_walk_in_from_the_far_ends(rig):
    build, frame, _, _ = rig
    sc = build("crowds")
    sc.set_intensity(0.0, instant=True)
    frame()
    assert (sc.state == 0).all()
    sc.set_intensity(1.0)
    frame(n=10)
    on = sc.state > 0
    assert 0 < on.sum() < 72  # count ramps up at the people rate, not all at once
    assert (np.abs(sc.x[on]) > STREET_HALF - 2.0).all()  # nobody appeared in the middle of the view


def test_crowd_behaviour_signals(rig):
    build, frame, _, _ = rig
    sc = build("crowds")
    sc.set_intensity(1.0, instant=True)
    frame(n=2)
    at = sc.measure((0, 0, 1.65), (0, -6, 0), DT)
    assert at["look_at_people"] == 1.0 and at["look_away"] == 0.0
    assert 0.5 < at["nearest_person_m"] < 3.0
    away = None
    for _ in range(300):  # ten seconds looking up at the sky
        away = sc.measure((0, 0, 1.65), (0, 80, 0), DT)
    assert away["look_away"] == pytest.approx(1 - math.exp(-10 / 30), abs=0.02)


def test_heights_behaviour_signals(rig):
    build, frame, _, _ = rig
    sc = build("heights")
    sc.set_intensity(1.0, instant=True)
    frame()
    b = sc.measure((0, 3.0, 1.65), (0, -60, 0), DT)
    assert b["look_down"] == 1.0 and b["edge_distance_m"] == pytest.approx(0.2)


def test_events_are_injected_and_unknown_ones_refused(rig):
    build, frame, _, _ = rig
    audio = NullAudio()
    sc = build("heights", audio=audio)
    sc.set_intensity(0.5, instant=True)
    assert sc.inject("gust") and sc.gust == 1.0 and "gust" in audio.played
    roll = [abs(sc.viewpoint().roll) for _ in range(1) for _ in [frame()]]
    assert sc.gust < 1.0 and roll[0] >= 0
    assert sc.inject("surge") is False  # nothing to surge on a balcony; recorded all the same
    with pytest.raises(ValueError, match="unknown scene event"):
        sc.inject("earthquake")


def test_ambient_sound_scales_with_intensity(rig):
    build, frame, _, _ = rig
    audio = NullAudio()
    sc = build("crowds", audio=audio)
    sc.set_intensity(0.0, instant=True)
    frame()
    quiet = audio.volumes["murmur"]
    sc.set_intensity(1.0, instant=True)
    frame()
    assert audio.volumes["murmur"] > quiet + 0.8


def test_pause_fades_to_calm_within_two_seconds(host, rig):
    _, _, clock, tm = rig
    stage = Stage("heights", load_hierarchy("heights"), host.render, host.render2d, tm, clock)
    try:
        stage.set_paused(True)
        covers = []
        for _ in range(int(2.0 / DT)):
            clock.tick()
            tm.step()
            covers.append(stage.cover)
        assert stage.showing == "calm" and stage.cover == 0.0
        assert max(covers) == 1.0  # it did fade through a full cover: no cut
        assert stage.calm.active and not stage.exposure.active
    finally:
        stage.destroy()


def test_pose_vertices_swings_limbs_and_turns_heads():
    tpl, _, parts, _ = figure_template()
    pos = np.zeros((2, 3), np.float32)
    still = pose_vertices(tpl, parts, pos, np.zeros(2), np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(still[0, :, :3], tpl[:, :3], atol=1e-6)  # identity pose = template
    moved = pose_vertices(tpl, parts, pos + [[5, 2, 0], [0, 0, 0]], np.array([math.pi / 2, 0]),
                          np.array([0, 0.5]), np.array([0, 1.0]))
    # person 0 turned 90° left and moved: a point at +y ends up at −x
    head_front = tpl[:, 1].argmax()
    np.testing.assert_allclose(moved[0, head_front, 0], 5 - tpl[head_front, 1], atol=1e-5)
    legs = parts >= 2
    assert not np.allclose(moved[1, legs, :3], tpl[legs, :3])  # swung
    torso = parts == 0
    np.testing.assert_allclose(moved[1, torso, :3], tpl[torso, :3], atol=1e-6)  # the torso stays
    assert MAX_PEOPLE * len(tpl) < 30000  # the whole crowd is one modest vertex table


def test_input_frame_is_empty_offscreen(host):
    assert host.poll_input() == InputFrame()
