"""The console's course panel: ``GET /api/course``.

The patient's sessions so far in this course (date, minutes, where each started and the highest
level it reached, peak SUDS and HR rise, return of fear between sessions), then this session as
it stands, with where it started and why. The earlier sessions are read from their files once
(they do not change); this session's row comes from the live core's snapshot. The router is
included by the app behind the same token check as every other route.
"""

from __future__ import annotations

import math
import threading

from fastapi import APIRouter

from engine.store.course import read_course


class CoursePanel:
    """What the panel shows, for one running session."""

    def __init__(self, session):
        self.session = session
        self._earlier: tuple[list[dict], list[str]] | None = None
        self._lock = threading.Lock()

    def _read_earlier(self) -> tuple[list[dict], list[str]]:
        with self._lock:
            if self._earlier is None:
                s, c = self.session, self.session.course
                rows: list[dict] = []
                warnings = list(c.warnings)
                if c.course_id is not None:
                    course = read_course(s.cfg.sessions_dir, s.cfg.patient, s.cfg.scene, c.course_id)
                    rows = [_row(x) for x in course.sessions if x.id != s.id and x.index < c.index]
                self._earlier = rows, warnings
            return self._earlier

    def payload(self) -> dict:
        s, c = self.session, self.session.course
        anonymous = s.cfg.patient == "anon"
        earlier, warnings = ([], []) if anonymous else self._read_earlier()
        snap = s.core.snapshot()
        levels = s.hierarchy.levels
        suds = [x["value"] for x in snap.get("suds") or []]
        first = (snap.get("suds") or [None])[0]
        rof = None
        if first is not None and c.previous is not None:
            before = c.previous.suds_by_level.get(int(first["level"]))
            rof = None if before is None else float(first["value"]) - before
        hl = int(s.highest_level)
        now = {
            "index": c.index, "id": s.id, "date": s.started_at,
            "minutes": round(float(snap.get("t") or 0.0) / 60.0, 2), "start_level": c.start_level,
            "highest_level": hl, "highest_level_name": levels[hl].name,
            "peak_suds": max(suds) if suds else None, "peak_hr_rise": s.peak_hr_rise,
            "return_of_fear": rof, "ended": snap.get("end_reason") or "running", "current": True,
        }
        return {
            "patient": s.cfg.patient, "scene": s.cfg.scene, "anonymous": anonymous,
            "course_id": None if anonymous else (c.course_id or s.id), "index": c.index,
            "start_level": c.start_level, "start_level_name": levels[c.start_level].name,
            "start_reason": c.start_reason, "minutes_before": c.minutes_so_far,
            "sessions": [*earlier, now], "warnings": warnings,
        }


def _fin(x):
    return x if x is None or math.isfinite(x) else None


def _row(x) -> dict:
    return {"index": x.index, "id": x.id, "date": x.started_at, "minutes": round(x.minutes, 2),
            "start_level": x.start_level, "highest_level": x.highest_level,
            "highest_level_name": x.highest_level_name, "peak_suds": _fin(x.peak_suds),
            "peak_hr_rise": _fin(x.peak_hr_rise), "return_of_fear": _fin(x.return_of_fear),
            "ended": x.ended, "current": False}


def course_router(session) -> APIRouter:
    """``GET /course`` for ``session``, included in the app's ``/api`` router (behind its token)."""
    panel = CoursePanel(session)
    router = APIRouter(tags=["course"])

    @router.get("/course", summary="The patient's course: sessions so far and where this one started",
                description="sessions (oldest first; the last is this session, `current`): index, id, date, "
                            "minutes, start_level, highest_level, peak_suds, peak_hr_rise (bpm above baseline), "
                            "return_of_fear (first SUDS of a session minus the last SUDS at that level in the "
                            "session before; null when not measured); start_level and start_reason of this "
                            "session; warnings about damaged earlier sessions that were skipped.")
    def get_course() -> dict:  # a plain def: FastAPI runs it on a worker thread (it may read files once)
        return panel.payload()

    return router
