"""What a session logs for a strap that sends RR: HR from the accepted intervals, rejections by reason."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from engine.session.core import SessionCore
from engine.store.files import SessionWriter
from policy.controllers import Ladder
from policy.shield import SafetyShield
from scenes.hierarchy import load_hierarchy
from sensors.sample import Sample


def test_session_logs_hr_from_accepted_rr_and_rejections_by_reason(tmp_path):
    w = SessionWriter(tmp_path, "P1", {}, session_id="hr-from-rr")
    core = SessionCore(load_hierarchy("heights"), Ladder(), SafetyShield(), writer=w)
    # a strap whose bpm (90) disagrees with its RR (800 ms = 75 bpm), then an ectopic beat and its pause
    rr = [800.0] * 20 + [600.0, 1000.0] + [800.0] * 5
    t = 0.0
    for i, r in enumerate(rr):
        t = 1.0 + 0.8 * i
        core.push_sample(Sample(t, 1e9 + t, 90.0, (r,), True, "ble://test"))
        core.tick(t)
    core.end("test")
    with contextlib.closing(sqlite3.connect(w.path)) as db:
        hr = [h for (h,) in db.execute("SELECT hr FROM features ORDER BY rowid") if h is not None]
        ev = [json.loads(d) for k, d in db.execute("SELECT kind, detail FROM events") if k == "rr_rejected"]
    assert hr and all(h == pytest.approx(75.0) for h in hr)  # never the device's 90, never the ectopic pair
    assert ev == [{"count": 2, "reasons": {"ectopic": 2}}]
