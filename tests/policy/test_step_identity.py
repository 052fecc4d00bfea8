"""One model, one session step: the sim:// sensor in a live headless session, the gymnasium env
and the evaluator give identical trajectories for the same seed and controller.

The live core runs policy.step.SessionStep with N = 1 and the evaluator and env run it over
many lanes (policy/sim/batch_session.py), so this holds by construction; what is left to check
is the loop around it (tick times, the patient's seconds, SUDS timing), which live and batch
still write separately."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.gym_env import make_env, scene_table
from engine.session.live import Session, SessionConfig
from engine.store.files import SessionReader
from policy.controllers import register_controller
from policy.observation import COURSE_FIELDS
from policy.sim.env import ActionController
from policy.sim.evaluate import run_course
from policy.sim.patient.population import load_population

SEED = 5
MINUTES = 8.0
OBS_KEYS = ("t", "intensity", "target", "level", "time_at_level", "hr", "baseline", "hr_delta", "hr_slope",
            "rmssd", "quality", "lost", "since_valid", "suds", "suds_age", "suds_peak", "look_away",
            *COURSE_FIELDS)


def rule(v: np.ndarray) -> np.ndarray:
    """A fixed policy on observation vectors: up while the HR rise and SUDS are low, down when
    either is high; asks for SUDS whenever the last answer is over a minute old."""
    hr_rise, suds, suds_age = v[:, 3] * 20.0, v[:, 8] * 100.0, v[:, 9] * 600.0
    move = np.where((hr_rise > 9.0) | (suds >= 60.0), 0, np.where((hr_rise < 5.0) & (suds < 40.0), 2, 1))
    return np.stack([move, (suds_age >= 60.0).astype(int)], axis=1)


def rule_controller():
    return ActionController(rule, name="test-rule", ask_suds=True)


register_controller("test-rule", rule_controller)


def live(name: str, tmp_path, seed: int = SEED, scene: str = "heights") -> list[dict]:
    cfg = SessionConfig(scene=scene, sensor=f"sim://?seed={seed}", controller=name, display="none",
                        duration_s=MINUTES * 60, speed="max", sessions_dir=tmp_path, patient="p1", seed=seed)
    s = Session(cfg)
    s.run_headless()
    with SessionReader(s.path) as r:
        # controller decisions (not the shield's loss-of-signal holds), before the closing tick
        out = [d for d in r.records("decisions") if d["obs"] is not None and d["t"] < MINUTES * 60]
    for d in out:
        if isinstance(d["obs"], str):  # stored as JSON (floats round-trip exactly)
            d["obs"] = json.loads(d["obs"])
    return out


def evaluator(name: str, n: int = 3, others: tuple[str, ...] = (), scene: str = "heights") -> list[dict]:
    recs: list[dict] = []
    ctrls = [*others, name]

    def record(b, gi):
        if gi == len(ctrls) - 1:
            g = b.groups[gi]
            o = b.observation(g).row(0)
            recs.append({"obs": o, "target_after": float(b.target[g.lanes][0])})

    # the decision is recorded after apply, so the observation's target is the new one: keep the old
    def record_before(b, gi):
        record(b, gi)

    run_course(load_population(), scene_table(scene), ctrls, n, seed=SEED, sessions=1, minutes=MINUTES,
               record=record_before)
    return recs


def _same_obs(a: dict, b: dict) -> None:
    for k in OBS_KEYS:
        x, y = a[k], b[k]
        if k == "target":
            continue  # the live log records the observation before the decision, the hook after
        assert x == y, (k, a["t"], x, y)


@pytest.mark.parametrize("name, scene", [("test-rule", "heights"), ("suds", "heights"), ("hr-band", "heights"),
                                         ("test-rule", "crowds")])
def test_live_session_and_evaluator_identical(name, scene, tmp_path):
    lv = live(name, tmp_path, scene=scene)
    ev = evaluator(name, others=("ladder",) if name == "suds" else (), scene=scene)
    assert len(lv) == len(ev) == int(MINUTES * 60 / 5) - 1
    moved = 0
    for a, b in zip(lv, ev, strict=True):
        _same_obs(a["obs"], b["obs"])
        assert a["target_after"] == b["target_after"], (a["t"], a["target_after"], b["target_after"])
        moved += a["target_after"] != a["target_before"]
    assert moved >= 2  # the trajectory is not trivially flat
    assert max(d["obs"]["hr"] or 0 for d in lv) > 0
    if name != "hr-band":  # these ask for SUDS: answers took part
        assert any(d["obs"]["suds"] is not None for d in lv)


def test_env_identical_to_live_session(tmp_path):
    lv = live("test-rule", tmp_path)
    env = make_env("heights", sessions=1, minutes=MINUTES, ask_suds=True)
    obs, info = env.reset(seed=SEED)
    assert info["patient_seed"] == SEED
    course = env.unwrapped.course
    rows = []
    for _ in range(len(lv)):
        o = course.last_obs.row(0)
        act = rule(obs[None, :])[0]
        obs, r, term, trunc, info = env.step(act)
        rows.append((o, float(course.b.target[0]) if not term else None))
        if term:
            break
    assert len(rows) == len(lv)
    for a, (o, tgt) in zip(lv, rows, strict=True):
        _same_obs(a["obs"], o)
        if tgt is not None:
            assert a["target_after"] == tgt
    assert term  # a one-session course ends with the session
    assert "bat_steps" in info


def test_other_seed_differs(tmp_path):
    a = live("test-rule", tmp_path / "a", seed=SEED)
    b = live("test-rule", tmp_path / "b", seed=SEED + 1)
    assert [d["obs"]["hr"] for d in a] != [d["obs"]["hr"] for d in b]


# ------------------------------------------------------------------------------ a course of sessions
COURSE = 3


def live_course(name: str, tmp_path, n: int = COURSE) -> list[list[dict]]:
    """``n`` live sessions of the same patient in a row: each starts where the course rule says
    and ``sim://`` continues the same virtual patient."""
    return [live(name, tmp_path) for _ in range(n)]


