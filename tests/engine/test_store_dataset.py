"""export --all: a hive-partitioned dataset that DuckDB reads as one table per record kind."""

from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from engine.store.files import SessionReader, table_digests
from tests.conftest import run_cli
from tests.engine.research_sessions import record


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("sessions")
    paths = [record(d, duration_s=300.0, seed=1, script=()),
             record(d, duration_s=200.0, seed=2),
             record(d, duration_s=250.0, seed=3, script=((50.0, {"type": "suds", "value": 20}),))]
    # a second patient: rename the pseudonymous id in one file's meta
    import sqlite3

    db = sqlite3.connect(paths[2])
    db.execute("UPDATE meta SET value = '\"P042\"' WHERE key = 'patient'")
    db.execute("UPDATE meta SET value = ? WHERE key = 'digests'", (json.dumps(table_digests(db)),))  # still whole
    db.commit()
    db.close()
    return d, paths


def _q(sql: str):
    return duckdb.sql(sql).fetchall()


def test_duckdb_reads_each_kind_as_one_dataset(sessions, tmp_path):
    d, paths = sessions
    out = tmp_path / "ds"
    p = run_cli("export", "--all", "--format", "parquet", "--out", out, "--sessions-dir", d)
    assert p.returncode == 0, p.stderr
    assert "exported 3 session(s) of 2 patient(s)" in p.stdout
    want = {}
    for path in paths:
        with SessionReader(path) as r:
            for kind in ("samples", "features", "decisions", "commands", "suds", "events", "scene"):
                want[kind] = want.get(kind, 0) + r.count(kind)
    for kind, n in want.items():
        glob = f"{out}/{kind}/*/*/*.parquet"
        (got,), = _q(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)")
        assert got == n, kind
    glob = f"{out}/samples/*/*/*.parquet"
    rows = _q(f"SELECT patient, scene, count(DISTINCT session_id), count(*), sum(bpm) FROM read_parquet('{glob}', "
              "hive_partitioning=true, hive_types_autocast=false) GROUP BY ALL ORDER BY patient")
    per = {}
    for path in paths:
        with SessionReader(path) as r:
            pat = r.meta["patient"]
            bpm = [x["bpm"] for x in r.records("samples") if x["bpm"] is not None]
            c = per.setdefault(pat, [set(), 0, 0.0])
            c[0].add(r.id)
            c[1] += r.count("samples")
            c[2] += sum(bpm)
    assert [(a, b, c, e) for a, b, c, e, _ in rows] == [
        (pat, "heights", len(v[0]), v[1]) for pat, v in sorted(per.items())]
    for (pat, *_rest, total) in rows:
        assert total == pytest.approx(per[pat][2])
    # one row per session, typed; the sessions table joins to the others
    (n, dur), = _q(f"SELECT count(*), sum(duration_s) FROM read_parquet('{out}/sessions/*/*/*.parquet', "
                   "hive_partitioning=true)")
    assert n == 3 and dur == pytest.approx(750.0)
    (joined,), = _q(f"SELECT count(*) FROM read_parquet('{out}/suds/*/*/*.parquet', hive_partitioning=true) s "
                    f"JOIN read_parquet('{out}/sessions/*/*/*.parquet', hive_partitioning=true) x USING (session_id)")
    assert joined == want["suds"]
    # types and units travel with the data
    f = next((out / "features").rglob("*.parquet"))
    schema = pq.read_schema(f)
    assert str(schema.field("hr").type) == "double" and str(schema.field("lost").type) == "bool"
    assert schema.field("hr").metadata[b"unit"] == b"1/min"
    assert "| rmssd | ms |" in (out / "README.md").read_text()


def test_csv_dataset_reads_the_same(sessions, tmp_path):
    d, paths = sessions
    out = tmp_path / "csv"
    run_cli("export", "--all", "--format", "csv", "--out", out, "--sessions-dir", d, check=True)
    (n,), = _q(f"SELECT count(*) FROM read_csv('{out}/decisions/*/*/*.csv', hive_partitioning=true)")
    total = 0
    for path in paths:
        with SessionReader(path) as r:
            total += r.count("decisions")
    assert n == total


def test_existing_dataset_is_kept_unless_forced(sessions, tmp_path):
    d, _ = sessions
    out = tmp_path / "ds"
    run_cli("export", "--all", "--format", "parquet", "--out", out, "--sessions-dir", d, check=True)
    before = sorted(p.name for p in out.rglob("*.parquet"))
    p = run_cli("export", "--all", "--format", "parquet", "--out", out, "--sessions-dir", d)
    assert p.returncode == 2 and "already exists" in p.stderr and "--force" in p.stderr
    p = run_cli("export", "--all", "--format", "parquet", "--out", out, "--sessions-dir", d, "--force")
    assert p.returncode == 0
    assert sorted(p.name for p in out.rglob("*.parquet")) == before
    assert not [x for x in out.iterdir() if x.name.startswith(".export")]


def test_unreadable_and_damaged_files_are_named_and_the_rest_exported(sessions, tmp_path):
    d, paths = sessions
    d2 = tmp_path / "mixed"
    d2.mkdir()
    for p in paths:
        shutil.copy(p, d2)
    (d2 / "junk.session").write_bytes(b"this is not a session" * 50)
    import sqlite3

    full = tmp_path / "full.session"
    shutil.copy(paths[0], full)
    db = sqlite3.connect(full)
    db.execute("UPDATE meta SET value = '\"cut-copy\"' WHERE key = 'session_id'")
    # a whole copy under another id, checksums to match (else the edit itself is damage)
    db.execute("UPDATE meta SET value = ? WHERE key = 'digests'", (json.dumps(table_digests(db)),))
    db.commit()
    db.close()
    data = full.read_bytes()
    (d2 / "cut.session").write_bytes(data[:len(data) // 2 // 4096 * 4096])
    shutil.copy(paths[1], d2 / "copy-of-one.session")
    out = tmp_path / "ds"
    p = run_cli("export", "--all", "--format", "parquet", "--out", out, "--sessions-dir", d2)
    assert p.returncode == 1
    assert "junk.session is not a readable session file" in p.stderr
    assert "cut.session: the file is damaged or cut short" in p.stderr
    assert "another copy of session" in p.stderr and "left out" in p.stderr
    (n,), = _q(f"SELECT count(*) FROM read_parquet('{out}/sessions/*/*/*.parquet', hive_partitioning=true)")
    assert n == 4  # three whole, one cut short
    (probs,), = _q(f"SELECT count(*) FROM read_parquet('{out}/sessions/*/*/*.parquet', hive_partitioning=true) "
                   "WHERE problems <> ''")
    assert probs == 1


def test_no_sessions_is_a_clear_error(tmp_path):
    p = run_cli("export", "--all", "--format", "parquet", "--out", tmp_path / "o", "--sessions-dir", tmp_path / "none")
    assert p.returncode == 2
    assert p.stderr.startswith("exposure: error: no sessions in")
