"""``ble://NAME`` or ``ble://ADDRESS``: a Bluetooth heart-rate strap (Heart Rate Service 0x180D).

Scan for straps advertising 0x180D, pick the one whose address is ADDRESS or whose name starts
with NAME (a Polar H10 calls itself ``Polar H10 1A2B3C4D``), connect, read Body Sensor Location
(0x2A38) and Battery Level (0x2A19) when present, and subscribe to Heart Rate Measurement (0x2A37).

Notifications become samples stamped with the session clock at arrival; garbled payloads and
impossible values are counted and rejected and the stream goes on. After a link loss or a failed
connect the source reconnects with backoff (0.5 s doubling to 2 s) for as long as it is iterated;
every change of connection state is reported as an event: ``connected``, ``disconnected``,
``reconnecting`` (with the delay before the next attempt) and ``connect_failed``.

URL parameters: ``scan`` seconds per scan attempt (default 5), ``timeout`` connect timeout
(default 10), ``stale`` seconds without a notification after which a link that still claims to
be up is dropped and re-established (default 10; a strap notifies about once a second),
``adapter`` (e.g. ``hci1``).

Built on bleak (the BlueZ backend on Linux), imported when a source is opened.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sensors.errors import ParseError, SensorError, SourceURLError
from sensors.parsers import (
    BATTERY_LEVEL,
    BODY_SENSOR_LOCATION,
    HR_MEASUREMENT,
    HR_SERVICE,
    check_reading,
    parse_battery_level,
    parse_body_sensor_location,
    parse_hr_measurement,
)
from sensors.reconnect import Backoff
from sensors.sample import Sample
from sensors.source import HRSource, check_params

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_LOST = object()


def _bleak():
    try:
        import bleak
    except ModuleNotFoundError:  # pragma: no cover - declared dependency
        raise SensorError("ble:// needs bleak: pip install bleak", reason="missing-dependency") from None
    return bleak


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError):  # no D-Bus system bus, or BlueZ not on it
        return f"Bluetooth service (BlueZ on the D-Bus system bus) not reachable: {e}"
    return f"{type(e).__name__}: {e}"


@dataclass(frozen=True)
class Found:
    """A strap seen by :func:`scan`."""

    name: str
    address: str
    rssi: int


async def scan(timeout: float = 5.0, adapter: str | None = None) -> list[Found]:
    """Heart-rate straps advertising nearby, strongest first."""
    bleak = _bleak()
    kw = {"bluez": {"adapter": adapter}} if adapter else {}
    try:
        found = await bleak.BleakScanner.discover(timeout=timeout, return_adv=True,
                                                  service_uuids=[HR_SERVICE], **kw)
    except (bleak.exc.BleakError, OSError, EOFError) as e:
        raise SensorError(f"cannot scan for Bluetooth devices: {_describe(e)}", reason="no-bluetooth") from None
    out = [Found(adv.local_name or d.name or "", d.address, int(adv.rssi)) for d, adv in found.values()]
    return sorted(out, key=lambda f: (-f.rssi, f.address))


class BLESource(HRSource):
    """A BLE heart-rate strap. ``clock`` stamps samples; ``sleep`` waits out the backoff."""

    def __init__(self, url: str, target: str, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable] | None = None, scan_timeout: float = 5.0,
                 connect_timeout: float = 10.0, adapter: str | None = None, backoff: Backoff | None = None,
                 stale_s: float = 10.0):
        super().__init__(url)
        if not target:
            raise SourceURLError("ble:// needs a strap name or address, e.g. ble://Polar%20H10")
        self.target = target
        self.by_address = bool(_ADDRESS.match(target))
        self.clock = clock
        self.sleep = sleep or asyncio.sleep
        self.scan_timeout = scan_timeout
        self.connect_timeout = connect_timeout
        self.adapter = adapter
        self.backoff = backoff or Backoff()
        self.location: str | None = None
        self.battery: int | None = None
        self.attempts = 0
        #: no notification for this long on a link that claims to be up: treat it as lost (a
        #: bluetoothd that died without announcing the link's end leaves it looking connected)
        self.stale_s = stale_s

    def _matches(self, device, adv) -> bool:
        if self.by_address:
            return device.address.upper() == self.target.upper()
        name = (adv.local_name or device.name or "").casefold()
        return bool(name) and name.startswith(self.target.casefold())

    async def _find(self, bleak):
        kw = {"bluez": {"adapter": self.adapter}} if self.adapter else {}
        return await bleak.BleakScanner.find_device_by_filter(
            self._matches, timeout=self.scan_timeout, service_uuids=[HR_SERVICE], **kw)

    async def _read(self, client, uuid: str, parse, what: str):
        try:
            return parse(await client.read_gatt_char(uuid))
        except ParseError as e:
            self.reject(self.clock(), e.reason, what=what, error=str(e))
        except Exception as e:  # noqa: BLE001 — optional characteristic absent or unreadable
            log.debug("reading %s: %s", what, e)
        return None

    def _sample(self, t: float, wall: float, data: bytes) -> Sample | None:
        try:
            m = parse_hr_measurement(data)
            bpm = math.nan if m.bpm == 0 else float(m.bpm)  # 0: the strap has no reading
            rr = m.rr_ms
            check_reading(bpm, rr)
        except ParseError as e:
            self.reject(t, e.reason, bytes=bytes(data).hex(), error=str(e))
            return None
        return Sample(t, wall, bpm, rr, m.contact, self.url)

    async def stream(self) -> AsyncIterator[Sample]:
        bleak = _bleak()
        q: asyncio.Queue = asyncio.Queue()

        def on_notify(_char, data: bytearray) -> None:
            q.put_nowait((self.clock(), time.time(), bytes(data)))

        def on_disconnect(_client) -> None:
            q.put_nowait(_LOST)

        last_t = -math.inf
        while True:
            self.attempts += 1
            connected = False
            stale = False
            try:
                device = await self._find(bleak)
                if device is None:
                    raise SensorError(f"no heart-rate strap matching {self.target!r} found "
                                      f"in {self.scan_timeout:g} s", reason="not-found")
                client = bleak.BleakClient(device, disconnected_callback=on_disconnect,
                                           timeout=self.connect_timeout)
                while not q.empty():  # leftovers of a previous link
                    q.get_nowait()
                async with client:
                    self.location = await self._read(client, BODY_SENSOR_LOCATION,
                                                     parse_body_sensor_location, "body sensor location")
                    self.battery = await self._read(client, BATTERY_LEVEL, parse_battery_level, "battery")
                    await client.start_notify(HR_MEASUREMENT, on_notify)
                    connected = True
                    self.backoff.reset()
                    self.emit(self.clock(), "connected", name=device.name or "", address=device.address,
                              location=self.location, battery=self.battery, attempt=self.attempts)
                    self.attempts = 0
                    while True:
                        try:
                            item = await asyncio.wait_for(q.get(), self.stale_s)
                        except TimeoutError:
                            stale = True
                            break
                        if item is _LOST:
                            break
                        t, wall, data = item
                        s = self._sample(t, wall, data)
                        if s is None:
                            continue
                        if t < last_t:
                            self.reject(t, "out-of-order", last=last_t)
                            continue
                        last_t = t
                        yield s
                self.emit(self.clock(), "disconnected", address=device.address,
                          reason=f"no notification for {self.stale_s:g} s" if stale else "link lost")
            except (bleak.exc.BleakError, SensorError, TimeoutError, OSError, EOFError) as e:
                if connected:
                    why = f"no notification for {self.stale_s:g} s" if stale else _describe(e)
                    self.emit(self.clock(), "disconnected", reason=why)
                else:
                    self.emit(self.clock(), "connect_failed", attempt=self.attempts, error=_describe(e))
            delay = self.backoff.next()
            self.emit(self.clock(), "reconnecting", delay=delay, attempt=self.attempts + 1)
            await self.sleep(delay)


def _factory(target: str, params: dict[str, str], options: dict) -> HRSource:
    check_params("ble", params, ("scan", "timeout", "stale", "adapter"))
    try:
        scan_s = float(params.get("scan", 5.0))
        timeout = float(params.get("timeout", 10.0))
        stale = float(params.get("stale", 10.0))
    except ValueError as e:
        raise SourceURLError(f"ble:// parameter is not a number: {e}") from None
    if not (scan_s > 0 and timeout > 0 and stale > 0):
        raise SourceURLError("ble:// scan, timeout and stale must be positive")
    url = "ble://" + target
    return BLESource(url, target, clock=options.get("clock") or time.monotonic, scan_timeout=scan_s,
                     connect_timeout=timeout, adapter=params.get("adapter"), sleep=options.get("sleep"),
                     stale_s=stale)


open_ble = _factory