def evaluator_course(name: str, n: int = COURSE) -> list[list[dict]]:
    recs: list[list[dict]] = [[] for _ in range(n)]

    def record(b, gi):
        g = b.groups[gi]
        recs[b.session].append({"obs": b.observation(g).row(0), "target_after": float(b.target[g.lanes][0])})

    run_course(load_population(), scene_table("heights"), [name], 1, seed=SEED, sessions=n, minutes=MINUTES,
               record=record)
    return recs


@pytest.mark.parametrize("name", ["test-rule", "suds"])
def test_course_sessions_identical(name, tmp_path):
    lv, ev = live_course(name, tmp_path), evaluator_course(name)
    index = []
    for f in tmp_path.glob("*.session"):  # (ids sort by the second they started: several per second here)
        with SessionReader(f) as r:
            index.append(r.meta["course_session"])
    assert sorted(index) == list(range(1, COURSE + 1))
    for k in range(1, COURSE):  # sessions 2 and 3
        assert len(lv[k]) == len(ev[k]) == int(MINUTES * 60 / 5) - 1
        assert lv[k][0]["obs"]["intensity"] > 0.0  # the rule moved the start off level 0
        for a, b in zip(lv[k], ev[k], strict=True):
            _same_obs(a["obs"], b["obs"])
            assert a["target_after"] == b["target_after"], (k, a["t"], a["target_after"], b["target_after"])
    # the virtual patient carried over: session 2 is not session 1 again from another level
    assert [d["obs"]["hr"] for d in lv[1]] != [d["obs"]["hr"] for d in lv[0]]
    # the controllers saw the course: index, what the session before reached, minutes so far
    for k in range(COURSE):
        o = lv[k][0]["obs"]
        assert o["course_session"] == k + 1 and o["course_minutes"] == pytest.approx(k * MINUTES)
        assert (o["prev_highest_level"] is None) == (k == 0)
        assert (o["prev_peak_hr_rise"] is None) == (k == 0)
    if name == "suds":  # it asks early: the return of fear was measured in sessions 2 and 3
        assert all(any(d["obs"]["return_of_fear"] is not None for d in lv[k]) for k in (1, 2))
