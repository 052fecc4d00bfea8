"""The session report opens in headless Chromium and shows its plots and numbers."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import shutil
import stat

import pytest

from engine.store.summary import summarize
from tests.conftest import run_cli
from tests.engine.research_sessions import record

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    pw_api = pytest.importorskip("playwright.sync_api")
    with pw_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return record(tmp_path_factory.mktemp("sessions"))


def _open(browser, path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    # a self-contained page: any request but the file itself is a failure
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests


def test_report_opens_in_chromium_with_decoded_plots_and_the_numbers(browser, session, tmp_path):
    out = tmp_path / "report.html"
    p = run_cli("report", str(session), "--out", out, "--sessions-dir", session.parent)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    page, requests = _open(browser, out)
    imgs = page.evaluate("Array.from(document.images).map(i => ({ok: i.complete, w: i.naturalWidth,"
                         " h: i.naturalHeight, src: i.src.slice(0, 22)}))")
    assert len(imgs) == 1
    assert imgs[0]["ok"] and imgs[0]["w"] > 800 and imgs[0]["h"] > 600
    assert imgs[0]["src"] == "data:image/png;base64,"
    assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
    text = page.inner_text("body")
    s = summarize(session)
    assert f"{s['baseline_hr']:.0f} bpm" in text
    assert f"{s['peak_hr']:.0f} bpm" in text
    assert f"Patient {s['patient']}" in text
    assert "safety shield interventions" in text.lower()
    # the commands of the therapist script, each at its time
    rows = page.evaluate("Array.from(document.querySelectorAll('tr')).map(r => r.innerText)")
    assert any(r.startswith("06:40") and "command: set_level" in r and "level=3" in r for r in rows)
    assert any(r.startswith("15:00") and "auto → paused" in r for r in rows)
    assert any(r.startswith("16:40") and "railing helps" in r for r in rows)
    assert any("refused: resume: the session is not paused" in r for r in rows)
    suds = [r for r in rows if "SUDS rating" in r]
    assert len(suds) == len(s["suds"]) >= 3
    # the shield rows are the logged shield events
    assert sum(1 for r in rows if "\tsafety shield\t" in r) == s["shield_interventions"]
    png = page.screenshot(full_page=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page.close()


def test_the_embedded_plot_is_a_real_image(session, tmp_path):
    from PIL import Image

    out = tmp_path / "r.html"
    run_cli("report", str(session), "--out", out, check=True)
    b64 = re.search(r'src="data:image/png;base64,([^"]+)"', out.read_text()).group(1)
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    assert im.size[0] > 800
    # not blank: many distinct colours (lines, shading, markers)
    assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50


def test_report_refuses_to_overwrite_and_names_a_bad_out(session, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("keep me")
    p = run_cli("report", str(session), "--out", out)
    assert p.returncode == 2 and "already exists" in p.stderr
    assert out.read_text() == "keep me"
    p = run_cli("report", str(session), "--out", tmp_path / "r.pdf")
    assert p.returncode == 2 and "ending in .html" in p.stderr


def test_report_of_a_damaged_session_shows_what_is_intact(browser, session, tmp_path):
    bad = tmp_path / "damaged.session"
    shutil.copy(session, bad)
    data = bytearray(bad.read_bytes())
    cut = len(data) * 2 // 3
    bad.write_bytes(bytes(data[:cut - cut % 4096]))
    out = tmp_path / "r.html"
    p = run_cli("report", str(bad), "--out", out)
    assert p.returncode == 0, p.stderr
    page, _ = _open(browser, out)
    assert "could not be read" in page.inner_text("body")
    assert page.evaluate("document.images[0].naturalWidth") > 0
    page.close()


def test_a_drawing_is_rasterised_once_and_the_memo_gives_what_a_fresh_drawing_gives(session):
    from engine.research.replay import load_log
    from engine.research.report import Sketch, timeline_sketch

    log = load_log(session)
    Sketch._memo.clear()
    fresh = timeline_sketch(log).png()
    again = timeline_sketch(log)  # worked out again from the log: the same calls
    assert again.key() in Sketch._memo and again.png() == fresh
    Sketch._memo.clear()
    assert again.png() == fresh  # drawing is deterministic: the memo changes nothing but the time
    # one sample's heart rate one bpm off: another drawing, drawn anew
    i = next(i for i, s in enumerate(log.samples) if s.bpm == s.bpm)
    log.samples[i] = dataclasses.replace(log.samples[i], bpm=log.samples[i].bpm + 1.0)
    other = timeline_sketch(log)
    assert other.key() != again.key() and other.key() not in Sketch._memo
    assert other.png() != fresh
    assert len(Sketch._memo) == 2


def test_level_names_are_whole_on_the_intensity_axis(session):
    from engine.research.replay import load_log
    from engine.research.report import timeline_figure

    log = load_log(session)
    levels = log.meta["hierarchy"]["levels"]
    fig = timeline_figure(log)
    fig.canvas.draw()
    labels = [t for t in fig.axes[1].get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == [f"L{i} {name}" for i, (name, _) in enumerate(levels)]
    width = fig.bbox.width
    for t in labels:  # every label lies inside the image, none cut at its left edge
        box = t.get_window_extent()
        assert 0 <= box.x0 < box.x1 <= width, (t.get_text(), box)


def test_an_out_that_is_a_folder_or_under_a_file_gets_its_own_words(session, tmp_path):
    folder = tmp_path / "r.html"
    folder.mkdir()
    for force in ([], ["--force"]):
        p = run_cli("report", str(session), "--out", folder, *force)
        assert p.returncode == 2 and p.stderr.strip().splitlines() == [
            f"exposure: error: --out {folder} is a folder; give the report's file name (ending in .html)"]
    f = tmp_path / "notes.txt"
    f.write_text("keep")
    p = run_cli("report", str(session), "--out", f / "r.html")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"exposure: error: cannot write {f / 'r.html'}: {f} is a file, not a folder"]
    assert f.read_text() == "keep" and list(folder.iterdir()) == []


def test_a_note_with_a_lone_surrogate_logged_by_an_older_version_is_shown_escaped(tmp_path):
    import json
    import sqlite3

    from engine.store.files import table_digests

    path = record(tmp_path / "D", duration_s=60.0, script=((10.0, {"type": "annotate", "text": "ok"}),))
    db = sqlite3.connect(path)  # as the console let it through before: JSON escapes it in the log
    db.execute("UPDATE commands SET payload = ? WHERE type = 'annotate'",
               (json.dumps({"type": "annotate", "text": "\ud800 railing"}),))
    db.execute("UPDATE meta SET value = ? WHERE key = 'digests'", (json.dumps(table_digests(db)),))
    db.commit()
    db.close()
    out = tmp_path / "r.html"
    p = run_cli("report", str(path), "--out", out)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "text=\\ud800 railing" in out.read_text(encoding="utf-8")
