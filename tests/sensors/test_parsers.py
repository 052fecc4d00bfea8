"""Parsers: real-device fixtures, hand-built payloads, and any bytes/line → a value or a ParseError."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.errors import ParseError
from sensors.parsers import (
    HRMeasurement,
    check_reading,
    parse_battery_level,
    parse_body_sensor_location,
    parse_csv,
    parse_hr_measurement,
    parse_line,
    parse_waveform,
)
from tests.conftest import FIXTURES_DIR

FIXTURES = json.loads((FIXTURES_DIR / "hr_measurement_2a37.json").read_text())["fixtures"]


@pytest.mark.parametrize("fx", FIXTURES, ids=[f["hex"] for f in FIXTURES])
def test_real_device_payloads(fx):
    m = parse_hr_measurement(bytes.fromhex(fx["hex"]))
    assert m.bpm == fx["hr"]
    assert m.contact == fx["contact"]
    assert list(m.rr_1024) == fx["rr_1024"]
    assert [round(x, 1) for x in m.rr_ms] == pytest.approx(fx["rr_ms"], abs=0.051)


def test_every_flag_combination_by_hand():
    # uint16 HR 300, contact supported but not detected, energy 1234 kJ, RR 512 and 1024.
    b = bytes([0x01 | 0x04 | 0x08 | 0x10]) + struct.pack("<HHHH", 300, 1234, 512, 1024)
    m = parse_hr_measurement(b)
    assert m == HRMeasurement(300, False, 1234, (512, 1024))
    assert m.rr_ms == (500.0, 1000.0)
    # contact detected without "supported" means not supported
    assert parse_hr_measurement(bytes([0x02, 70])).contact is None
    assert parse_hr_measurement(bytes([0x06, 70])).contact is True
    # reserved bits are ignored
    assert parse_hr_measurement(bytes([0xE0, 70])).bpm == 70


@pytest.mark.parametrize("hexs,reason", [
    ("", "empty"), ("01", "truncated"), ("013c", "truncated"), ("00", "truncated"),
    ("083c01", "truncated"), ("103c", "truncated"), ("103c1104ff", "truncated"),
    ("063c00", "trailing"),
])
def test_malformed_payloads_name_their_reason(hexs, reason):
    with pytest.raises(ParseError) as e:
        parse_hr_measurement(bytes.fromhex(hexs))
    assert e.value.reason == reason


def _encode(bpm16, bpm, contact, energy, rr):
    flags = (1 if bpm16 else 0) | (0 if contact is None else 4 | (2 if contact else 0))
    flags |= (8 if energy is not None else 0) | (16 if rr else 0)
    b = bytes([flags]) + (struct.pack("<H", bpm) if bpm16 else bytes([bpm]))
    if energy is not None:
        b += struct.pack("<H", energy)
    for r in rr:
        b += struct.pack("<H", r)
    return b


@given(st.booleans(), st.integers(0, 65535), st.sampled_from([None, True, False]),
       st.one_of(st.none(), st.integers(0, 65535)), st.lists(st.integers(0, 65535), max_size=9))
def test_encode_decode_roundtrip(bpm16, bpm, contact, energy, rr):
    if not bpm16:
        bpm %= 256
    m = parse_hr_measurement(_encode(bpm16, bpm, contact, energy, rr))
    assert (m.bpm, m.contact, m.energy_kj, m.rr_1024) == (bpm, contact, energy, tuple(rr))
    assert all(abs(a - b * 1000 / 1024) < 1e-9 for a, b in zip(m.rr_ms, rr, strict=True))


@given(st.binary(max_size=40))
def test_any_bytes_give_a_measurement_or_a_parse_error(b):
    try:
        m = parse_hr_measurement(b)
    except ParseError as e:
        assert e.reason in ("empty", "truncated", "trailing")
        return
    assert 0 <= m.bpm <= 65535 and all(0 <= r <= 65535 for r in m.rr_1024)


@given(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats()))
def test_non_bytes_are_a_parse_error(x):
    with pytest.raises(ParseError):
        parse_hr_measurement(x)


def test_location_and_battery():
    assert parse_body_sensor_location(b"\x01") == "chest"
    assert parse_body_sensor_location(b"\x02") == "wrist"
    assert parse_battery_level(b"\x64") == 100
    assert parse_battery_level(bytearray(b"\x07")) == 7
    with pytest.raises(ParseError):
        parse_battery_level(b"\x65")
    with pytest.raises(ParseError):
        parse_body_sensor_location(b"\x07")


@given(st.binary(max_size=4))
def test_location_and_battery_any_bytes(b):
    for f in (parse_body_sensor_location, parse_battery_level):
        try:
            v = f(b)
        except ParseError:
            assert len(b) != 1 or b[0] > 6
            continue
        assert len(b) == 1
        assert v == b[0] if f is parse_battery_level else isinstance(v, str)


def test_lines_and_csv():
    assert parse_line("72\r\n").bpm == 72.0
    assert parse_line(b" 71.5 \n").bpm == 71.5
    r = parse_csv(b"72,833,828.5\r\n")
    assert r.bpm == 72.0 and r.rr_ms == (833.0, 828.5)
    assert parse_csv("64,").rr_ms == ()
    assert parse_waveform(b"-0.0125\n") == -0.0125
    for bad, reason in [("", "empty"), ("abc", "not-a-number"), ("nan", "not-a-number"),
                        ("inf", "not-a-number"), (b"\xff\xfe72", "binary"), ("7\x002", "binary"),
                        ("x" * 600, "too-long")]:
        with pytest.raises(ParseError) as e:
            parse_line(bad)
        assert e.value.reason == reason
    with pytest.raises(ParseError) as e:
        parse_csv("72,8x3")
    assert e.value.reason == "not-a-number"


@given(st.one_of(st.binary(max_size=80), st.text(max_size=80)))
def test_any_line_gives_a_reading_or_a_parse_error(x):
    for f in (parse_line, parse_csv, parse_waveform):
        try:
            v = f(x)
        except ParseError as e:
            assert e.reason
            continue
        vals = [v] if isinstance(v, float) else [v.bpm, *getattr(v, "rr_ms", ())]
        assert all(math.isfinite(y) for y in vals)


@given(st.floats(30, 250), st.lists(st.floats(240, 2000), max_size=4))
def test_csv_roundtrip(bpm, rr):
    line = ",".join([repr(bpm), *map(repr, rr)]) + "\r\n"
    r = parse_csv(line.encode())
    assert r.bpm == bpm and r.rr_ms == tuple(rr)


@given(st.floats(allow_nan=True), st.lists(st.floats(allow_nan=True), max_size=3))
def test_check_reading(bpm, rr):
    try:
        check_reading(bpm, tuple(rr))
    except ParseError as e:
        assert e.reason in ("impossible-bpm", "impossible-rr")
        assert not (math.isnan(bpm) or 20 <= bpm <= 300) or not all(150 <= r <= 3500 for r in rr)
        return
    assert math.isnan(bpm) or 20 <= bpm <= 300
    assert all(150 <= r <= 3500 for r in rr)
