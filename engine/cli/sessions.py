"""``exposure sessions``: list recorded sessions."""

from __future__ import annotations

import json
import sys

from engine.cli.common import sessions_dir, sessions_dir_arg


def register(sub) -> None:
    p = sub.add_parser("sessions", help="list recorded sessions",
                       description="List recorded sessions: id, patient, scene, start, duration, "
                                   "samples, controller and how each ended.")
    sessions_dir_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON array of objects")
    p.set_defaults(func=cmd_sessions)


def cmd_sessions(args) -> int:
    from engine.store.files import list_sessions

    d = sessions_dir(args)
    infos, problems = list_sessions(d)
    for msg in problems:
        print(f"exposure: warning: {msg}", file=sys.stderr)
    rows = [i.summary() for i in infos]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"sessions in {d}:")
    if not rows:
        print("  (none yet: try 'exposure demo')")
    for r in rows:
        print(f"  {r['id']}  patient {r['patient']}  {r['scene']}  {r['start']}  "
              f"{r['duration_s'] / 60:.1f} min  {r['samples']} samples  {r['controller']}  {r['ended']}")
    return 0
