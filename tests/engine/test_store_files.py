"""The session store: permissions, schema version, pseudonymous ids, damaged files."""

from __future__ import annotations

import sqlite3
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.session.live import Session, SessionConfig
from engine.store.export import export_session
from engine.store.files import (
    SCHEMA_VERSION,
    SessionReader,
    SessionWriter,
    StoreError,
    find_session,
    list_sessions,
    validate_patient,
)


def short_session(d, minutes=3, seed=1, controller="ladder"):
    cfg = SessionConfig(sensor=f"sim://?seed={seed}", controller=controller, display="none",
                        duration_s=minutes * 60, speed="max", patient="P001", sessions_dir=d,
                        seed=seed)
    s = Session(cfg)
    s.run_headless()
    return s.path


def test_file_is_owner_only_with_schema_version_and_pseudonymous_id(tmp_path):
    path = short_session(tmp_path / "s")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with SessionReader(path) as r:
        assert r.schema_version == SCHEMA_VERSION
        assert r.meta["schema_version"] == SCHEMA_VERSION
        assert r.meta["patient"] == "P001"
        assert r.meta["controller"] == "ladder"
        assert r.meta["sensor"] == "sim://?seed=1"
        assert r.meta["end_reason"] == "completed"
        assert r.meta["duration_s"] == pytest.approx(180.0)
        n = r.count("samples")
        # One sample a second from the virtual strap, minus dropouts and the strap-on seconds.
        assert 150 <= n <= 180
        assert r.count("features") == n
        assert r.count("scene") >= 180
        # Every controller decision is there (every 5 s), holds included.
        assert r.count("decisions") >= 180 // 5 - 1


@pytest.mark.parametrize("pid", ["John Smith", "", "a" * 33, "../etc", "P 1", "-x"])
def test_names_and_odd_ids_are_refused(pid, tmp_path):
    with pytest.raises(StoreError, match="pseudonymous"):
        SessionWriter(tmp_path, pid, {})
    assert not list(tmp_path.iterdir())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_patient_id_validation_never_escapes(pid):
    try:
        assert validate_patient(pid) == pid
    except StoreError as e:
        assert "pseudonymous" in str(e)


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = short_session(tmp_path / "s", minutes=1)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")  # as a newer version writes it: header and meta
    db.execute(f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this software reads"):
        SessionReader(path)
    infos, problems = list_sessions(tmp_path / "s")
    assert infos == [] and len(problems) == 1


def test_garbage_file_is_reported_not_crashing(tmp_path):
    d = tmp_path / "s"
    good = short_session(d, minutes=1)
    (d / "junk.session").write_bytes(b"this is not sqlite" * 100)
    infos, problems = list_sessions(d)
    assert [i.path for i in infos] == [good]
    assert len(problems) == 1 and "junk.session" in problems[0]


def test_existing_file_is_never_overwritten(tmp_path):
    w = SessionWriter(tmp_path, "P1", {}, session_id="fixed")
    w.write("events", (0.0, "x", {}))
    w.close()
    with pytest.raises(StoreError, match="refusing to overwrite"):
        SessionWriter(tmp_path, "P1", {}, session_id="fixed")
    with SessionReader(tmp_path / "fixed.session") as r:
        assert r.count("events") == 1


def test_find_session_by_prefix_and_ambiguity(tmp_path):
    for sid in ("abc-1", "abc-2", "xyz"):
        SessionWriter(tmp_path, "P1", {}, session_id=sid).close()
    assert find_session(tmp_path, "xy").name == "xyz.session"
    with pytest.raises(StoreError, match="ambiguous"):
        find_session(tmp_path, "abc")
    with pytest.raises(StoreError, match="no session"):
        find_session(tmp_path, "nope")


def test_export_of_a_damaged_file_fails_cleanly_and_writes_nothing(tmp_path):
    path = short_session(tmp_path / "s", minutes=20)
    data = bytearray(path.read_bytes())
    # Damage pages in the second half of the file, as a bad disk or a botched copy would.
    for i in range(len(data) // 2, len(data), 4096):
        data[i:i + 200] = b"\xff" * 200
    bad = tmp_path / "bad.session"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(StoreError) as e:
        export_session(bad, "csv", out)
    assert "\n" not in str(e.value)
    assert not out.exists(), "a failed export left its folder behind"
    out.mkdir()  # a folder that was there before is kept, empty
    with pytest.raises(StoreError):
        export_session(bad, "csv", out)
    assert [p.name for p in out.iterdir()] == [], "an interrupted export left files behind"
    # The original is untouched.
    assert path.read_bytes() != bytes(data)


def test_export_refuses_to_overwrite(tmp_path):
    path = short_session(tmp_path / "s", minutes=1)
    out = tmp_path / "out"
    export_session(path, "csv", out)
    before = (out / "samples.csv").read_text()
    with pytest.raises(StoreError, match="already exists"):
        export_session(path, "csv", out)
    assert (out / "samples.csv").read_text() == before


def test_export_into_a_file_says_it_is_a_file(tmp_path):
    path = short_session(tmp_path / "s", minutes=1)
    f = tmp_path / "notes.txt"
    f.write_text("keep")
    for out in (f, f / "X", f / "X" / "Y"):
        with pytest.raises(StoreError, match=f"{f} is a file, not a folder"):
            export_session(path, "csv", out)
    assert f.read_text() == "keep"


def test_text_no_utf8_can_hold_is_kept_escaped_and_loses_nothing(tmp_path):
    # a lone surrogate reaching the store from anywhere (the console refuses it at its door)
    w = SessionWriter(tmp_path, "P1", {}, flush_s=3600)
    w.write("events", (1.0, "note", '{"a":1}'))
    w.write("events", (2.0, "bad\ud800", "é\udcff"))
    w.flush()
    w.write("events", (3.0, "after", "y"))
    w.close(end_reason="done")
    assert w.flush_errors == 0
    with SessionReader(w.path) as r:
        assert [(e["t"], e["kind"], e["detail"]) for e in r.records("events")] == [
            (1.0, "note", '{"a":1}'), (2.0, "bad\\ud800", "é\\udcff"), (3.0, "after", "y")]
        assert r.verify() and r.problems == [] and r.meta["end_reason"] == "done"


def test_the_listing_says_when_a_session_had_no_signal(tmp_path):
    from tests.conftest import run_cli

    d = tmp_path / "D"
    silent = "no signal: not one sample from serial:///dev/ttyUSB9 in 0:15"
    for i, (line, s) in enumerate(((None, 0.0), (silent, 15.0))):
        w = SessionWriter(d, "P1", {"started_at": f"2026-11-30T04:0{i}:00+0000"})
        w.close(end_reason="completed", duration_s=15.0, no_signal_s=s, no_signal=line or "")
    p = run_cli("sessions", "--sessions-dir", d, check=True)
    lines = p.stdout.splitlines()
    assert lines[-1] == f"      {silent}"
    assert lines[-2].endswith("completed") and lines[-3].endswith("completed") and len(lines) == 4
    import json

    rows = json.loads(run_cli("sessions", "--sessions-dir", d, "--json", check=True).stdout)
    assert [r["no_signal"] for r in rows] == [None, silent]
