"""``exposure run --lsl``: publish the session as Lab Streaming Layer streams, so LabRecorder
records them beside EEG and EDA.

Streams (``source_id`` = ``exposure-<session id>-<suffix>``, so LabRecorder can re-find them):

=================  ===========  ===========================  =========================================
name               type         channels                     when
=================  ===========  ===========================  =========================================
ExposureHR         HeartRate    bpm (float32)                every sample with a heart rate
ExposureRR         RR           rr (ms, float32)             every RR interval
ExposureIntensity  Intensity    intensity, target (0..1),    every decision and once a second
                                level (index)
ExposureMarkers    Markers      one JSON string              events, shield interventions, decisions
                                                             that change the target, commands, SUDS
=================  ===========  ===========================  =========================================

Timestamps are on the LSL clock: a sample logged at session time ``t`` is stamped
``lsl_start + (t - t_start) / speed`` for a real-time clock (speed 1 in a live session), and with
the LSL clock at the moment it is published for a simulated one (``--speed max``).

The publisher taps the session's log writer (like a ``spy://`` tap: everything is written as
before, and each record is also published), so it sees exactly what is logged, when it is
logged. A failure to publish is counted and logged once; it never stops the session.
"""

from __future__ import annotations

import json
import logging
import math

log = logging.getLogger(__name__)


def _load_pylsl():
    try:
        import pylsl
    except (ImportError, OSError, RuntimeError) as e:
        from engine.session.live import ConfigError

        raise ConfigError(f"--lsl needs pylsl and its liblsl library ({e}): pip install pylsl "
                          "(its wheels carry liblsl; elsewhere install liblsl from "
                          "https://github.com/sccn/liblsl/releases)") from None
    return pylsl


class _Tap:
    """Stands in for the session's writer: forwards every call, and publishes what it sees."""

    def __init__(self, inner, publisher: LslPublisher):
        self._inner = inner
        self._pub = publisher

    def write(self, kind: str, row: tuple) -> None:
        self._inner.write(kind, row)
        self._pub.on_row(kind, row)

    def write_dict(self, kind: str, row: dict) -> None:
        self._inner.write_dict(kind, row)
        self._pub.on_dict(kind, row)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class LslPublisher:
    def __init__(self, session, backend=None):
        lsl = backend or _load_pylsl()
        self.lsl = lsl
        self.session = session
        self.core = session.core
        sid = session.id
        self.errors = 0
        clock = session.clock
        speed = float(getattr(clock, "speed", 0.0) or 0.0)
        self._realtime = bool(getattr(clock, "realtime", False)) and speed > 0
        self._speed = speed or 1.0
        self._offset = lsl.local_clock() - clock.now() / self._speed

        def outlet(name, typ, labels, units, fmt, suffix):
            info = lsl.StreamInfo(name, typ, len(labels), lsl.IRREGULAR_RATE, fmt, f"exposure-{sid}-{suffix}")
            desc = info.desc()
            desc.append_child_value("session_id", sid)
            desc.append_child_value("scene", str(session.cfg.scene))
            desc.append_child_value("software", "exposure")
            chans = desc.append_child("channels")
            for lab, unit in zip(labels, units, strict=True):
                ch = chans.append_child("channel")
                ch.append_child_value("label", lab)
                ch.append_child_value("unit", unit)
            return lsl.StreamOutlet(info)

        self.hr = outlet("ExposureHR", "HeartRate", ["bpm"], ["bpm"], "float32", "hr")
        self.rr = outlet("ExposureRR", "RR", ["rr"], ["ms"], "float32", "rr")
        self.intensity = outlet("ExposureIntensity", "Intensity", ["intensity", "target", "level"],
                                ["0..1", "0..1", "index"], "float32", "intensity")
        self.markers = outlet("ExposureMarkers", "Markers", ["event"], [""], "string", "markers")
        self._writer = self.core.writer
        if self._writer is not None:
            self.core.writer = _Tap(self._writer, self)
        self.stopped = False

    def ts(self, t: float) -> float:
        if self._realtime:
            return self._offset + t / self._speed
        return self.lsl.local_clock()

    def _guard(self, fn, *a) -> None:
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001 — publishing must never stop a session
            self.errors += 1
            if self.errors == 1:
                log.warning("LSL: could not publish (%s); the session goes on, this is logged once", e)

    def _marker(self, t: float, kind: str, **detail) -> None:
        self.markers.push_sample([json.dumps({"t": round(t, 3), "kind": kind, **detail}, default=str)],
                                 self.ts(t))

    def on_row(self, kind: str, row: tuple) -> None:
        if not self.stopped:
            self._guard(self._row, kind, row)

    def on_dict(self, kind: str, row: dict) -> None:
        if not self.stopped:
            self._guard(self._dict, kind, row)

    def _row(self, kind: str, row: tuple) -> None:
        if kind == "samples":
            t, _wall, bpm, rr, _contact, _src = row
            ts = self.ts(t)
            if bpm is not None and math.isfinite(bpm):
                self.hr.push_sample([float(bpm)], ts)
            for x in rr or ():
                self.rr.push_sample([float(x)], ts)
        elif kind == "scene":
            t, x, level = row[0], row[1], row[2]
            self.intensity.push_sample([float(x), float(self.core.target), float(level)], self.ts(t))
        elif kind == "events":
            t, ev, detail = row
            self._marker(t, str(ev), **(detail if isinstance(detail, dict) else {"detail": detail}))
        elif kind == "commands":
            t, typ, origin, payload, ok, err = row
            self._marker(t, "command", type=typ, origin=origin, payload=payload, accepted=bool(ok), error=err)

    def _dict(self, kind: str, row: dict) -> None:
        t = row["t"]
        if kind == "decisions":
            self.intensity.push_sample([float(row["intensity"]), float(row["target_after"]),
                                        float(row["level_after"])], self.ts(t))
            if row["target_after"] != row["target_before"]:
                self._marker(t, "decision", who=row["who"], name=row["name"], reason=row["reason"],
                             level_before=row["level_before"], level_after=row["level_after"],
                             target_after=row["target_after"])
        elif kind == "suds":
            self._marker(t, "suds", value=row["value"], origin=row["origin"], level=row["level"])

    def stop(self) -> None:
        """Restore the writer and close the outlets. Safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        if self._writer is not None and isinstance(self.core.writer, _Tap):
            self.core.writer = self._writer
        self.hr = self.rr = self.intensity = self.markers = None


def start_lsl(session, backend=None) -> LslPublisher:
    """Publish a session's HR/RR, intensity and level, and event markers as LSL streams."""
    return LslPublisher(session, backend=backend)
