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
