"""``exposure sessions``: list recorded sessions."""

from __future__ import annotations

import json
import sys

from engine.cli.common import sessions_dir, sessions_dir_arg, warn


def register(sub) -> None:
    p = sub.add_parser("sessions", help="list recorded sessions",
                       description="List recorded sessions: id, patient, scene, start, duration, "
                                   "samples, controller and how each ended.")
    sessions_dir_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON array of objects")
    p.add_argument("--patient", default=None,
                   help="only this patient's sessions, with their course: course id, course_session "
                        "(1-based), previous session, start and highest level")
    p.set_defaults(func=cmd_sessions)


def cmd_sessions(args) -> int:
    from engine.store.files import list_sessions

    d = sessions_dir(args)
    if args.patient is not None:
        return _patient_sessions(d, args)
    infos, problems = list_sessions(d)
    warn(problems)
    rows = [i.summary() for i in infos]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"sessions in {d}:")
    if not rows:
        print("  (none readable: see the warnings above)" if problems else "  (none yet: try 'exposure demo')")
    for r in rows:
        print(f"  {r['id']}  patient {r['patient']}  {r['scene']}  {r['start']}  "
              f"{r['duration_s'] / 60:.1f} min  {r['samples']} samples  {r['controller']}  {r['ended']}")
        if r["no_signal"]:
            print(f"      {r['no_signal']}")
        if r["damaged"]:
            print(f"      DAMAGED: {'; '.join(r['problems'])}")
    return 0


def _patient_sessions(d, args) -> int:
    """One patient's sessions with their place in the course; damaged ones named and skipped."""
    from engine.store.course import scan
    from engine.store.files import StoreError, list_sessions, validate_patient

    try:
        validate_patient(args.patient)
    except StoreError as e:
        raise StoreError(f"--patient: {e}") from None
    course, warnings = scan(d, args.patient)
    by_id = {c.id: c for c in course}
    infos, _ = list_sessions(d)  # files that cannot be read: named by scan's warnings
    for msg in warnings:
        print(f"exposure: warning: {msg}", file=sys.stderr)
    rows = []
    for i in infos:
        if i.meta.get("patient") != args.patient:
            continue
        c = by_id.get(i.id)
        if c is None and "course_id" in i.meta:
            continue  # a damaged course session: named in a warning above
        rows.append({**i.summary(), "course_id": None if c is None else c.course_id,
                     "course_session": None if c is None else c.index,
                     "previous_session": None if c is None else c.previous_id,
                     "start_level": None if c is None else c.start_level,
                     "highest_level": None if c is None else c.highest_level,
                     "peak_suds": None if c is None else c.peak_suds,
                     "peak_hr_rise": None if c is None else c.peak_hr_rise})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"sessions of patient {args.patient} in {d}:")
    if not rows:
        print("  (none)")
    for r in rows:
        where = (f"{r['scene']} course {r['course_id']} #{r['course_session']}" if r["course_session"]
                 else f"{r['scene']} (no course)")
        print(f"  {r['id']}  {where}  {r['start']}  {r['duration_s'] / 60:.1f} min  "
              f"levels {r['start_level']}→{r['highest_level']}  {r['ended']}")
    return 0
