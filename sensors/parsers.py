"""Pure parsers of what HR devices send: Bluetooth GATT payloads and serial lines.

Every parser takes bytes (or a line) and returns a value, or raises :class:`ParseError` with a
``reason``; nothing else escapes, whatever the input. Sources count a ParseError as a rejected
input and go on.

GATT (Bluetooth SIG, Heart Rate Service 1.0):

- Heart Rate Measurement 0x2A37: flags byte; bit 0 HR as uint16 (else uint8); bits 1–2 sensor
  contact (bit 2 supported, bit 1 detected); bit 3 Energy Expended present (uint16, kJ); bit 4
  RR intervals present (uint16 each, 1/1024 s). Bits 5–7 are reserved and ignored.
- Body Sensor Location 0x2A38: one byte, 0–6.
- Battery Level 0x2A19: one byte, 0–100 (%).

Serial lines (ASCII; ``\\r\\n`` or ``\\n``):

- ``line``: one bpm per line, e.g. ``72`` or ``72.5``.
- ``csv``: ``bpm,rr1,rr2,…`` with RR in ms, e.g. ``72,833,828``; ``bpm`` may be followed by no RR.
- ``waveform``: one raw sample (PPG or ECG) per line, any finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sensors.errors import ParseError

#: GATT UUIDs used by the BLE source (16-bit SIG numbers in the base UUID).
HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
BODY_SENSOR_LOCATION = "00002a38-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"

LOCATIONS = ("other", "chest", "wrist", "finger", "hand", "ear lobe", "foot")

#: Hard limits of a reading a device could send about a living person. Tighter physiological
#: bounds (and RR artefact rejection) are the features' job; these only reject impossible input.
MIN_BPM, MAX_BPM = 20.0, 300.0
MIN_RR_MS, MAX_RR_MS = 150.0, 3500.0
MAX_LINE = 512


@dataclass(frozen=True, slots=True)
class HRMeasurement:
    """A decoded 0x2A37 notification."""

    bpm: int
    contact: bool | None  # None: the sensor does not support contact detection
    energy_kj: int | None
    rr_1024: tuple[int, ...]

    @property
    def rr_ms(self) -> tuple[float, ...]:
        return tuple(r * 1000.0 / 1024.0 for r in self.rr_1024)


@dataclass(frozen=True, slots=True)
class Reading:
    """A decoded serial line: bpm (NaN when absent) and RR intervals in ms."""

    bpm: float
    rr_ms: tuple[float, ...] = ()


def _bytes(data) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise ParseError(f"expected bytes, got {type(data).__name__}", reason="type")


def parse_hr_measurement(data) -> HRMeasurement:
    """Decode a Heart Rate Measurement (0x2A37) payload."""
    b = _bytes(data)
    if not b:
        raise ParseError("empty heart rate measurement", reason="empty")
    flags = b[0]
    i = 1
    if flags & 0x01:
        if len(b) < i + 2:
            raise ParseError(f"truncated uint16 heart rate ({b.hex()})", reason="truncated")
        bpm = b[i] | (b[i + 1] << 8)
        i += 2
    else:
        if len(b) < i + 1:
            raise ParseError(f"truncated uint8 heart rate ({b.hex()})", reason="truncated")
        bpm = b[i]
        i += 1
    contact = bool(flags & 0x02) if flags & 0x04 else None
    energy = None
    if flags & 0x08:
        if len(b) < i + 2:
            raise ParseError(f"truncated energy expended ({b.hex()})", reason="truncated")
        energy = b[i] | (b[i + 1] << 8)
        i += 2
    rr: list[int] = []
    if flags & 0x10:
        rest = len(b) - i
        if rest < 2 or rest % 2:
            raise ParseError(f"RR field of {rest} bytes is not whole uint16s ({b.hex()})", reason="truncated")
        rr = [b[j] | (b[j + 1] << 8) for j in range(i, len(b), 2)]
    elif len(b) != i:
        raise ParseError(f"{len(b) - i} trailing bytes after the fields the flags announce ({b.hex()})",
                         reason="trailing")
    return HRMeasurement(bpm, contact, energy, tuple(rr))


def parse_body_sensor_location(data) -> str:
    """Decode Body Sensor Location (0x2A38) to a name (``chest``, ``wrist``…)."""
    b = _bytes(data)
    if len(b) != 1:
        raise ParseError(f"body sensor location must be 1 byte, got {len(b)}", reason="length")
    if b[0] >= len(LOCATIONS):
        raise ParseError(f"body sensor location {b[0]} is reserved", reason="range")
    return LOCATIONS[b[0]]


def parse_battery_level(data) -> int:
    """Decode Battery Level (0x2A19) to a percentage."""
    b = _bytes(data)
    if len(b) != 1:
        raise ParseError(f"battery level must be 1 byte, got {len(b)}", reason="length")
    if b[0] > 100:
        raise ParseError(f"battery level {b[0]}% is out of range", reason="range")
    return b[0]


def _text(line) -> str:
    if isinstance(line, bytes | bytearray | memoryview):
        raw = bytes(line)
        if len(raw) > MAX_LINE:
            raise ParseError(f"line of {len(raw)} bytes is too long", reason="too-long")
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError(f"binary noise, not a text line ({raw[:16].hex()}…)", reason="binary") from None
    elif not isinstance(line, str):
        raise ParseError(f"expected a line, got {type(line).__name__}", reason="type")
    if len(line) > MAX_LINE:
        raise ParseError(f"line of {len(line)} characters is too long", reason="too-long")
    if not line.isascii() or any(ord(c) < 32 and c not in "\t\r\n" for c in line) or "\x7f" in line:
        raise ParseError(f"binary noise in line {line[:16]!r}", reason="binary")
    t = line.strip()
    if not t:
        raise ParseError("empty line", reason="empty")
    return t


def _number(field: str, what: str) -> float:
    f = field.strip()
    try:
        v = float(f)
    except ValueError:
        raise ParseError(f"{what} {f[:20]!r} is not a number", reason="not-a-number") from None
    if not math.isfinite(v):
        raise ParseError(f"{what} {f!r} is not finite", reason="not-a-number")
    return v


def parse_line(line) -> Reading:
    """``line`` format: one bpm per line."""
    return Reading(_number(_text(line), "bpm"))


def parse_csv(line) -> Reading:
    """``csv`` format: ``bpm,rr1,rr2,…`` with RR in milliseconds."""
    fields = _text(line).split(",")
    bpm = _number(fields[0], "bpm")
    rr = tuple(_number(f, "RR") for f in fields[1:] if f.strip() != "")
    return Reading(bpm, rr)


def parse_waveform(line) -> float:
    """``waveform`` format: one raw sample per line."""
    return _number(_text(line), "sample")


def check_reading(bpm: float, rr_ms: tuple[float, ...]) -> None:
    """Reject values no living heart produces. ``bpm`` NaN (not reported) is allowed."""
    if not math.isnan(bpm) and not (MIN_BPM <= bpm <= MAX_BPM):
        raise ParseError(f"impossible heart rate {bpm:g} bpm", reason="impossible-bpm")
    for r in rr_ms:
        if not (MIN_RR_MS <= r <= MAX_RR_MS):
            raise ParseError(f"impossible RR interval {r:g} ms", reason="impossible-rr")
