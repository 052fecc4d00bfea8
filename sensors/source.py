"""HR sources: the interface every source shares, and the URL registry that picks one.

Every source is an async iterator of :class:`~sensors.sample.Sample`. Sources whose timing is
driven by the session clock (the virtual patient, replay) are *clocked*: the session asks
them for the samples due by a time with :meth:`HRSource.poll`, which lets a 45-minute session
be simulated in seconds. Live sources (BLE, serial) are async iterators fed by I/O; the engine
runs them on its asyncio thread and hands their samples to the session core through a queue.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from sensors.errors import SourceURLError
from sensors.sample import Sample, SourceEvent


@dataclass(frozen=True)
class Exposure:
    """What the patient is being shown right now: fed back to sources that simulate a patient."""

    t: float
    intensity: float
    scene: str = "heights"
    paused: bool = False
    asked_suds: bool = False
    #: the scene's parameters at this intensity (the hierarchy's params_at), when known
    params: dict | None = None


class HRSource:
    """Base class of every heart-rate source."""

    #: True when the source's timing follows the session clock (sim, replay).
    clocked: bool = False

    def __init__(self, url: str):
        self.url = url
        self._events: list[SourceEvent] = []
        self.rejected: dict[str, int] = {}
        #: when set, events go straight to this callable instead of being buffered
        self.on_event = None

    # -- clocked sources -------------------------------------------------------------
    def poll(self, now: float) -> list[Sample]:
        """Samples due by ``now`` (session seconds). Only clocked sources implement it."""
        raise NotImplementedError(f"{type(self).__name__} is not a clocked source")

    def observe(self, exposure: Exposure) -> None:
        """What the scene shows now; a simulated patient responds to it. Others ignore it."""

    def suds(self, now: float) -> float | None:
        """A SUDS answer when the source can give one (the virtual patient); else None."""
        return None

    def behaviour(self, now: float) -> dict | None:
        """What a simulated patient's behaviour shows the scene (e.g. ``look_away``); else None."""
        return None

    # -- every source ----------------------------------------------------------------
    def emit(self, t: float, kind: str, **detail) -> None:
        ev = SourceEvent(t, kind, detail)
        if self.on_event is not None:
            self.on_event(ev)
        else:
            self._events.append(ev)

    def reject(self, t: float, reason: str, **detail) -> None:
        """Count and report a rejected input; the stream goes on."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.emit(t, "rejected", reason=reason, **detail)

    def drain_events(self) -> list[SourceEvent]:
        ev, self._events = self._events, []
        return ev

    async def stream(self) -> AsyncIterator[Sample]:
        """Yield samples as they come. Clocked sources pace themselves on the real clock."""
        if not self.clocked:
            raise NotImplementedError
        start = time.monotonic()
        while True:
            now = time.monotonic() - start
            for s in self.poll(now):
                yield s
            await asyncio.sleep(0.05)

    def __aiter__(self) -> AsyncIterator[Sample]:
        return self.stream()

    def close(self) -> None:
        """Release devices and files. Safe to call twice."""


SourceFactory = Callable[[str, dict[str, str], dict], HRSource]

#: scheme → ``"module:factory"``, imported on first use (pyserial's ``protocol_handler_packages``):
#: optional dependencies (bleak, pyserial) load only when their scheme is opened, and a handler
#: never imports this registry. ``sensors/`` owns real input; the engine extends the table with
#: ``sim://`` (the virtual patient) and ``replay://`` (session logs) — see ``engine/sources.py``.
HANDLERS: dict[str, str] = {
    "ble": "sensors.ble:open_ble",
    "serial": "sensors.serial_source:open_serial",
    "socket": "sensors.serial_source:open_socket",
}


def known_schemes(handlers: Mapping[str, str] = HANDLERS) -> list[str]:
    return sorted(handlers)


def parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """Split a sensor URL into (scheme, target, params). Raises SourceURLError."""
    if "://" not in url:
        raise SourceURLError(
            f"sensor URL {url!r} has no scheme: use one of sim://, ble://NAME, "
            "serial:///dev/ttyUSB0, replay://SESSION"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    target = unquote(parts.netloc + parts.path)
    params: dict[str, str] = {}
    for k, v in parse_qs(parts.query, keep_blank_values=True).items():
        params[k] = v[-1]
    return scheme, target, params


def check_params(scheme: str, params: dict[str, str], known: tuple[str, ...]) -> None:
    """Refuse URL parameters a source does not know (a typo must not pass silently)."""
    extra = set(params) - set(known)
    if extra:
        raise SourceURLError(f"unknown {scheme}:// parameter(s): {', '.join(sorted(extra))} "
                             f"(known: {', '.join(known)})")


def _factory(spec: str) -> SourceFactory:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def open_source(url: str, handlers: Mapping[str, str] = HANDLERS, **options) -> HRSource:
    """Open the source a URL names, from ``handlers`` (scheme → ``"module:factory"``).
    ``options`` carry things like ``seed`` or ``scene``."""
    scheme, target, params = parse_url(url)
    spec = handlers.get(scheme)
    if spec is None:
        raise SourceURLError(
            f"unknown sensor scheme {scheme!r} in {url!r}: known are "
            + ", ".join(f"{s}://" for s in sorted(handlers))
        )
    return _factory(spec)(target, params, options)
