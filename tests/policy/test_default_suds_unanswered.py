"""The SUDS protocol, the default controller, in a live session whose patient never answers a
question: it asks once, the question stays open, and it waits at its level (it climbs only on
ratings), so an unanswered question can never take the patient up the hierarchy. The same session
with the virtual patient answering does climb, so the test can fail."""

from __future__ import annotations

import json

from engine.session.live import Session, SessionConfig
from engine.store.files import SessionReader


def _run(tmp_path, answers: bool):
    cfg = SessionConfig(scene="heights", controller="suds", duration_s=20 * 60.0, speed="max",
                        sessions_dir=tmp_path, seed=11, new_course=True)
    s = Session(cfg)
    if not answers:
        s.source.suds = lambda now: None  # the one thing changed: the patient never answers
    s.run_headless()
    with SessionReader(s.path) as r:
        return r.records("decisions"), r.records("suds"), [e for e in r.records("events")
                                                           if e["kind"] == "suds_request"]


def test_unanswered_questions_leave_the_suds_protocol_waiting_at_its_level(tmp_path):
    decisions, ratings, asks = _run(tmp_path / "silent", answers=False)
    assert ratings == []
    assert {d["level_after"] for d in decisions} == {0}  # never above the first level
    assert all(d["reason"] in ("wait at level", "asking for a SUDS rating") for d in decisions if d["who"] == "suds")
    # the question stays open, so it is not asked again while unanswered: one request, and the
    # decision log says why it was asked
    assert len(asks) == 1
    asked = [json.loads(d["info"])["suds_ask"] for d in decisions if d["info"] and "suds_ask" in d["info"]]
    assert asked and asked[0]["asked"] and "SUDS protocol" in asked[0]["reason"]


def test_answered_questions_take_the_same_patient_up_the_hierarchy(tmp_path):
    decisions, ratings, asks = _run(tmp_path / "answers", answers=True)
    assert len(ratings) >= 15 and len(asks) == len(ratings)
    assert max(d["level_after"] for d in decisions) >= 2
