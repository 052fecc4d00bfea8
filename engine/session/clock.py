"""Clocks: every time-dependent piece takes one, so a session can run as fast as the CPU allows
and a test never sleeps for real."""

from __future__ import annotations

import threading
import time


class SimClock:
    """Simulated time: :meth:`sleep_until` jumps instead of waiting. Speed 'max'."""

    realtime = False

    def __init__(self, t0: float = 0.0):
        self.t = t0

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> None:
        if t > self.t:
            self.t = t


class RealClock:
    """Real time, scaled by ``speed`` (1 = real time, N = N× faster)."""

    realtime = True

    def __init__(self, speed: float = 1.0):
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> None:
        wait = (t - self.now()) / self.speed
        if wait > 0:
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)


def make_clock(speed: str | float) -> SimClock | RealClock:
    """``'max'`` → a simulated clock; a number → real time scaled by it."""
    if isinstance(speed, str) and speed.strip().lower() == "max":
        return SimClock()
    return RealClock(float(speed))
