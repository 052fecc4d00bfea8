"""policy/step.py: the session rules over N lanes, which the live core runs with N = 1."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.controllers import Proposal
from policy.observation import Observation
from policy.shield import SafetyShield
from policy.step import SessionStep
from scenes.hierarchy import load_hierarchy

HEIGHTS = load_hierarchy("heights")
TICK = 0.25
STATE = ("intensity", "target", "rate", "anchor_x", "anchor_t", "level", "level_since", "max_level", "suds_last",
         "suds_t", "suds_peak", "pending", "look", "last_feature_t")


class Scenario:
    """Inputs for one lane, drawn from its own generator (so a lane's inputs do not depend on
    how many lanes there are): readings with gaps and bad contact, decisions every few seconds
    with random proposals and SUDS questions, answers, and a therapist's change of target."""

    def __init__(self, seed: int, lane: int, seconds: int):
        rng = np.random.default_rng([seed, lane])
        self.has = rng.random(seconds + 1) < 0.8
        self.has[:int(rng.integers(0, 20))] = False  # a late start: loss of signal at first
        self.bpm = 60.0 + 50.0 * rng.random(seconds + 1)
        self.rr = np.where(rng.random((seconds + 1, 2)) < 0.7, 60000.0 / self.bpm[:, None], np.nan)
        self.contact = rng.integers(-1, 2, seconds + 1).astype(np.int8)
        self.interval = float(rng.choice([3.0, 5.0]))
        self.delta = rng.choice([-0.1, -0.05, 0.0, 0.05, 0.1, np.nan], 1000)
        self.ask = rng.random(1000) < 0.3
        self.suds = 5.0 * rng.integers(0, 21, 1000)
        self.therapist_t = float(rng.integers(10, seconds)) if rng.random() < 0.5 else -1.0
        self.therapist_x = float(rng.choice(HEIGHTS.intensities))
        self.start = float(rng.choice([0.0, 0.2, 0.46]))


def _run(scs: list[Scenario], lanes: list[int], seconds: int) -> tuple[SessionStep, list[list[Observation]]]:
    """Run the scenarios of ``lanes`` as one SessionStep; return it and each lane's observations."""
    n = len(lanes)
    sc = [scs[i] for i in lanes]
    s = SessionStep(HEIGHTS, n, start=np.array([c.start for c in sc]))
    shields = [SafetyShield() for _ in range(n)]
    for sh in shields:
        sh.reset(1)
    nxt = np.array([c.interval for c in sc])
    count = np.zeros(n, int)
    answers = np.zeros(n, int)
    seen: list[list[Observation]] = [[] for _ in range(n)]
    for i in range(1, int(seconds / TICK)):
        now = i * TICK
        s.advance(now)
        due = s.suds_due(now)
        if due.any():
            s.record_suds(now, np.array([c.suds[a] for c, a in zip(sc, answers, strict=True)]), due)
            answers += due
        for j, c in enumerate(sc):
            if c.therapist_t == now:
                s.set_target([c.therapist_x], slice(j, j + 1), rate=0.05)
        k = int(now)
        if now == k:
            mask = np.array([c.has[k] for c in sc])
            if mask.any():
                s.ingest(now, np.array([c.bpm[k] for c in sc]), np.stack([c.rr[k] for c in sc]),
                         np.array([c.contact[k] for c in sc]), mask=None if mask.all() else mask)
        s.set_target(s.held(now))
        deciding = now >= nxt
        if deciding.any():
            nxt = np.where(deciding, now + np.array([c.interval for c in sc]), nxt)
            s.refresh(now, None if deciding.all() else deciding)
            for j in np.flatnonzero(deciding):
                lane = slice(j, j + 1)
                obs = s.observation(now, lane)
                seen[j].append(obs)
                prop = Proposal(np.array([sc[j].delta[count[j]]]), np.zeros(1, int), ("test",),
                                ask_suds=np.array([sc[j].ask[count[j]]]))
                s.decide(now, obs, prop, shields[j], lane)
                count[j] += 1
    return s, seen


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(2, 4))
def test_n_lanes_are_n_sessions_of_one(seed, n):
    """Every lane of a batch is bit for bit the session of one with the same inputs: readings
    with gaps (masked feature updates), decisions at different times, the shield, SUDS, the
    therapist's faster ramp."""
    seconds = 90
    scs = [Scenario(seed, i, seconds) for i in range(n)]
    batch, seen = _run(scs, list(range(n)), seconds)
    runs = [_run(scs, [i], seconds) for i in range(n)]
    singles = [x for x, _ in runs]
    for name in STATE:
        np.testing.assert_array_equal(getattr(batch, name), np.concatenate([getattr(x, name) for x in singles]),
                                      err_msg=name)
    for i, (_, one) in enumerate(runs):
        assert len(seen[i]) == len(one[0]) > 0
        for a, b in zip(seen[i], one[0], strict=True):
            for f in fields(a):
                np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)
    for k, v in vars(batch.bank).items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, np.concatenate([getattr(x.bank, k) for x in singles]), err_msg=k)
    assert batch.max_level.max() >= 1  # the scenarios move


