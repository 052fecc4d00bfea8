"""Watching the heart-rate source for silence: said on the terminal while it lasts, totalled
for the end-of-session summary.

A sensor that never connects (``ble://`` without Bluetooth, ``serial:///dev/ttyUSB9``) or goes
quiet must not leave a session that "completes" with no data and nothing said. The watch sees
the number of samples the core has ingested at each tick (session time), and:

* after ``silent_after_s`` without a sample, logs a warning (the terminal shows warnings), then
  again every ``repeat_s`` while the silence lasts, and once when samples come back;
* totals the time without samples (spells of at least ``silent_after_s``), for the summary.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger("engine.session")

SILENT_AFTER_S = 5.0
REPEAT_S = 30.0


class SignalWatch:
    def __init__(self, source: str, t0: float, silent_after_s: float = SILENT_AFTER_S, repeat_s: float = REPEAT_S,
                 quiet: bool = False):
        self.source = source
        self.quiet = quiet  # total, but say nothing (simulated or replayed sources: nobody to tell)
        self.silent_after_s = silent_after_s
        self.repeat_s = repeat_s
        self.t0 = t0
        self.n = 0
        self.last_sample_t = t0  # silence is counted from the start until the first sample
        self.next_warning = t0 + silent_after_s
        self.silent_s = 0.0  # finished spells
        self.spells = 0
        self._in_spell = False
        self._now = t0

    def update(self, now: float, n_samples: int, connection: str = "") -> None:
        self._now = now
        if n_samples > self.n:  # samples arrived since the last tick
            if self._in_spell:
                gap = now - self.last_sample_t
                self.silent_s += gap
                if not self.quiet:
                    log.warning("heart-rate signal from %s is back after %.0f s without", self.source, gap)
                self._in_spell = False
            self.n = n_samples
            self.last_sample_t = now
            self.next_warning = now + self.silent_after_s
            return
        if now >= self.next_warning:
            gap = now - self.last_sample_t
            if not self._in_spell:
                self._in_spell = True
                self.spells += 1
            what = "never received a sample" if self.n == 0 else f"no sample for {gap:.0f} s"
            state = f"; connection: {connection}" if connection else ""
            if not self.quiet:
                log.warning("no heart-rate signal from %s: %s%s. Check the sensor (worn, charged, in range, "
                            "the right port); the session goes on without it", self.source, what, state)
            self.next_warning = now + self.repeat_s

    @property
    def no_signal_s(self) -> float:
        """Time without samples so far (spells of at least silent_after_s)."""
        open_spell = self._now - self.last_sample_t if self._in_spell else 0.0
        return self.silent_s + open_spell

    def summary(self) -> str:
        """One line for the end of the session; empty when the signal never went silent."""
        dur = max(0.0, self._now - self.t0)
        if self.n == 0:
            return f"no signal: not one sample from {self.source} in {_mmss(dur)}"
        if self.no_signal_s <= 0:
            return ""
        share = 100 * self.no_signal_s / dur if dur > 0 else math.nan
        return f"no signal for {_mmss(self.no_signal_s)} of {_mmss(dur)} ({share:.0f}%) in {self.spells} spell(s)"


def _mmss(s: float) -> str:
    return f"{int(s // 60)}:{int(s % 60):02d}"
