"""``exposure snapshot``: offscreen PNGs and figures; its argument parsers refuse junk clearly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli.common import UserError
from engine.cli.scenes import parse_intensities, parse_size


def test_snapshot_writes_pngs_and_stats(cli, tmp_path):
    p = cli("snapshot", "--scene", "crowds", "--intensity", "0,1", "--out", tmp_path, "--stats",
            "--frames", "20", "--size", "320x240")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["intensity"] for r in rows] == [0.0, 1.0]
    for r in rows:
        assert {"draw_calls", "triangles", "nodes", "frame_ms"} <= set(r)
        assert 0 < r["draw_calls"] <= 60 and r["triangles"] > 1000 and r["frame_ms"] > 0
        data = (tmp_path / f"crowds_{r['intensity']:.2f}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    a, b = ((tmp_path / f"crowds_{x}.png").read_bytes() for x in ("0.00", "1.00"))
    assert a != b


def test_snapshot_bad_intensity_is_one_line(cli, tmp_path):
    p = cli("snapshot", "--scene", "heights", "--intensity", "0,2", "--out", tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip() == "exposure: error: --intensity 2 is outside [0, 1]"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_parse_intensities_accepts_only_numbers_in_range(text):
    try:
        xs = parse_intensities(text)
    except UserError as e:
        assert str(e).startswith("--intensity")
        return
    assert xs and all(0.0 <= x <= 1.0 for x in xs)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=12), st.builds(lambda w, h: f"{w}x{h}", st.integers(-10, 10000),
                                                 st.integers(-10, 10000))))
def test_parse_size_accepts_only_sane_sizes(text):
    try:
        w, h = parse_size(text)
    except UserError as e:
        assert str(e).startswith("--size")
        return
    assert 16 <= w <= 8192 and 16 <= h <= 8192


def test_parse_intensities_examples():
    assert parse_intensities("0, 0.5,1") == [0.0, 0.5, 1.0]
    with pytest.raises(UserError, match="not a number"):
        parse_intensities("0,,1")
    with pytest.raises(UserError, match="outside"):
        parse_intensities("nan")
