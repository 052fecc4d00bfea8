"""One error hierarchy for the sensors room; callers branch on ``reason``."""

from __future__ import annotations


class SensorError(Exception):
    """Base of every error raised by ``sensors``. ``reason`` is a short machine-readable code."""

    reason = "sensor-error"

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class SourceURLError(SensorError):
    """A sensor URL that names no known scheme, or carries bad parameters."""

    reason = "bad-url"


class ParseError(SensorError):
    """Bytes or a line from a device that cannot be turned into a sample."""

    reason = "parse"
