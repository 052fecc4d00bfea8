"""Courses: a named patient's sessions of one scene, read back from the session files.

A session of a named patient (never ``anon``) belongs to that patient's course for its scene.
Its metadata records the course (``course_id``: the id of the course's first session), its
1-based index in the course (``course_session``), the previous session's id
(``previous_session``), where it started (``start_level``) and why (``start_reason``).

How earlier sessions count:

* an **interrupted** session (stopped early, escaped, crashed or killed with its file intact)
  counts: the patient was exposed. Its highest level is what its log shows, and it is listed
  with how it ended;
* a **damaged** session (a file that cannot be read, or whose reader reports damage) is
  skipped: it is not counted in the course, not used for the start level, and named in a
  one-line warning. The next session then follows the last intact one;
* sessions without course metadata (written before courses existed) and ``anon`` sessions
  belong to no course.

Everything here reads the files only; nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.store.files import SUFFIX, SessionReader, StoreError

ANON = "anon"


@dataclass(frozen=True)
class CourseSession:
    """One session of a course, as its log tells it."""

    id: str
    path: str
    course_id: str
    index: int  # 1-based
    previous_id: str | None
    started_at: str | None
    started_wall: float | None
    minutes: float  # rounded to 0.001 for display; duration_s is exact
    start_level: int
    start_reason: str | None
    highest_level: int
    highest_level_name: str | None
    peak_suds: float | None  # highest SUDS answer of the session (None: none asked)
    peak_hr_rise: float | None  # highest HR above the resting baseline, bpm (None: no signal)
    first_suds: float | None  # first SUDS answer, at the start level (for return of fear)
    first_suds_level: int | None
    #: SUDS (last answer) at each level reached: {level: suds}
    suds_by_level: dict = field(default_factory=dict)
    #: highest HR rise at each level: {level: bpm}
    hr_rise_by_level: dict = field(default_factory=dict)
    ended: str = "incomplete"
    interrupted: bool = False
    duration_s: float = 0.0
    return_of_fear: float | None = None  # set by :func:`read_course`

    def row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Course:
    patient: str
    scene: str
    course_id: str | None
    sessions: list[CourseSession]
    warnings: list[str]

    @property
    def minutes(self) -> float:
        return sum(s.minutes for s in self.sessions)


@dataclass(frozen=True)
class NextSession:
    """Where the next session of a patient stands in the course (what ``exposure run`` uses)."""

    course_id: str | None  # None: a new course (its id becomes the new session's id)
    index: int
    previous: CourseSession | None
    minutes_so_far: float
    start_level: int
    start_reason: str
    warnings: list[str]
    vr_minutes_exact: float = 0.0  # the same, unrounded, summed session by session as the simulator does

    def context(self, n_levels: int) -> dict:
        """The course context a controller sees (policy.step.first_course_context, N = 1), as JSON
        for the session's metadata (null: not measured)."""
        p = self.previous
        at = [None] * n_levels
        if p is not None:
            for lv, v in p.suds_by_level.items():
                if 0 <= int(lv) < n_levels:
                    at[int(lv)] = v
        return {"course_session": self.index, "prev_highest_level": None if p is None else p.highest_level,
                "prev_peak_suds": None if p is None else p.peak_suds,
                "prev_peak_hr_rise": None if p is None else p.peak_hr_rise,
                "course_minutes": self.vr_minutes_exact, "prev_suds_at_level": at}

    def meta(self, own_id: str) -> dict:
        """The session metadata fields of the new session."""
        p = self.previous
        return {"course_id": self.course_id or own_id, "course_session": self.index,
                "previous_session": None if p is None else p.id, "start_level": self.start_level,
                "start_reason": self.start_reason, "course_minutes_before": self.minutes_so_far,
                "previous_highest_level": None if p is None else p.highest_level,
                "previous_peak_suds": None if p is None else p.peak_suds,
                "previous_peak_hr_rise": None if p is None else p.peak_hr_rise}


