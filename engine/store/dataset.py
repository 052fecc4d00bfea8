"""Export every session as one hive-partitioned dataset per record kind (Parquet or CSV).

Layout (``exposure export --all --format parquet --out DIR``)::

    DIR/README.md                                 the schema below, with units
    DIR/<kind>/scene=<scene>/patient=<patient>/<session_id>.parquet

for kind in sessions, samples, features, decisions, commands, suds, events, scene. Every file of
a kind has the same columns (the session file's, typed, plus ``session_id``); ``scene`` and
``patient`` come from the folder names, so DuckDB, Polars, Spark and pyarrow read each kind as
one table, e.g. in DuckDB::

    SELECT patient, avg(hr) FROM read_parquet('DIR/features/*/*/*.parquet', hive_partitioning=true,
                                              hive_types_autocast=false) GROUP BY patient;

The export is written into a temporary folder and moved into place when complete. Sessions
that are damaged contribute what is intact (a warning says what is not); a file that cannot be
read at all is named and skipped, and the exit code is then 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from engine.store.export import EXPORT_KINDS, FORMATS, arrow_table
from engine.store.files import PATIENT_RE, SessionReader, StoreError, list_sessions, private_dir, private_file

KINDS = ("sessions",) + EXPORT_KINDS

#: column → (unit, meaning), per record kind. Time ``t`` is seconds from the session's start.
SCHEMA: dict[str, dict[str, tuple[str, str]]] = {
    "sessions": {
        "session_id": ("", "session id (also the file name)"),
        "started_at": ("ISO 8601", "local start time"), "started_wall": ("s", "Unix time at start"),
        "duration_s": ("s", "length of the session"), "controller": ("", "controller that ran it"),
        "sensor": ("", "HR source URL"), "seed": ("", "random seed"), "speed": ("", "clock speed"),
        "display": ("", "display mode"), "hierarchy": ("", "hierarchy name"),
        "end_reason": ("", "how it ended (empty: crashed or killed)"),
        "software_version": ("", "exposure version that wrote it"),
        "schema_version": ("", "session file schema version"),
        "problems": ("", "what could not be read from the file (empty: all of it)"),
        "course_id": ("", "the patient's course for the scene (its first session's id; null: no course)"),
        "course_session": ("", "1-based index of the session in its course (null: no course)"),
        "previous_session": ("", "id of the course's previous session (null: the first)"),
        "start_level": ("", "level the session started at"),
    },
    "samples": {
        "t": ("s", "time of the reading"), "wall": ("s", "Unix time of the reading"),
        "bpm": ("1/min", "heart rate the device reported (null: RR only)"),
        "rr_ms": ("ms", "JSON list of the RR intervals the reading carried"),
        "contact": ("", "sensor contact (null: not reported)"), "source": ("", "source URL"),
    },
    "features": {
        "t": ("s", "time"), "hr": ("1/min", "accepted heart rate"),
        "baseline": ("1/min", "resting baseline HR"), "hr_delta": ("1/min", "hr − baseline"),
        "hr_slope": ("1/min/s", "smoothed rate of change of HR"), "rmssd": ("ms", "RMSSD of RR intervals"),
        "quality": ("0..1", "signal quality"), "lost": ("", "signal lost"),
        "look_away": ("0..1", "share of recent time looking away (null: not measured)"),
    },
    "decisions": {
        "t": ("s", "time of the decision"), "who": ("", "baseline, policy, shield, therapist or patient"),
        "name": ("", "controller or origin"), "reason": ("", "why, in words"),
        "mode": ("", "arbiter mode"), "intensity": ("0..1", "intensity shown then"),
        "target_before": ("0..1", "target before"), "target_after": ("0..1", "target after"),
        "level_before": ("", "level index before"), "level_after": ("", "level index after"),
        "level_name_before": ("", "level name before"), "level_name_after": ("", "level name after"),
        "proposed": ("0..1 per decision", "change the controller proposed"),
        "shield": ("", "shield intervention (empty: none)"),
        "obs": ("", "JSON: the observation the controller saw"), "info": ("", "JSON: controller details"),
        "samples_seen": ("", "samples ingested before this decision"),
    },
    "commands": {
        "t": ("s", "tick time it was applied"), "type": ("", "command type"),
        "origin": ("", "therapist, patient, system"), "payload": ("", "JSON: the command"),
        "accepted": ("", "applied (false: refused)"), "error": ("", "why it was refused"),
    },
    "suds": {
        "t": ("s", "time of the answer"), "value": ("0..100", "SUDS rating"), "origin": ("", "who gave it"),
        "asked_t": ("s", "when it was asked (null: unprompted)"), "level": ("", "level index then"),
        "intensity": ("0..1", "intensity then"),
    },
    "events": {"t": ("s", "time"), "kind": ("", "event kind (shield, mode, connected, …)"),
               "detail": ("", "JSON: details")},
    "scene": {"t": ("s", "time"), "intensity": ("0..1", "intensity shown"), "level": ("", "level index"),
              "mode": ("", "arbiter mode"), "paused": ("", "calm scene shown"),
              "behaviour": ("", "JSON: what the scene measured")},
}
COMMON = {"session_id": ("", "session id"), "scene": ("", "partition: heights or crowds"),
          "patient": ("", "partition: pseudonymous patient id")}

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _part(value, fallback: str) -> str:
    v = str(value) if value is not None else ""
    return v if _SAFE.match(v) else fallback


def _with_units(table, kind: str):
    import pyarrow as pa

    doc = {**SCHEMA.get(kind, {}), **COMMON}
    fields = []
    for f in table.schema:
        unit, meaning = doc.get(f.name, ("", ""))
        fields.append(f.with_metadata({"unit": unit, "description": meaning}))
    return table.cast(pa.schema(fields))


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _sessions_table(reader: SessionReader):
    import pyarrow as pa

    m, info = reader.meta, reader.info()

    def s(k):
        v = m.get(k)
        return None if v is None else (v if isinstance(v, str) else json.dumps(v))

    h = m.get("hierarchy") if isinstance(m.get("hierarchy"), dict) else {}
    seed = m.get("seed") if isinstance(m.get("seed"), int) and not isinstance(m.get("seed"), bool) else None
    wall = m.get("started_wall")
    cols = {
        "session_id": pa.array([str(reader.id)], pa.string()),
        "started_at": pa.array([s("started_at")], pa.string()),
        "started_wall": pa.array([float(wall) if isinstance(wall, (int, float)) else None], pa.float64()),
        "duration_s": pa.array([float(info.duration_s)], pa.float64()),
        "controller": pa.array([s("controller")], pa.string()),
        "sensor": pa.array([s("sensor")], pa.string()),
        "seed": pa.array([seed], pa.int64()),
        "speed": pa.array([s("speed")], pa.string()),
        "display": pa.array([s("display")], pa.string()),
        "hierarchy": pa.array([None if h.get("name") is None else str(h.get("name"))], pa.string()),
        "end_reason": pa.array([s("end_reason")], pa.string()),
        "software_version": pa.array([s("software_version")], pa.string()),
        "schema_version": pa.array([int(reader.schema_version)], pa.int64()),
        "problems": pa.array(["; ".join(reader.problems)], pa.string()),
        "course_id": pa.array([s("course_id")], pa.string()),
        "course_session": pa.array([_int(m.get("course_session"))], pa.int64()),
        "previous_session": pa.array([s("previous_session")], pa.string()),
        "start_level": pa.array([_int(m.get("start_level"))], pa.int64()),
    }
    return pa.table(cols)


def _write(table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)


def schema_markdown(fmt: str = "parquet") -> str:
    lines = ["# Exposure sessions dataset", "",
             f"One hive-partitioned {fmt} dataset per record kind: `<kind>/scene=<scene>/patient=<patient>/"
             f"<session_id>.{fmt}`. Time `t` is seconds from the start of each session. JSON columns hold "
             "text. Read a kind as one table, e.g. DuckDB:", "",
             f"    SELECT * FROM read_{'parquet' if fmt == 'parquet' else 'csv'}('samples/*/*/*.{fmt}', "
             "hive_partitioning=true, hive_types_autocast=false);", "",
             "Every kind also has `session_id` (in the file) and `scene`, `patient` (from the folders).", ""]
    for kind in KINDS:
        lines += [f"## {kind}", "", "| column | unit | meaning |", "|---|---|---|"]
        lines += [f"| {c} | {u or '–'} | {d} |" for c, (u, d) in SCHEMA[kind].items()]
        lines.append("")
    return "\n".join(lines)


def export_all(sessions_dir: Path, fmt: str, out: Path, force: bool = False, stream=None) -> int:
    """Export every session in ``sessions_dir`` into ``out``; returns the exit code (0, or 1
    when some file could not be read at all)."""
    stream = stream or sys.stdout
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}: choose csv or parquet")
    out = Path(out).expanduser()
    infos, unreadable = list_sessions(sessions_dir)
    if not infos and not unreadable:
        raise StoreError(f"no sessions in {sessions_dir}; record one with 'exposure demo --sessions-dir "
                         f"{sessions_dir}' or point --sessions-dir elsewhere")
    out = private_dir(out, "export folder")
    existing = [k for k in KINDS if (out / k).exists()]
    if existing and not force:
        raise StoreError(f"{out / existing[0]} already exists; export into an empty folder or pass --force")
    tmp = Path(tempfile.mkdtemp(prefix=".export-all-", dir=out))
    rows = {k: 0 for k in KINDS}
    patients, scenes, warnings = set(), set(), list(unreadable)
    # Copies of one session (same id) are exported once: the largest file, the others named.
    by_id: dict[str, list] = {}
    for info in infos:
        by_id.setdefault(info.id, []).append(info)
    chosen = []
    for sid, group in by_id.items():
        group.sort(key=lambda i: (-i.path.stat().st_size, str(i.path)))
        chosen.append(group[0])
        warnings += [f"{i.path.name}: another copy of session {sid} (exported from {group[0].path.name}); "
                     "left out" for i in group[1:]]
    skipped = len(infos) - len(chosen)
    try:
        for info in chosen:
            try:
                reader = SessionReader(info.path)
            except StoreError as e:
                warnings.append(str(e))
                continue
            with reader:
                reader.verify()
                scene = _part(reader.meta.get("scene"), "unknown")
                pat = reader.meta.get("patient")
                patient = pat if isinstance(pat, str) and PATIENT_RE.match(pat) else "unknown"
                sid = _part(reader.id, info.path.stem)
                tables = {"sessions": _sessions_table(reader)}
                for kind in EXPORT_KINDS:
                    tables[kind] = arrow_table(reader, kind, extra={"session_id": sid})
                for kind, t in tables.items():
                    d = tmp / kind / f"scene={scene}" / f"patient={patient}"
                    for level in (tmp / kind, tmp / kind / f"scene={scene}", d):  # each 0700, whatever the umask
                        level.mkdir(exist_ok=True, mode=0o700)
                    _write(_with_units(t, kind), d / f"{sid}.{fmt}", fmt)
                    private_file(d / f"{sid}.{fmt}")
                    rows[kind] += t.num_rows
                warnings += [f"{info.path.name}: {p}" for p in reader.problems]
            patients.add(patient)
            scenes.add(scene)
        (tmp / "README.md").write_text(schema_markdown(fmt), encoding="utf-8")
        private_file(tmp / "README.md")
        for kind in KINDS:
            target = out / kind
            if (tmp / kind).exists():
                if target.exists():
                    shutil.rmtree(target)
                os.replace(tmp / kind, target)
        os.replace(tmp / "README.md", out / "README.md")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for w in warnings:
        print(f"exposure: warning: {w}", file=sys.stderr)
    n = rows["sessions"]
    print(f"exported {n} session(s) of {len(patients)} patient(s), scene(s) {', '.join(sorted(scenes)) or '–'}"
          f" → {out}", file=stream)
    for kind in KINDS:
        print(f"  {kind:<10} {rows[kind]:>9} rows   {out / kind}", file=stream)
    reader_fn = "read_parquet" if fmt == "parquet" else "read_csv"
    print(f"schema with units: {out / 'README.md'}; read with DuckDB: SELECT * FROM {reader_fn}("
          f"'{out}/samples/*/*/*.{fmt}', hive_partitioning=true, hive_types_autocast=false)", file=stream)
    return 1 if len(unreadable) or n < len(infos) - skipped else 0
