"""What the commands share: the sessions folder option and the user-error class. Light imports only."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import ExposureError


class UserError(ExposureError):
    """Raised by commands for a problem the user can fix."""


def sessions_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions-dir", type=Path, default=None,
                   help="where session files live (default: a per-user data folder, "
                        "shown by 'exposure sessions')")


def sessions_dir(args) -> Path:
    if args.sessions_dir is not None:
        return args.sessions_dir
    from engine.session.config import default_sessions_dir

    return default_sessions_dir()


def warn(problems: list[str]) -> None:
    import sys

    for p in problems:
        print(f"exposure: warning: {p}", file=sys.stderr)
