"""``exposure report``: a self-contained HTML report of a session."""

from __future__ import annotations

from pathlib import Path

from engine.cli.common import sessions_dir, sessions_dir_arg, warn


def register(sub) -> None:
    r = sub.add_parser("report", help="a self-contained HTML report of a session",
                       description="Write one HTML page (plots embedded as PNG) a therapist can file: HR "
                                   "with baseline, intensity and level, SUDS, commands and events, shield "
                                   "interventions and summary numbers.")
    r.add_argument("session", nargs="?", help="session id (or unique prefix, or path)")
    r.add_argument("--course", metavar="PATIENT", default=None,
                   help="instead of one session: the course report of this patient (with --scene)")
    r.add_argument("--scene", default="heights", help="the course's scene (default heights)")
    r.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    r.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sessions_dir_arg(r)
    r.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    if (args.course is None) == (args.session is None):
        from engine.cli.common import UserError

        raise UserError("give a session, or --course PATIENT (with --scene) for a course report")
    if args.course is not None:
        from engine.research.course_report import write_course_report

        out = write_course_report(sessions_dir(args), args.course, args.scene, args.out, force=args.force)
        print(f"course report: {out}")
        return 0
    from engine.research.report import write_report
    from engine.store.files import find_session

    path = find_session(sessions_dir(args), args.session)
    problems: list[str] = []
    out = write_report(path, args.out, force=args.force, problems=problems)
    warn(problems)  # one line each, as the page says at its top
    print(f"report: {out}")
    return 0
