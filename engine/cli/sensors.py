"""``exposure sensors scan`` and ``exposure sensors stream URL``: find straps, watch a source."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time

from sensors.errors import SensorError


def register(sub) -> None:
    p = sub.add_parser("sensors", help="find heart-rate straps and watch a sensor's samples",
                       description="Find Bluetooth heart-rate straps, or print the samples a sensor URL "
                                   "yields with their signal quality.")
    ss = p.add_subparsers(dest="sensors_command", metavar="SUBCOMMAND")
    ss.required = True
    s = ss.add_parser("scan", help="list nearby heart-rate straps (name, address, RSSI)")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds to scan (default 5)")
    s.add_argument("--adapter", default=None, help="Bluetooth adapter, e.g. hci1 (default: the first)")
    s.set_defaults(func=cmd_scan)
    st = ss.add_parser("stream", help="print one line per accepted sample of a sensor URL",
                       description="Print one line per accepted sample; connection events and rejected "
                                   "input go to stderr. Stops after --count samples or on Ctrl-C.")
    st.add_argument("url", help="sensor URL: ble://NAME, ble://AA:BB:CC:DD:EE:FF, "
                    "serial:///dev/ttyUSB0?baud=115200&format=csv, socket://host:port?format=line, sim://")
    st.add_argument("--count", type=int, default=0, help="stop after N samples (default: run until Ctrl-C)")
    st.add_argument("--timeout", type=float, default=30.0,
                    help="give up when no sample comes for this many seconds (default 30)")
    st.add_argument("--json", action="store_true", help="one JSON object per line (t, bpm, rr_ms, contact, "
                    "quality, …); events as JSON on stderr")
    st.set_defaults(func=cmd_stream)


def _quiet_bleak() -> None:
    # bleak warns on every run that bluetoothctl is absent (containers, the BlueZ stand-in)
    logging.getLogger("bleak.backends.bluezdbus.version").setLevel(logging.ERROR)


def cmd_scan(args) -> int:
    _quiet_bleak()
    from sensors.ble import scan

    if not args.timeout > 0:
        raise SensorError("--timeout must be positive")
    found = asyncio.run(scan(args.timeout, args.adapter))
    if not found:
        print(f"no heart-rate straps found in {args.timeout:g} s", file=sys.stderr)
        return 1
    print(f"{'NAME':<24} {'ADDRESS':<18} RSSI")
    for f in found:
        print(f"{f.name or '(no name)':<24} {f.address:<18} {f.rssi}")
    return 0


def _num(x: float | None) -> float | None:
    """Rounded for the JSON stream; NaN and None → None."""
    from sensors.features import finite_or_none

    v = None if x is None else finite_or_none(x)
    return None if v is None else round(v, 4)


def cmd_stream(args) -> int:
    import numpy as np

    from engine.sources import SOURCE_HANDLERS
    from sensors.features import FeatureBank
    from sensors.source import open_source

    if args.count < 0:
        raise SensorError("--count must be 0 (no limit) or positive")
    if not args.timeout > 0:
        raise SensorError("--timeout must be positive")
    _quiet_bleak()
    t0 = time.monotonic()
    src = open_source(args.url, SOURCE_HANDLERS, clock=lambda: time.monotonic() - t0)
    bank = FeatureBank(1, t0=0.0)

    def on_event(ev) -> None:
        if args.json:
            print(json.dumps({"event": ev.kind, "t": round(ev.t, 4), **ev.detail}, default=str),
                  file=sys.stderr, flush=True)
        else:
            detail = " ".join(f"{k}={v}" for k, v in ev.detail.items())
            print(f"exposure: sensor {ev.kind} at t={ev.t:.2f} {detail}".rstrip(), file=sys.stderr, flush=True)

    for ev in src.drain_events():
        on_event(ev)
    src.on_event = on_event
    last = [0.0]
    rr_rejected: dict[str, int] = {}  # RR intervals the features left out, per reason

    async def main() -> int:
        n = 0
        it = src.stream()
        try:
            while True:
                try:
                    s = await asyncio.wait_for(anext(it), args.timeout)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    what = "no sample" if n == 0 else f"no sample after the {n}th"
                    raise SensorError(f"{what} from {args.url} in {args.timeout:g} s: is the sensor on, worn, "
                                      "in range, and is this the right address or port? (--timeout to wait "
                                      "longer)") from None
                t = max(s.t, last[0])
                last[0] = t
                rr = np.full((1, max(1, len(s.rr_ms))), np.nan)
                rr[0, :len(s.rr_ms)] = s.rr_ms
                contact = np.array([-1 if s.contact is None else int(s.contact)], dtype=np.int8)
                f = bank.update(t, np.array([s.bpm]), rr, contact)
                q = float(f.quality[0])
                for k, v in f.rejected_reasons().items():
                    rr_rejected[k] = rr_rejected.get(k, 0) + v
                if args.json:
                    d = s.to_dict()
                    d.update(t=round(s.t, 4), quality=round(q, 4), hr=_num(f.hr[0]), rmssd=_num(f.rmssd[0]),
                             rr_rejected=int(f.rejected_rr[0]), rr_rejected_by=f.rejected_reasons())
                    print(json.dumps(d), flush=True)
                else:
                    bpm = "-" if math.isnan(s.bpm) else f"{s.bpm:g}"
                    rrs = ",".join(f"{r:.1f}" for r in s.rr_ms) or "-"
                    c = {None: "n/a", True: "yes", False: "no"}[s.contact]
                    print(f"t={s.t:8.2f}  bpm={bpm:>5}  rr_ms={rrs}  contact={c}  quality={q:.2f}", flush=True)
                n += 1
                if args.count and n >= args.count:
                    break
        finally:
            await it.aclose()
        return n

    try:
        asyncio.run(main())
    finally:
        src.close()
        if src.rejected:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(src.rejected.items()))
            print(f"exposure: rejected input: {counts}", file=sys.stderr, flush=True)
        if rr_rejected:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(rr_rejected.items()))
            print(f"exposure: RR intervals left out of HR and RMSSD: {counts}", file=sys.stderr, flush=True)
    return 0
