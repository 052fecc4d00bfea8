"""``exposure run``: a graded exposure session."""

from __future__ import annotations

import sys

from engine.cli.common import sessions_dir, sessions_dir_arg, warn


def register(sub) -> None:
    p = sub.add_parser("run", help="run an exposure session",
                       description="Run a graded exposure session: an HR source feeds the session "
                                   "core, a controller proposes, the safety shield and the therapist "
                                   "decide, the scene follows, and everything is logged.")
    p.add_argument("--scene", default="heights", help="heights or crowds (default heights)")
    p.add_argument("--hierarchy", default=None, help="a hierarchy TOML file of your own (default: the scene's)")
    p.add_argument("--sensor", default="sim://", help="HR source URL: sim://?seed=7, ble://Polar%%20H10, "
                   "serial:///dev/ttyUSB0?baud=115200&format=csv, replay://SESSION (default sim://)")
    p.add_argument("--controller", default="", help="policy, ladder, suds, hr-band, hr-pid "
                   "(default: the learned policy only when its model card shows every goal met for the "
                   "scene, otherwise the safest clinical baseline; the run prints which and why)")
    p.add_argument("--display", default="auto", choices=("auto", "window", "headset", "offscreen", "none"),
                   help="auto: a window if there is a display, else offscreen; none: no scene")
    p.add_argument("--duration", default="45m", help="session length, e.g. 45m, 90s (default 45m)")
    p.add_argument("--speed", default="1", help="1 = real time, N = N× faster, max = as fast as possible "
                   "(other than 1 only with simulated or replayed sensors)")
    p.add_argument("--patient", default="anon", help="pseudonymous patient id (e.g. P017), never a name")
    p.add_argument("--start-level", type=int, default=None, metavar="N",
                   help="start at level N (default: one level below the highest level reached in the "
                        "patient's previous session of this scene; level 0 in a new course)")
    p.add_argument("--new-course", action="store_true",
                   help="start a new course for this patient and scene (session 1, level 0 unless --start-level)")
    sessions_dir_arg(p)
    p.add_argument("--console", default="127.0.0.1:8765",
                   help="therapist console HOST:PORT, or off (default 127.0.0.1:8765, loopback only)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--lsl", action="store_true", help="publish HR, intensity and markers as LSL streams")
    p.set_defaults(func=cmd_run)


def build_config(args):
    from engine.session.config import SessionConfig, parse_console, parse_duration, parse_speed

    return SessionConfig(scene=args.scene, sensor=args.sensor, controller=args.controller,
                         display=args.display, duration_s=parse_duration(args.duration),
                         speed=parse_speed(args.speed), patient=args.patient,
                         sessions_dir=sessions_dir(args), console=parse_console(args.console),
                         seed=args.seed, hierarchy=args.hierarchy, lsl=args.lsl,
                         start_level=args.start_level, new_course=args.new_course).validated()


def _console_starter(cfg):
    if cfg.console is None:
        return None
    from engine.console import start_console

    return start_console


def run_session(cfg, out=sys.stdout):
    """Run a session headless or rendered; returns (session, how it ended)."""
    from engine.session.live import Session

    display = cfg.display
    if display == "none":
        session = Session(cfg, start_console=_console_starter(cfg))
        print(f"session {session.id} → {session.path}", file=out, flush=True)
        try:
            session.start_io()  # the console must be up before its URL is printed
        except BaseException:
            session.close("could not start")
            raise
        _on_start(session, out)
        reason = session.run_headless()
    else:
        from engine.render.panda_runner import run_rendered  # imports Panda3D only when a scene is shown

        session, reason = run_rendered(cfg, out=out, on_start=_on_start)
    return session, reason


def _on_start(session, out) -> None:
    why = session.cfg.controller_reason
    print(f"controller: {session.cfg.controller}" + (f" (default: {why})" if why else ""), file=out, flush=True)
    _print_course(session, out)
    if session.cfg.lsl:
        from engine.research.lsl import start_lsl

        session.extras.append(start_lsl(session))
    if session.console is not None:
        print(f"console: {session.console.url}", file=out, flush=True)
        print(f"console token: {session.console.token}", file=out, flush=True)


def _print_course(session, out) -> None:
    c = session.course
    warn(c.warnings)
    k = c.start_level
    where = (f"course session {c.index}" + (f" (after {c.previous.id})" if c.previous is not None else "")
             if session.cfg.patient != "anon" else "no course (anonymous)")
    print(f"{where}; starts at level {k} ({session.hierarchy.levels[k].name}): {c.start_reason}",
          file=out, flush=True)


def cmd_run(args) -> int:
    cfg = build_config(args)
    session, reason = run_session(cfg)
    print(f"session {session.id} ended: {reason}; log: {session.path}")
    if session.watch.summary():
        print(f"  {session.watch.summary()}")
    return 0
