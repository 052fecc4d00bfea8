"""Bad session files: truncated, corrupted, older or newer schema. Read what is intact, say what
is not, never crash."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.research.replay import ReplayError, load_log, rederive
from engine.store.files import SCHEMA_VERSION, SessionReader, StoreError
from engine.store.summary import summarize
from tests.conftest import run_cli
from tests.engine.research_sessions import record


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return record(tmp_path_factory.mktemp("s"), duration_s=400.0,
                  script=((100.0, {"type": "set_level", "level": 2}), (200.0, {"type": "suds", "value": 30}),
                          (300.0, {"type": "auto"})))


def _read_everything(path):
    """Everything the research tools read; only StoreError (a clean one-line error) may come out."""
    try:
        with SessionReader(path) as r:
            counts = {k: len(r.rows(k)) for k in r.tables}
            r.info()
            problems = list(r.problems)
    except StoreError as e:
        assert "\n" not in str(e)
        return None, [str(e)]
    summarize(path)
    try:
        res = rederive(load_log(path))
    except ReplayError as e:
        assert "\n" not in str(e)
    else:
        assert res.n_replayed >= 0
    return counts, problems


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(0.0, 1.0))
def test_a_file_cut_anywhere_reads_what_is_intact(good, tmp_path, frac):
    data = good.read_bytes()
    bad = tmp_path / "cut.session"
    bad.write_bytes(data[:int(len(data) * frac)])
    for extra in ("-wal", "-shm"):
        (tmp_path / f"cut.session{extra}").unlink(missing_ok=True)
    counts, problems = _read_everything(bad)
    with SessionReader(good) as r:
        full = {k: r.count(k) for k in r.tables}
    if counts is not None:
        for k, n in counts.items():
            assert n <= full[k]
        if any(counts[k] < full[k] for k in counts):
            assert problems  # what is missing is said


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=20))
def test_corrupted_bytes_never_crash_the_readers(good, tmp_path, flips):
    data = bytearray(good.read_bytes())
    for where, byte in flips:
        data[int(where * len(data))] = byte
    bad = tmp_path / "flipped.session"
    bad.write_bytes(bytes(data))
    for extra in ("-wal", "-shm"):
        (tmp_path / f"flipped.session{extra}").unlink(missing_ok=True)
    _read_everything(bad)


def test_a_cut_file_keeps_its_early_rows_and_says_what_is_lost(good, tmp_path):
    data = good.read_bytes()
    with SessionReader(good) as r:
        want = r.records("samples")
    bad = tmp_path / "cut.session"
    cuts = []
    for pages in range(len(data) // 4096, 0, -1):  # every whole-page cut, longest first
        bad.write_bytes(data[:pages * 4096])
        with SessionReader(bad) as r:
            got = r.records("samples")
            problems = list(r.problems)
        assert got == want[:len(got)]  # what is read is what was written, in order
        if problems:
            assert any("cut short" in p for p in problems)
        if 0 < len(got) < len(want):
            cuts.append(pages)
            assert any("table samples is damaged" in p for p in problems)
    assert cuts  # some cut falls inside the samples
    bad.write_bytes(data[:cuts[0] * 4096])
    p = run_cli("replay", str(bad), "--sessions-dir", tmp_path)
    assert p.returncode == 3 and "cannot verify: damaged" in p.stdout and "MISMATCH" not in p.stdout
    assert "Traceback" not in p.stderr
    assert p.stderr.count("warning: the file is damaged or cut short") == 1


def test_an_older_schema_reads_with_missing_columns_empty_and_replays_by_time(good, tmp_path):
    old = tmp_path / "old.session"
    shutil.copy(good, old)
    db = sqlite3.connect(old)
    db.execute("ALTER TABLE decisions DROP COLUMN samples_seen")
    # as an older version wrote it: no t0/configs, no checksums, version 0 in the header and in meta
    db.execute("DELETE FROM meta WHERE key IN ('t0', 'core_config', 'feature_config', 'digests', 'digests_so_far')")
    db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    db.execute("PRAGMA user_version=0")
    db.commit()
    db.close()
    with SessionReader(old) as r:
        assert r.schema_version == 0
        decs = r.records("decisions")
        assert decs and all(d["samples_seen"] is None for d in decs)
        assert any("older schema version 0" in p and "decisions.samples_seen" in p for p in r.problems)
    res = rederive(load_log(old))
    assert any("without samples_seen" in p for p in res.problems)
    assert any("start time" in p for p in res.problems)
    # with no record of what each decision saw, samples are fed by time: a speed-max session
    # (samples ingested in the tick at their own time) still re-derives
    assert res.match


def test_a_newer_schema_is_refused_with_one_line(good, tmp_path):
    new = tmp_path / "new.session"
    shutil.copy(good, new)
    db = sqlite3.connect(new)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")  # as a newer version writes it: header and meta
    db.execute(f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    p = run_cli("replay", str(new), "--sessions-dir", tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().endswith("newer than this software reads (1); upgrade exposure to read it")


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 10, b"SQLite format 3\x00" + b"\xff" * 200])
def test_junk_files_get_a_clear_error(tmp_path, content):
    bad = tmp_path / "junk.session"
    bad.write_bytes(content)
    for cmd in (["replay", str(bad)], ["report", str(bad), "--out", str(tmp_path / "r.html")]):
        p = run_cli(*cmd, "--sessions-dir", tmp_path)
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("exposure: error: ") and p.stderr.count("\n") == 1
