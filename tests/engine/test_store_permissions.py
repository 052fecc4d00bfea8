"""Everything holding patient data is 0600 in a 0700 folder, whatever the umask."""

from __future__ import annotations

import io
import logging
import os
import stat
from pathlib import Path

import pytest

from engine.research.report import write_report
from engine.store.dataset import export_all
from engine.store.export import export_session
from tests.engine.research_sessions import record


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> tuple[set[int], set[int]]:
    dirs, files = {stat.S_IMODE(root.stat().st_mode)}, set()
    for p in root.rglob("*"):
        (dirs if p.is_dir() else files).add(stat.S_IMODE(p.stat().st_mode))
    return dirs, files


def test_sessions_exports_and_reports_are_private_and_an_open_folder_is_tightened(tmp_path, loose_umask, caplog):
    sessions = tmp_path / "sessions"
    sessions.mkdir(mode=0o755)
    os.chmod(sessions, 0o755)
    with caplog.at_level(logging.WARNING, logger="engine.store.files"):
        path = record(sessions, duration_s=120.0)
    assert stat.S_IMODE(sessions.stat().st_mode) == 0o700
    warned = [r.getMessage() for r in caplog.records if "open to other users" in r.getMessage()]
    assert len(warned) == 1 and "755" in warned[0] and "700" in warned[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    for fmt in ("csv", "parquet"):
        out = tmp_path / f"one-{fmt}"
        export_session(path, fmt, out)
        dirs, files = _modes(out)
        assert dirs == {0o700} and files == {0o600}, (fmt, dirs, files)

    existing = tmp_path / "all"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    assert export_all(sessions, "parquet", existing, stream=io.StringIO()) == 0
    dirs, files = _modes(existing)
    assert dirs == {0o700} and files == {0o600}, (dirs, files)

    page = write_report(path, tmp_path / "reports" / "r.html")
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700


def test_new_parent_folders_are_private_and_existing_ones_left_alone(tmp_path, loose_umask):
    """``mkdir -p`` gives the parents the umask's mode: every folder a command makes for patient
    data is 0700, the folders that already existed keep their mode, and files are 0600 even when
    they existed before with a looser mode."""
    from engine.cli import main

    os.chmod(tmp_path, 0o755)
    path = record(tmp_path / "sessions", duration_s=120.0)

    page = write_report(path, tmp_path / "reports" / "deeper" / "r.html")
    assert stat.S_IMODE((tmp_path / "reports").stat().st_mode) == 0o700
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755  # not ours: left as it was

    out = tmp_path / "replays" / "one"
    assert main(["replay", str(path), "--out", str(out)]) == 0
    assert main(["replay", str(path), "--controller", "hr-band", "--out", str(out)]) == 0
    dirs, files = _modes(tmp_path / "replays")
    assert dirs == {0o700} and files == {0o600}, (dirs, files)
    assert sorted(p.name for p in out.iterdir()) == ["counterfactual.csv", "counterfactual.png", "replay.json"]

    loose = out / "replay.json"
    os.chmod(loose, 0o644)
    assert main(["replay", str(path), "--out", str(out)]) == 0
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_replay_out_naming_a_file_is_one_line(tmp_path, capsys):
    from engine.cli import main

    path = record(tmp_path / "sessions", duration_s=60.0)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["replay", str(path), "--out", str(blocker)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder" in err[0] and "Traceback" not in err[0], err
    assert main(["replay", str(path), "--out", str(blocker / "under")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blocker / "under") in err[0], err
