"""Heart-rate sources, signal quality and features. A leaf: imports nothing of ours."""

from .errors import ParseError, SensorError, SourceURLError
from .sample import Sample, SourceEvent
from .source import Exposure, HRSource, open_source, parse_url, register_scheme

__all__ = [
    "Exposure", "HRSource", "ParseError", "Sample", "SensorError", "SourceEvent",
    "SourceURLError", "open_source", "parse_url", "register_scheme",
]
