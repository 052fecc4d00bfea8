"""engine/session/core.py against a committed log: a session recorded earlier (with therapist
commands of every kind) replays to the same decisions and observations through today's core (see
tests/fixtures/README.md for how it was recorded, and when it must be re-recorded)."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.research.replay import load_log, rederive

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sessions" / "recorded.session"


def test_a_recorded_session_replays_to_the_same_decisions(tmp_path):
    path = tmp_path / FIXTURE.name
    shutil.copy(FIXTURE, path)  # replay opens the file; the fixture stays untouched
    log = load_log(path)
    assert {c["type"] for c in log.commands} >= {"set_level", "set_intensity", "hold", "manual", "auto", "pause",
                                                   "resume", "suds", "ask_suds", "stop"}
    assert {d["who"] for d in log.decisions} >= {"course", "baseline", "therapist"}
    res = rederive(log)
    assert res.match, [m.line() for m in res.mismatches[:5]]
    assert res.n_replayed == len(log.decisions) >= 30
    assert res.max_obs_diff == 0.0  # every number every decision saw, not only the decisions
