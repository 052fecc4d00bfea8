"""The shield's question budget: at most one SUDS question per 60 s per patient, one rule over N
lanes, the same in a live session (N = 1, through the session core on a simulated clock), in the
batch the env and the evaluator step, and for every controller that asks."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.session.core import SessionCore
from engine.store.files import SessionWriter
from policy.baselines import SudsProtocol
from policy.controllers import Controller, Proposal
from policy.shield import ASK_REFUSED, REASONS, SafetyShield, ShieldConfig, ShieldError
from scenes.hierarchy import load_hierarchy
from sensors.sample import Sample

REFUSED = REASONS[ASK_REFUSED]


class AskAlways(Controller):
    """Holds intensity and asks for a rating at every decision (every 5 s)."""

    name = "ask-always"
    decision_interval = 5.0

    def propose(self, obs):
        n = obs.n
        return Proposal(np.zeros(n), np.zeros(n, int), ("hold and ask",), ask_suds=np.ones(n, bool),
                        info={"ask_reason": "asks every decision"})


def _shield(n):
    s = SafetyShield()
    s.reset(n)
    return s


def test_screen_asks_allows_one_question_per_60_s_per_lane_and_counts_refusals():
    s = _shield(3)
    want = np.array([True, True, False])
    ok, refused = s.screen_asks(0.0, want)
    assert ok.tolist() == [True, True, False] and not refused.any()
    ok, refused = s.screen_asks(30.0, np.array([True, False, True]))  # lane 2 never asked: allowed
    assert ok.tolist() == [False, False, True] and refused.tolist() == [True, False, False]
    ok, refused = s.screen_asks(59.99, np.array([True, True, False]))
    assert not ok.any() and refused.tolist() == [True, True, False]
    ok, refused = s.screen_asks(60.0, np.array([True, True, True]))  # lane 2 asked at 30: refused
    assert ok.tolist() == [True, True, False] and refused.tolist() == [False, False, True]
    assert s.counts[REFUSED] == 4
    assert sum(v for k, v in s.counts.items() if k != REFUSED) == 0  # no other rule claimed them


def test_screen_asks_rejects_a_wrong_shape_and_the_interval_is_configurable():
    s = _shield(2)
    with pytest.raises(ShieldError, match="ask has shape"):
        s.screen_asks(0.0, np.ones(3, bool))
    s = SafetyShield(ShieldConfig(min_ask_interval_s=90.0))
    s.reset(1)
    assert s.screen_asks(0.0, np.ones(1, bool))[0][0]
    assert not s.screen_asks(89.0, np.ones(1, bool))[0][0]
    assert s.screen_asks(90.0, np.ones(1, bool))[0][0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 30.0), st.lists(st.booleans(), min_size=4, max_size=4)),
                min_size=1, max_size=60))
def test_no_two_allowed_questions_within_60_s_whatever_is_asked(steps):
    s = _shield(4)
    t = 0.0
    last = np.full(4, -np.inf)
    refused_n = 0
    for dt, want in steps:
        t += dt
        ok, refused = s.screen_asks(t, np.array(want))
        assert not (ok & refused).any() and ((ok | refused) == np.array(want)).all()
        assert (t - last[ok] >= 60.0 - 1e-9).all()
        assert ((t - last[refused]) < 60.0).all()
        last = np.where(ok, t, last)
        refused_n += int(refused.sum())
    assert s.counts[REFUSED] == refused_n


def _feed(core, t0, t1, bpm=75.0, dt=0.25, answer_after=3.0):
    """Tick a live session core from t0 to t1 on a simulated clock, a 1 Hz strap, and the
    patient answering each open question ``answer_after`` seconds after it was asked."""
    t = t0
    nxt = math.floor(t0) + 1.0
    while t < t1 - 1e-9:
        t = round(t + dt, 6)
        while nxt <= t:
            core.push_sample(Sample(nxt, 1e9 + nxt, bpm, (60000.0 / bpm,), True, "test"))
            nxt += 1.0
        asked = core.suds_pending_since
        if asked is not None and t - asked >= answer_after:
            core.push_command({"type": "suds", "value": 20})
        core.tick(t)
    return t


def test_live_session_asks_at_most_once_a_minute_and_logs_why_and_refusals(tmp_path):
    w = SessionWriter(tmp_path, "P1", {}, session_id="asks")
    shield = SafetyShield()
    core = SessionCore(load_hierarchy("heights"), AskAlways(), shield, writer=w)
    _feed(core, 0.0, 300.0)
    core.end("test")
    with contextlib.closing(sqlite3.connect(w.path)) as db:
        req = [t for t, k, d in db.execute("SELECT t, kind, detail FROM events ORDER BY rowid")
               if k == "suds_request"]
        refused_ev = [t for t, k, d in db.execute("SELECT t, kind, detail FROM events ORDER BY rowid")
                      if k == "shield" and json.loads(d)["reason"] == REFUSED]
        dec = [(t, json.loads(i)) for t, i in db.execute("SELECT t, info FROM decisions ORDER BY rowid")]
    # decisions every 5 s from t = 5; a question at 5, 65, 125, 185, 245 — never two within 60 s
    assert req == [5.0, 65.0, 125.0, 185.0, 245.0]
    asks = [(t, i["suds_ask"]) for t, i in dec if i and "suds_ask" in i]
    allowed = [t for t, a in asks if a["asked"]]
    refused = [t for t, a in asks if not a["asked"]]
    assert allowed == req
    # every other decision wanted a question and was refused (none open: the answer came after 3 s)
    assert refused == [t for t in np.arange(5.0, 301.0, 5.0).tolist() if t not in req] == refused_ev
    assert all(a["reason"] == "asks every decision" for _, a in asks)
    assert all(a["refused"] == REFUSED for _, a in asks if not a["asked"])
    assert all(a["refused"] == "" and "cost_estimate" in a for _, a in asks if a["asked"])
    assert shield.counts[REFUSED] == len(refused)


def test_a_therapists_question_is_never_refused_by_the_budget():
    shield = SafetyShield()
    core = SessionCore(load_hierarchy("heights"), AskAlways(), shield, writer=None)
    t = _feed(core, 0.0, 6.0)  # the controller asked at 5 s, answered at 8 s… not yet
    t = _feed(core, t, 10.0)
    assert core.suds_pending_since is None
    core.push_command({"type": "ask_suds"})
    core.tick(t + 0.25)
    assert core.suds_pending_since == t + 0.25  # asked at once, 5 s after the controller's question


def _batch(controller_factory, n=8, minutes=10.0, seed=3):
    """A batch of virtual patients (the evaluator's and the env's stepping) with shields; returns
    the times questions were asked per lane and the shields."""
    from engine.gym_env import scene_table
    from policy.sim.batch_session import BatchSession
    from policy.sim.patient import model, noise
    from policy.sim.patient.population import load_population

    table = scene_table("heights")
    pop = load_population(None)
    p = model.make_params(pop, noise.patient_keys(seed, np.arange(n)), "heights")
    shield = SafetyShield()
    b = BatchSession(p, table, [(controller_factory(), shield)], seed=seed)
    b.start_session(60.0 * minutes)
    asked_t = [[] for _ in range(n)]
    for g in b.decisions():
        obs = b.observation(g)
        res = b.apply(g, obs, g.controller.propose(obs))
        for i in np.flatnonzero(res.asked):
            asked_t[i].append(b.t)
    return asked_t, shield


def test_batch_lanes_obey_the_same_budget():
    asked_t, shield = _batch(AskAlways)
    for ts in asked_t:
        assert ts and np.all(np.diff(ts) >= 60.0)
        assert ts == [5.0 + 60.0 * k for k in range(len(ts))]  # answered 5 s later; asks again at 60 s
    assert shield.counts[REFUSED] > 0


def test_the_suds_protocol_already_asks_at_most_once_a_minute_and_is_never_refused():
    # The protocol asks once the last answer is 60 s old, so its questions are ≥ 60 s + the answer
    # delay apart: the budget never changes what it does (a therapist's once a minute).
    asked_t, shield = _batch(SudsProtocol)
    for ts in asked_t:
        assert len(ts) >= 8 and np.all(np.diff(ts) >= 60.0)
    assert shield.counts[REFUSED] == 0
