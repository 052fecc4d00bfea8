"""Export a session to one table per record kind (CSV or Parquet).

Time ``t`` is seconds from session start. Lists and objects (RR intervals, observations,
payloads) are JSON text in CSV, and JSON text in Parquet too, so both carry the same values.
Files are written into a temporary folder and moved into place only when every table is
complete, so an interrupted export leaves nothing half-written; existing files are never
overwritten unless asked.
"""

from __future__ import annotations

import csv
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from engine.store.files import TABLES, SessionReader, StoreError, open_private, private_dir, private_file

EXPORT_KINDS = ("samples", "features", "decisions", "commands", "suds", "events", "scene")
FORMATS = ("csv", "parquet")

ARROW_TYPES = {"REAL": "float64", "INTEGER": "int64", "TEXT": "string"}


def arrow_table(reader: SessionReader, kind: str, extra: dict | None = None):
    """One record kind as a pyarrow Table with typed columns (``extra`` adds constant columns)."""
    import pyarrow as pa

    cols = TABLES[kind]
    rows = reader.rows(kind)
    arrays = {}
    for i, (name, typ) in enumerate(cols):
        vals = [r[i] if i < len(r) else None for r in rows]
        if name == "contact" or name in ("lost", "accepted", "paused"):
            vals = [None if v is None else bool(v) for v in vals]
            arrays[name] = pa.array(vals, type=pa.bool_())
        else:
            arrays[name] = pa.array(vals, type=getattr(pa, ARROW_TYPES[typ])())
    for k, v in (extra or {}).items():
        arrays[k] = pa.array([v] * len(rows), type=pa.string())
    return pa.table(arrays)


def _write_csv(reader: SessionReader, kind: str, path: Path) -> int:
    n = 0
    with open_private(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([c for c, _ in TABLES[kind]])
        for row in reader.rows(kind):
            w.writerow(["" if v is None else v for v in row])
            n += 1
    return n


def export_session(path: Path, fmt: str, out: Path, force: bool = False) -> dict[str, int]:
    """Write one file per record kind into ``out``; returns rows written per kind."""
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}: choose csv or parquet")
    out = Path(out).expanduser()
    made = not os.path.lexists(out)  # a folder made for this export is removed again if it fails
    out = private_dir(out, "export folder")
    targets = {k: out / f"{k}.{fmt}" for k in EXPORT_KINDS}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not force:
        raise StoreError(f"{existing[0]} already exists; export into an empty folder or pass --force")
    counts: dict[str, int] = {}
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    done = False
    try:
        with SessionReader(path) as r:
            for kind in EXPORT_KINDS:
                p = tmp / targets[kind].name
                if fmt == "csv":
                    counts[kind] = _write_csv(r, kind, p)
                else:
                    import pyarrow.parquet as pq

                    t = arrow_table(r, kind)
                    pq.write_table(t, p)
                    counts[kind] = t.num_rows
                private_file(p)
            r.verify()
            if r.damaged:  # the reader reads around damage; a single export is all or nothing
                raise sqlite3.DatabaseError(r.problems[0])
        for kind in EXPORT_KINDS:
            os.replace(tmp / targets[kind].name, targets[kind])
        done = True
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is damaged ({e}); nothing was exported. "
                         "Try 'exposure sessions' to see what is readable") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made and not done:
            try:
                out.rmdir()  # only if empty: nothing of anyone else's is removed
            except OSError:
                pass
    return counts
