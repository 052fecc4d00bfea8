"""The ``exposure`` command line.

Spine commands live here (run, demo, sessions, export). Other rooms add theirs from their own
modules, each with a ``register(subparsers)`` function, listed in ``_PLUGINS``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import traceback
from pathlib import Path

from engine import __version__
from engine.session.commands import CommandError
from engine.session.live import (
    DISPLAYS,
    ConfigError,
    Session,
    SessionConfig,
    Terminated,
    default_sessions_dir,
    parse_console,
    parse_duration,
    parse_speed,
    summarize,
)
from engine.store.files import StoreError, find_session, list_sessions
from policy.controllers import ControllerError
from scenes.hierarchy import HierarchyError
from sensors.errors import SensorError

# Errors a user can fix: one clear line on stderr, exit 2, never a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, StoreError, SensorError, CommandError,
                                                HierarchyError, ControllerError)
_PLUGINS = ("engine.cli.sensors", "engine.cli.evaluate", "engine.cli.train", "engine.cli.scenes",
            "engine.cli.research")


class UserError(Exception):
    """Raised by plugin commands for a problem the user can fix."""


def _sessions_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions-dir", type=Path, default=None,
                   help="where session files live (default: a per-user data folder, "
                        "shown by 'exposure sessions')")


def sessions_dir(args) -> Path:
    return args.sessions_dir if args.sessions_dir is not None else default_sessions_dir()


# ---------------------------------------------------------------------------------- run
def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run an exposure session",
                       description="Run a graded exposure session: an HR source feeds the session "
                                   "core, a controller proposes, the safety shield and the therapist "
                                   "decide, the scene follows, and everything is logged.")
    p.add_argument("--scene", default="heights", help="heights or crowds (default heights)")
    p.add_argument("--hierarchy", default=None, help="a hierarchy TOML file of your own (default: the scene's)")
    p.add_argument("--sensor", default="sim://", help="HR source URL: sim://?seed=7, ble://Polar%%20H10, "
                   "serial:///dev/ttyUSB0?baud=115200&format=csv, replay://SESSION (default sim://)")
    p.add_argument("--controller", default="", help="policy, ladder, suds, hr-band, hr-pid "
                   "(default: the shipped policy when present, else a baseline)")
    p.add_argument("--display", default="auto", choices=DISPLAYS,
                   help="auto: a window if there is a display, else offscreen; none: no scene")
    p.add_argument("--duration", default="45m", help="session length, e.g. 45m, 90s (default 45m)")
    p.add_argument("--speed", default="1", help="1 = real time, N = N× faster, max = as fast as possible "
                   "(other than 1 only with simulated or replayed sensors)")
    p.add_argument("--patient", default="anon", help="pseudonymous patient id (e.g. P017), never a name")
    _sessions_dir_arg(p)
    p.add_argument("--console", default="127.0.0.1:8765",
                   help="therapist console HOST:PORT, or off (default 127.0.0.1:8765, loopback only)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--lsl", action="store_true", help="publish HR, intensity and markers as LSL streams")
    p.set_defaults(func=cmd_run)


def build_config(args) -> SessionConfig:
    return SessionConfig(scene=args.scene, sensor=args.sensor, controller=args.controller,
                         display=args.display, duration_s=parse_duration(args.duration),
                         speed=parse_speed(args.speed), patient=args.patient,
                         sessions_dir=sessions_dir(args), console=parse_console(args.console),
                         seed=args.seed, hierarchy=args.hierarchy, lsl=args.lsl).validated()


def _console_starter(cfg: SessionConfig):
    if cfg.console is None:
        return None
    from engine.console import start_console

    return start_console


def run_session(cfg: SessionConfig, out=sys.stdout) -> tuple[Session, str]:
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


def _on_start(session: Session, out) -> None:
    if session.cfg.lsl:
        from engine.research.lsl import start_lsl

        session.extras.append(start_lsl(session))
    if session.console is not None:
        print(f"console: {session.console.url}", file=out, flush=True)
        print(f"console token: {session.console.token}", file=out, flush=True)


def cmd_run(args) -> int:
    cfg = build_config(args)
    session, reason = run_session(cfg)
    print(f"session {session.id} ended: {reason}; log: {session.path}")
    if session.watch.summary():
        print(f"  {session.watch.summary()}")
    return 0


# ---------------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="a short simulated session, no hardware and no display needed",
                       description="Run a short simulated session on the virtual patient, as fast as "
                                   "possible, and print what happened.")
    p.add_argument("--scene", default="heights", help="heights or crowds")
    p.add_argument("--duration", default="20m", help="simulated length (default 20m)")
    p.add_argument("--controller", default="", help="controller (default: as for run)")
    p.add_argument("--seed", type=int, default=7)
    _sessions_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    cfg = SessionConfig(scene=args.scene, sensor=f"sim://?seed={args.seed}",
                        controller=args.controller, display="none",
                        duration_s=parse_duration(args.duration), speed="max", patient="demo",
                        sessions_dir=sessions_dir(args), console=None, seed=args.seed).validated()
    session = Session(cfg)
    session.run_headless()
    s = summarize(session.path)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"Simulated {s['duration_s'] / 60:.0f} min of {s['scene']} exposure for a virtual patient "
          f"(controller: {s['controller']}).")
    b = f"{s['baseline_hr']:.0f}" if s["baseline_hr"] else "?"
    pk = f"{s['peak_hr']:.0f}" if s["peak_hr"] else "?"
    print(f"  heart rate: baseline {b} bpm, peak {pk} bpm over {s['samples']} samples")
    print(f"  highest level reached: {s['top_level']} ({s['top_level_name']}); "
          f"ended at level {s['final_level']}")
    print(f"  SUDS answers: {_suds_line([v for _, v in s['suds']])}")
    print("  who changed the intensity, and why:")
    for c in s["changes"]:
        print(f"    {c['count']:4d} × {c['who']}: {c['reason']}")
    why = ", ".join(f"{n} × {r}" for r, n in s["shield_reasons"].items())
    print(f"  safety shield interventions: {s['shield_interventions']}" + (f" ({why})" if why else ""))
    print(f"  ended: {s['ended']}")
    if s["no_signal"]:
        print(f"  {s['no_signal']}")
    print(f"log: {s['path']}")
    print(f"export it: exposure export {s['id']} --format csv --out ./export "
          f"--sessions-dir {cfg.sessions_dir}")
    return 0


def _suds_line(values: list[float]) -> str:
    """A few SUDS numbers as they are; many as first, peak, last and how many."""
    if not values:
        return "none asked"
    if len(values) <= 8:
        return ", ".join(f"{v:.0f}" for v in values)
    return (f"{len(values)} — first {values[0]:.0f}, peak {max(values):.0f}, last {values[-1]:.0f} "
            "(0-100; every one in 'exposure report')")


# ---------------------------------------------------------------------------------- sessions
def _add_sessions(sub) -> None:
    p = sub.add_parser("sessions", help="list recorded sessions",
                       description="List recorded sessions: id, patient, scene, start, duration, "
                                   "samples, controller and how each ended.")
    _sessions_dir_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON array of objects")
    p.set_defaults(func=cmd_sessions)


def cmd_sessions(args) -> int:
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
        print("  (none readable: see the warnings above)" if problems else "  (none yet: try 'exposure demo')")
    for r in rows:
        print(f"  {r['id']}  patient {r['patient']}  {r['scene']}  {r['start']}  "
              f"{r['duration_s'] / 60:.1f} min  {r['samples']} samples  {r['controller']}  {r['ended']}")
        if r["damaged"]:
            print(f"      DAMAGED: {'; '.join(r['problems'])}")
    return 0


# ---------------------------------------------------------------------------------- export
def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export sessions to CSV or Parquet",
                       description="Export one session to one table per record kind (samples, "
                                   "features, decisions, commands, suds, events, scene), or with "
                                   "--all every session as a hive-partitioned Parquet dataset.")
    p.add_argument("session", nargs="?", help="session id (or unique prefix, or path)")
    p.add_argument("--all", action="store_true", help="every session in --sessions-dir")
    p.add_argument("--format", default="csv", choices=("csv", "parquet"))
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite files already in --out")
    _sessions_dir_arg(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from engine.store.export import export_session

    d = sessions_dir(args)
    if args.all:
        from engine.store.dataset import export_all

        return export_all(d, args.format, args.out, force=args.force)
    if not args.session:
        raise ConfigError("export needs a SESSION id (see 'exposure sessions') or --all")
    path = find_session(d, args.session)
    counts = export_session(path, args.format, args.out, force=args.force)
    for kind, n in counts.items():
        print(f"{args.out / f'{kind}.{args.format}'}: {n} rows")
    return 0


# ---------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exposure", description="Adaptive VR exposure therapy: sessions, console, replay, export.")
    parser.add_argument("--version", action="version", version=f"exposure {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run(sub)
    _add_demo(sub)
    _add_sessions(sub)
    _add_export(sub)
    for mod in _PLUGINS:
        __import__(mod, fromlist=["register"]).register(sub)
    return parser


def _sigterm(signum, frame):  # noqa: ARG001
    raise Terminated


#: options whose value may look like a negative number ("--duration -5m"): argparse would take
#: it for an option and say "expected one argument"; joined as "--duration=-5m", the value's
#: own check says what is wrong with it
_VALUE_OPTIONS = ("--duration", "--from", "--speed", "--timeout", "--count")


def _join_negative_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _VALUE_OPTIONS and i + 1 < len(argv) and re.match(r"^-[\d.]", argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread (tests)
        pass
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS + (UserError,) as e:
        print(f"exposure: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("exposure: terminated" if isinstance(e, Terminated) else "exposure: interrupted", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # a file or folder the user can fix (permissions, a full disk, …)
        where = f": {e.filename}" if e.filename else ""
        print(f"exposure: error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        return 2
    except Exception as e:  # a defect of ours: one line, the traceback only when asked (-v)
        if getattr(args, "verbose", False):
            traceback.print_exc(file=sys.stderr)
        print(f"exposure: internal error ({type(e).__name__}: {_one_line(e)}); "
              "run again with -v to see where, and report it", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