def _ramp(times: np.ndarray, target: float, start: float = 0.0) -> SessionStep:
    s = SessionStep(HEIGHTS, 1, start=start)
    s.set_target([target])
    for t in times:
        s.advance(float(t))
    return s


@pytest.mark.parametrize("start, target", [(0.0, 0.7), (0.9, 0.05)])
def test_ramp_does_not_depend_on_the_tick_rate(start, target):
    fine = _ramp(np.arange(1, 60 * 60 + 1) / 60.0, target, start)  # 60 fps for a minute
    coarse = _ramp(np.array([7.3, 60.0]), target, start)
    assert fine.intensity[0] == coarse.intensity[0]
    assert fine.level[0] == coarse.level[0]
    assert fine.level_since[0] == coarse.level_since[0]


def test_ramp_rates_and_level_entry_times():
    s = _ramp(np.array([10.0]), 1.0)
    assert s.intensity[0] == pytest.approx(0.2)  # 0.02 per second
    up = HEIGHTS.intensities[s.level[0]]
    assert s.level_since[0] == pytest.approx(up / 0.02)  # the moment the ramp crossed into the level
    s.set_target([0.0])
    s.advance(11.0)
    assert s.intensity[0] == pytest.approx(0.1)  # down at 0.10 per second
    s.advance(60.0)
    assert s.intensity[0] == 0.0 and s.level[0] == 0


def test_nothing_raises_the_target_while_the_signal_is_lost():
    s = SessionStep(HEIGHTS, 3, start=0.2)
    s.set_target([0.5, 0.5, 0.1])
    s.advance(1.0)
    held = s.held(1.0)  # no reading yet: lost
    assert held[0] == held[1] == s.intensity[0] and held[2] == 0.1  # a falling target stays


def test_suds_answer_closes_the_question_and_tracks_the_peak_per_level():
    s = SessionStep(HEIGHTS, 2)
    assert s.ask_suds(1.0, [True, False]).tolist() == [True, False]
    assert s.ask_suds(2.0, [True, True]).tolist() == [False, True]  # one question at a time
    assert s.suds_due(6.0).tolist() == [True, False]
    s.record_suds(6.0, np.array([40.0, 0.0]), s.suds_due(6.0))
    s.record_suds(7.0, np.array([30.0, 20.0]), np.array([True, True]))
    assert s.suds_last.tolist() == [30.0, 20.0] and s.suds_peak.tolist() == [40.0, 20.0]
    assert np.isnan(s.pending).all()
    s.set_target([0.5, 0.0])
    s.advance(30.0)  # lane 0 changes level: its peak starts afresh
    assert np.isnan(s.suds_peak[0]) and s.suds_peak[1] == 20.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 20.0), st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
                          st.lists(st.booleans(), min_size=3, max_size=3)), min_size=1, max_size=25))
def test_ramp_over_lanes_equals_one_lane_at_a_time(script):
    """Lanes ramping, resting and turning at different moments (only the lanes on a ramp are advanced)
    give each lane what a step of one gives it, and the level is always the hierarchy's."""
    batch = SessionStep(HEIGHTS, 3, start=np.array([0.0, 0.5, 1.0]))
    singles = [SessionStep(HEIGHTS, 1, start=x) for x in (0.0, 0.5, 1.0)]
    t = 0.0
    for dt, targets, change in script:
        t += dt
        new = np.where(change, targets, batch.target)
        batch.advance(t)
        batch.set_target(new)
        for i, s in enumerate(singles):
            s.advance(t)
            s.set_target(new[i:i + 1])
        for name in ("intensity", "target", "level", "level_since", "max_level", "anchor_x", "anchor_t"):
            np.testing.assert_array_equal(getattr(batch, name), np.concatenate([getattr(s, name) for s in singles]),
                                          err_msg=name)
        assert (batch.level == HEIGHTS.level_index(batch.intensity)).all()
        assert (batch.level_since <= t).all() and (batch.max_level >= batch.level).all()
