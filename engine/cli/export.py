"""``exposure export``: sessions to CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

from engine.cli.common import UserError, sessions_dir, sessions_dir_arg


def register(sub) -> None:
    p = sub.add_parser("export", help="export sessions to CSV or Parquet",
                       description="Export one session to one table per record kind (samples, "
                                   "features, decisions, commands, suds, events, scene), or with "
                                   "--all every session as a hive-partitioned Parquet dataset.")
    p.add_argument("session", nargs="?", help="session id (or unique prefix, or path)")
    p.add_argument("--all", action="store_true", help="every session in --sessions-dir")
    p.add_argument("--format", default="csv", choices=("csv", "parquet"))
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite files already in --out")
    sessions_dir_arg(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from engine.store.export import export_session
    from engine.store.files import find_session

    d = sessions_dir(args)
    if args.all:
        from engine.store.dataset import export_all

        return export_all(d, args.format, args.out, force=args.force)
    if not args.session:
        raise UserError("export needs a SESSION id (see 'exposure sessions') or --all")
    path = find_session(d, args.session)
    counts = export_session(path, args.format, args.out, force=args.force)
    for kind, n in counts.items():
        print(f"{args.out / f'{kind}.{args.format}'}: {n} rows")
    return 0
