"""``serial://PORT?baud=…&format=line|csv|waveform`` and ``socket://host:port``: serial HR devices.

Formats (see :mod:`sensors.parsers`): ``line`` one bpm per line; ``csv`` ``bpm,rr1,rr2,…`` (ms);
``waveform`` raw PPG or ECG samples at ``fs=`` Hz (``signal=ecg|ppg``, default ``ppg``) turned
into beats, RR and bpm by :mod:`sensors.beats`: one sample per beat (bpm, the RR ending at it),
1.0–1.5 s after the beat. While the waveform is not a pulse (no contact, a flat or railed signal,
motion: :func:`sensors.beats.window_quality`), a sample with no bpm and ``contact=False`` every
0.5 s instead, and a ``signal`` event (``status``: the reason, or ``pulse``) when that changes.

A reader thread does the blocking reads (pyserial), isolated by its own ``try``: I/O errors close
the port and it is reopened with backoff, for as long as the stream is iterated; junk lines are
counted and rejected. Samples and events cross to the asyncio side through one thread-safe
boundary (``loop.call_soon_threadsafe`` into an ``asyncio.Queue``), so they arrive in order.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable

from sensors.errors import ParseError, SensorError, SourceURLError
from sensors.parsers import MAX_LINE, check_reading, parse_csv, parse_line, parse_waveform
from sensors.reconnect import Backoff
from sensors.sample import Sample
from sensors.source import HRSource, check_params

FORMATS = ("line", "csv", "waveform")


def _serial_opener(url: str, baud: int, timeout: float):
    try:
        import serial
    except ModuleNotFoundError:  # pragma: no cover - declared dependency
        raise SensorError("serial:// needs pyserial: pip install pyserial", reason="missing-dependency") from None
    return serial.serial_for_url(url, baudrate=baud, timeout=timeout)


class SerialSource(HRSource):
    """A serial (or TCP) HR device. ``opener(url, baud, timeout)`` returns a pyserial-like port."""

    def __init__(self, url: str, port_url: str, *, baud: int = 115200, fmt: str = "line",
                 fs: float | None = None, kind: str = "ppg", clock: Callable[[], float] = time.monotonic,
                 opener=_serial_opener, backoff: Backoff | None = None, read_timeout: float = 0.2):
        super().__init__(url)
        if fmt not in FORMATS:
            raise SourceURLError(f"serial format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if fmt == "waveform":
            if fs is None:
                raise SourceURLError("format=waveform needs the sampling rate: fs=… (Hz)")
            from sensors.beats import KINDS, _check

            if kind not in KINDS:
                raise SourceURLError(f"signal must be ecg or ppg, not {kind!r}")
            try:
                _check(fs, kind)
            except ValueError as e:
                raise SourceURLError(str(e)) from None
        self.port_url, self.baud, self.fmt, self.fs, self.kind = port_url, baud, fmt, fs, kind
        self.clock = clock
        self.opener = opener
        self.backoff = backoff or Backoff(0.25, 1.0)
        self.read_timeout = read_timeout
        self._stop = threading.Event()
        self._port = None
        self._thread: threading.Thread | None = None
        self.lines = 0

    # ---------------------------------------------------------------- the reader thread
    def _reader(self, put: Callable[[tuple], None]) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                port = self.opener(self.port_url, self.baud, self.read_timeout)
            except Exception as e:  # noqa: BLE001 — any open failure: report, back off, retry
                attempt += 1
                put(("event", "connect_failed", {"port": self.port_url, "error": str(e), "attempt": attempt}))
                self._wait(put, attempt)
                continue
            self._port = port
            attempt = 0
            self.backoff.reset()
            put(("event", "connected", {"port": self.port_url, "format": self.fmt}))
            tracker = self._new_tracker()
            analysed, last_status = 0, "starting"
            t0 = None
            error = "closed"
            buf = b""
            try:
                while not self._stop.is_set():
                    chunk = port.readline()
                    if not chunk:
                        continue
                    buf += chunk
                    if not buf.endswith(b"\n"):
                        if len(buf) > 2 * MAX_LINE:  # a stream of junk with no line ends
                            put(("reject", self.clock(), "too-long", {"bytes": len(buf)}))
                            buf = b""
                        continue  # the rest of the line comes with the next read
                    raw, buf = buf, b""
                    t = self.clock()
                    self.lines += 1
                    if tracker is None:
                        put(("line", t, raw))
                        continue
                    try:
                        v = parse_waveform(raw)
                    except ParseError as e:
                        put(("reject", t, e.reason, {"error": str(e)}))
                        continue
                    if t0 is None:
                        t0 = t
                    for b in tracker.push([v]):
                        put(("beat", t0 + b.t, b))
                    if tracker.analyses != analysed:
                        analysed = tracker.analyses
                        status = tracker.status
                        if status != last_status:
                            put(("event", "signal", {"status": status or "pulse", "signal": self.kind}))
                            last_status = status
                        if status:  # not a pulse: say so (contact False) rather than stay silent
                            put(("nopulse", t0 + tracker.bad_until / tracker.fs, status))
            except Exception as e:  # noqa: BLE001 — unplugged, EIO, …: close and reopen
                error = f"{type(e).__name__}: {e}"
                if buf:
                    put(("reject", self.clock(), "partial-line", {"bytes": len(buf)}))
            finally:
                self._port = None
                try:
                    port.close()
                except Exception:  # noqa: BLE001, S110 — the device is gone already
                    pass
            if self._stop.is_set():
                break
            put(("event", "disconnected", {"port": self.port_url, "error": error}))
            attempt = 1
            self._wait(put, attempt)

    def _wait(self, put, attempt: int) -> None:
        if self._stop.is_set():
            return
        d = self.backoff.next()
        put(("event", "reconnecting", {"port": self.port_url, "delay": d, "attempt": attempt}))
        self._stop.wait(d)

    def _new_tracker(self):
        if self.fmt != "waveform":
            return None
        from sensors.beats import BeatTracker

        return BeatTracker(self.fs, self.kind)

    def _sample(self, item: tuple) -> Sample | None:
        """Turn a reader item into a sample, or count and report why not."""
        kind, t = item[0], item[1]
        if kind == "nopulse":
            return Sample(t, time.time() - (self.clock() - t), math.nan, (), False, self.url)
        try:
            if kind == "beat":
                b = item[2]
                bpm, rr = round(b.bpm, 1), (round(b.rr_ms, 1),)
            else:
                r = parse_line(item[2]) if self.fmt == "line" else parse_csv(item[2])
                bpm, rr = r.bpm, r.rr_ms
            check_reading(bpm, rr)
        except ParseError as e:
            self.reject(t, e.reason, error=str(e))
            return None
        return Sample(t, time.time() - (self.clock() - t), float(bpm) if not math.isnan(bpm) else math.nan,
                      rr, None, self.url)

    # ---------------------------------------------------------------- the async side
    async def stream(self) -> AsyncIterator[Sample]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()

        def put(item: tuple) -> None:
            try:
                loop.call_soon_threadsafe(q.put_nowait, item)
            except RuntimeError:  # the loop closed under us: nothing to deliver to
                self._stop.set()

        self._stop.clear()
        th = threading.Thread(target=self._reader, args=(put,), name=f"serial {self.port_url}", daemon=True)
        self._thread = th
        th.start()
        last_t = -math.inf
        try:
            while True:
                item = await q.get()
                if item[0] == "event":
                    self.emit(self.clock(), item[1], **item[2])
                    continue
                if item[0] == "reject":
                    self.reject(item[1], item[2], **item[3])
                    continue
                s = self._sample(item)
                if s is None:
                    continue
                if s.t < last_t:
                    self.reject(s.t, "out-of-order", last=last_t)
                    continue
                last_t = s.t
                yield s
        finally:
            self._stop.set()
            await asyncio.get_running_loop().run_in_executor(None, th.join, 2.0)

    def close(self) -> None:
        self._stop.set()
        p = self._port
        if p is not None:
            try:
                p.close()
            except Exception:  # noqa: BLE001, S110 — closing twice is fine
                pass


def _factory(scheme: str):
    def make(target: str, params: dict[str, str], options: dict) -> HRSource:
        if options.get("serial_opener") is None:
            try:
                import serial  # noqa: F401
            except ModuleNotFoundError:
                raise SensorError(f"{scheme}:// needs pyserial: pip install pyserial",
                                  reason="missing-dependency") from None
        if not target:
            raise SourceURLError(f"{scheme}:// needs a port, e.g. serial:///dev/ttyUSB0?baud=115200&format=csv")
        check_params(scheme, params, ("baud", "format", "fs", "signal"))
        try:
            baud = int(params.get("baud", 115200))
            fs = float(params["fs"]) if "fs" in params else None
        except ValueError as e:
            raise SourceURLError(f"{scheme}:// parameter is not a number: {e}") from None
        if baud <= 0:
            raise SourceURLError("baud must be positive")
        fmt = params.get("format", "line")
        port_url = target if scheme == "serial" else f"socket://{target}"
        q = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"{scheme}://{target}" + (f"?{q}" if q else "")
        return SerialSource(url, port_url, baud=baud, fmt=fmt, fs=fs, kind=params.get("signal", "ppg"),
                            clock=options.get("clock") or time.monotonic,
                            opener=options.get("serial_opener") or _serial_opener)
    return make


open_serial = _factory("serial")
open_socket = _factory("socket")