def patient_of_file(path: Path) -> str | None:
    """The patient id in a session file's name (``YYYYMMDD-HHMMSS-<patient>-<hex>``), for files
    whose metadata cannot be read."""
    parts = Path(path).name[: -len(SUFFIX)].split("-")
    return "-".join(parts[2:-1]) if len(parts) >= 4 else None


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _session(reader: SessionReader) -> CourseSession:
    m = reader.meta
    info = reader.info()
    scene = reader.records("scene")
    levels = [r["level"] for r in scene]
    hl = m.get("highest_level")
    highest = hl if isinstance(hl, int) and not isinstance(hl, bool) else max(levels, default=0)
    names = (m.get("hierarchy") or {}).get("levels") or []
    suds = reader.records("suds")
    feats = reader.records("features")
    by_level: dict = {}
    for s in suds:
        by_level[int(s["level"])] = float(s["value"])
    # HR rise per level: the features carry no level; take the level the scene log shows at or
    # before each feature's time (scene rows are written once a second, in time order)
    rise_by_level: dict = {}
    j, lv = 0, (scene[0]["level"] if scene else 0)
    rises = []
    for f in feats:
        while j < len(scene) and scene[j]["t"] <= f["t"]:
            lv = scene[j]["level"]
            j += 1
        d = _num(f["hr_delta"])
        if d is None or f["lost"]:
            continue
        rises.append(d)
        rise_by_level[int(lv)] = max(rise_by_level.get(int(lv), -math.inf), d)
    end = m.get("end_reason")
    start_level = m.get("start_level") if isinstance(m.get("start_level"), int) else 0
    first = suds[0] if suds else None
    return CourseSession(
        id=reader.id, path=str(reader.path), course_id=str(m.get("course_id") or reader.id),
        index=int(m.get("course_session") or 1), previous_id=m.get("previous_session"),
        started_at=m.get("started_at"), started_wall=_num(m.get("started_wall")),
        minutes=round(info.duration_s / 60.0, 3), start_level=start_level,
        start_reason=m.get("start_reason"), highest_level=int(highest),
        highest_level_name=names[highest][0] if 0 <= highest < len(names) else None,
        peak_suds=max((float(s["value"]) for s in suds), default=None),
        peak_hr_rise=max(rises, default=None),
        first_suds=None if first is None else float(first["value"]),
        first_suds_level=None if first is None else int(first["level"]),
        suds_by_level=by_level, hr_rise_by_level=rise_by_level,
        ended=end or "incomplete (no end recorded: crashed or killed)",
        interrupted=end is None or end != "completed", duration_s=float(info.duration_s))


def _return_of_fear(prev: CourseSession, cur: CourseSession) -> float | None:
    """Return of fear at the start of ``cur``: its first SUDS answer minus the last SUDS the
    patient gave at that same level in ``prev`` (None when either was not measured)."""
    if cur.first_suds is None or cur.first_suds_level is None:
        return None
    before = prev.suds_by_level.get(cur.first_suds_level)
    return None if before is None else cur.first_suds - before


def scan(sessions_dir: Path, patient: str, scene: str | None = None) -> tuple[list[CourseSession], list[str]]:
    """Every intact course session of ``patient`` (of ``scene`` when given), oldest first, and
    one warning line per damaged session skipped."""
    d = Path(sessions_dir).expanduser()
    out, warnings = [], []
    if patient == ANON or not d.exists():
        return [], []
    for p in sorted(d.glob(f"*{SUFFIX}")):
        if patient_of_file(p) != patient:
            continue
        try:
            with SessionReader(p) as r:
                meta = r.meta
                if r.damaged and (not meta or r.unsure("meta")):  # whose session this is cannot be read
                    warnings.append(f"skipped damaged session {p.stem} of patient {patient}: "
                                    f"{r.problems[0] if r.problems else 'the file is damaged'}")
                    continue
                if meta.get("patient") != patient or "course_id" not in meta:
                    continue
                if scene is not None and r.meta.get("scene") != scene:
                    continue
                s = _session(r)
                if r.damaged:
                    warnings.append(f"skipped damaged session {r.id} of patient {patient} in the course: "
                                    f"{r.problems[0]}")
                    continue
        except StoreError as e:
            warnings.append(f"skipped unreadable session file {p.name} of patient {patient}: {e}")
            continue
        out.append(s)
    out.sort(key=lambda s: (s.started_wall or 0.0, s.id))
    return out, warnings


