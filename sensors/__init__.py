"""Heart-rate sources, signal quality and features. A leaf: imports nothing of ours."""

from sensors.errors import ParseError, SensorError, SourceURLError
from sensors.sample import Sample, SourceEvent
from sensors.source import Exposure, HRSource, open_source, parse_url

__all__ = [
    "Exposure", "HRSource", "ParseError", "Sample", "SensorError", "SourceEvent",
    "SourceURLError", "open_source", "parse_url",
]
