"""The ``exposure`` command line: a lazy table of commands (pip's model).

Each command lives in its own module under ``engine/cli/`` with ``register(subparsers)`` (its
options; light imports only) and the function it sets as ``func`` (which imports what it needs).
``exposure --help`` imports no command module; ``exposure CMD …`` imports only CMD's. Errors a
user can fix become one line on stderr and exit status 2, here and only here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import signal
import sys
import traceback

from engine import __version__
from engine.errors import Terminated

#: name → (module, one-line summary), in the order ``--help`` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("engine.cli.run", "run an exposure session"),
    "demo": ("engine.cli.demo", "a short simulated session, no hardware and no display needed"),
    "sessions": ("engine.cli.sessions", "list recorded sessions"),
    "replay": ("engine.cli.replay",
               "replay a logged session: re-derive its decisions, try another controller, or re-enact it"),
    "report": ("engine.cli.report", "a self-contained HTML report of a session"),
    "export": ("engine.cli.export", "export sessions to CSV or Parquet"),
    "sensors": ("engine.cli.sensors", "find heart-rate straps and watch a sensor's samples"),
    "snapshot": ("engine.cli.scenes", "render a scene offscreen to PNG files"),
    "evaluate": ("engine.cli.evaluate", "compare controllers on virtual patients"),
    "calibrate": ("engine.cli.calibrate", "check the virtual patients against published outcomes of exposure therapy"),
    "train": ("engine.cli.train", "train the RL policy on virtual patients"),
}


def user_errors() -> tuple[type[BaseException], ...]:
    """The error roots a user can fix: ours, and those of the rooms that import nothing of ours.
    Imported here, when a command has failed, so that ``--help`` stays light."""
    from engine.errors import ExposureError
    from policy.errors import PolicyError
    from scenes.hierarchy import HierarchyError
    from sensors.errors import SensorError

    return (ExposureError, PolicyError, SensorError, HierarchyError)


def _chosen(argv: list[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` has its options (and its module) loaded.
    With ``argv=None`` every command is loaded (for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="exposure", description="Adaptive VR exposure therapy: sessions, console, replay, export.")
    parser.add_argument("--version", action="version", version=f"exposure {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = _chosen(argv) if argv is not None else None
    for name, (module, summary) in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=summary, add_help=False)
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


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread (tests)
        pass
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print("exposure: terminated" if terminated else "exposure: interrupted", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        if isinstance(e, user_errors()):
            print(f"exposure: error: {_one_line(e)}", file=sys.stderr)
            return 2
        if isinstance(e, OSError):  # a file or folder the user can fix (permissions, a full disk, …)
            where = f": {e.filename}" if e.filename else ""
            print(f"exposure: error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
            return 2
        # a defect of ours: one line, the traceback only when asked (-v)
        if getattr(args, "verbose", False):
            traceback.print_exc(file=sys.stderr)
        print(f"exposure: internal error ({type(e).__name__}: {_one_line(e)}); "
              "run again with -v to see where, and report it", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