def read_course(sessions_dir: Path, patient: str, scene: str, course_id: str | None = None) -> Course:
    """The patient's course for ``scene`` (the latest one unless ``course_id`` is given), with the
    return of fear between consecutive sessions filled in."""
    sessions, warnings = scan(sessions_dir, patient, scene)
    if course_id is None and sessions:
        course_id = sessions[-1].course_id
    mine = [s for s in sessions if s.course_id == course_id]
    filled = []
    for i, s in enumerate(mine):
        rof = _return_of_fear(mine[i - 1], s) if i else None
        filled.append(CourseSession(**{**asdict(s), "return_of_fear": rof}))
    return Course(patient, scene, course_id, filled, warnings)


def next_session(sessions_dir: Path, patient: str, scene: str, levels: list[str],
                 start_level: int | None = None, new_course: bool = False) -> NextSession:
    """Where the next session of ``patient`` in ``scene`` starts, and why.

    ``levels`` are the hierarchy's level names. The rule (:func:`policy.step.course_start_level`,
    shared with the simulator): one level below the highest level reached in the previous session
    of the course. ``start_level`` and ``new_course`` override it."""
    from policy.step import course_start_level

    n = len(levels)
    if start_level is not None and not 0 <= start_level < n:
        raise StoreError(f"--start-level {start_level} is out of range: the hierarchy has levels 0 to {n - 1}")
    if patient == ANON:
        k = start_level or 0
        why = (f"--start-level {k}" if start_level is not None else "level 0") + "; anonymous sessions form no course"
        return NextSession(None, 1, None, 0.0, k, why, [])
    course = None if new_course else read_course(sessions_dir, patient, scene)
    if course is None or not course.sessions:
        warnings = [] if course is None else course.warnings
        k = start_level or 0
        why = "a new course" + (" (--new-course)" if new_course else "")
        why += f"; --start-level {k}" if start_level is not None else "; starts at level 0"
        return NextSession(None, 1, None, 0.0, k, why, warnings)
    prev = course.sessions[-1]
    index = prev.index + 1
    rule = int(course_start_level(min(prev.highest_level, n - 1)))
    if start_level is not None:
        k, why = start_level, (f"--start-level {start_level} (the course rule would start at level {rule}: "
                               f"one below level {prev.highest_level} reached in session {prev.index})")
    else:
        k = rule
        why = (f"one level below the highest level reached in session {prev.index} of the course "
               f"(level {prev.highest_level}, {levels[min(prev.highest_level, n - 1)]})")
    exact = 0.0
    for x in course.sessions:
        exact = exact + x.duration_s / 60.0
    return NextSession(course.course_id, index, prev, round(course.minutes, 3), k, why, course.warnings, exact)


def previous_source_state(nxt: NextSession) -> dict | None:
    """The simulated patient's state the previous session of the course ended in (``sim://``
    continues the same virtual patient from it); None for a new course or a real sensor."""
    if nxt.previous is None:
        return None
    try:
        with SessionReader(Path(nxt.previous.path)) as r:
            st = r.meta.get("source_state")
    except StoreError:
        return None
    return st if isinstance(st, dict) else None


def course_context_from_meta(meta: dict, n_levels: int) -> dict | None:
    """The course context a session's controller saw, from its metadata (``course_context``), as
    the arrays :func:`policy.step.course_observation` takes (N = 1); None when the log has none
    (older logs, anonymous sessions): the core's default, a session with nothing before it."""
    import numpy as np

    c = meta.get("course_context")
    if not isinstance(c, dict):
        return None

    def f(x):
        return np.nan if not isinstance(x, (int, float)) or isinstance(x, bool) else float(x)

    at = c.get("prev_suds_at_level")
    at = at if isinstance(at, list) else []
    row = [f(at[i]) if i < len(at) else np.nan for i in range(n_levels)]
    out = {k: np.array([f(c.get(k))]) for k in ("course_session", "prev_highest_level", "prev_peak_suds",
                                                 "prev_peak_hr_rise", "course_minutes")}
    out["prev_suds_at_level"] = np.array([row])
    return out
