"""How much does a busy console cost the session, and do safety commands get through a flood?

    python bench/bench_console.py [--ticks 4800] [--part overhead|safety|all]

Part "overhead" runs the same simulated session (virtual patient, ladder, SimClock, 0.25 s ticks) twice in this
process: once with no console (the reference), once with the console up and loaded by four
WebSocket clients, one client polling GET /api/state as fast as it can and one posting
annotate commands as fast as it can (429s included). Prints the wall time of one session tick
(median, p99, max), the ratio to the reference, and the API's round-trip times under load.

Part "safety": the session ticks (0.25 s of session time every 10 ms of wall time) while four
clients post notes as fast as they can; a fifth sends 100 pause/resume commands and a final stop.
For each, the number of session ticks between its 202 and the tick that applied it (the session
log); the goal is at most 1. The same 101 commands without the
flood, in the same run, are the reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

from engine.console import start_console  # noqa: E402
from engine.session.clock import SimClock  # noqa: E402
from engine.session.live import Session, SessionConfig  # noqa: E402


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(ticks: int, load: bool) -> dict:
    cfg = SessionConfig(scene="heights", sensor="sim://?seed=5", controller="ladder", display="none",
                        duration_s=ticks * 0.25 + 10, speed="max", patient="bench",
                        sessions_dir=Path(tempfile.mkdtemp()), console=("127.0.0.1", 0) if load else None,
                        seed=5)
    s = Session(cfg, clock=SimClock(), start_console=start_console)
    s.start_io()
    stop = threading.Event()
    lat = {"state": [], "command": []}
    codes: dict[int, int] = {}
    threads = []
    if load:
        h = s.console
        base = h.url.split("/#")[0]
        hdr = {"Authorization": f"Bearer {h.token}"}

        def ws_client():
            with ws_connect(base.replace("http", "ws") + "/ws", subprotocols=["bearer." + h.token],
                            open_timeout=30) as ws:
                while not stop.is_set():
                    try:
                        ws.recv(0.5)
                    except TimeoutError:
                        pass

        def poller():
            with httpx.Client(base_url=base, headers=hdr) as c:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    c.get("/api/state")
                    lat["state"].append(time.perf_counter() - t0)

        def poster():
            with httpx.Client(base_url=base, headers=hdr) as c:
                i = 0
                while not stop.is_set():
                    t0 = time.perf_counter()
                    r = c.post("/api/command", json={"type": "annotate", "text": f"bench {i}"})
                    lat["command"].append(time.perf_counter() - t0)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    i += 1

        threads = [threading.Thread(target=f, daemon=True) for f in [ws_client] * 4 + [poller, poster]]
        for th in threads:
            th.start()
        time.sleep(1.0)
    dur = []
    t = 0.0
    wall0 = time.perf_counter()
    for _ in range(ticks):
        t += 0.25
        s.clock.sleep_until(t)
        t0 = time.perf_counter()
        s.step(t)
        dur.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    stop.set()
    for th in threads:
        th.join(5)
    s.close("bench over")
    return {"dur": dur, "wall": wall, "lat": lat, "codes": codes}


def safety(flood: bool, fill: bool = False, dt: float = 0.25, wall_per_tick: float = 0.01) -> dict:

    from engine.store.files import SessionReader

    cfg = SessionConfig(scene="heights", sensor="sim://?seed=5", controller="ladder", display="none",
                        duration_s=3600, speed="max", patient="bench", sessions_dir=Path(tempfile.mkdtemp()),
                        console=("127.0.0.1", 0), seed=5)
    s = Session(cfg, clock=SimClock(), start_console=start_console)
    s.start_io()
    h = s.console
    base = h.url.split("/#")[0]
    hdr = {"Authorization": f"Bearer {h.token}"}
    stop = threading.Event()
    done = threading.Event()
    codes: dict[int, int] = {}
    sent: list[tuple[str, float]] = []
    n_flooders = 4 if flood else 0

    def flooder(k):
        with httpx.Client(base_url=base, headers=hdr) as c:
            i = 0
            while not stop.is_set():
                r = c.post("/api/command", json={"type": "annotate", "text": f"flood {k}.{i}"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                i += 1

    def therapist():
        with httpx.Client(base_url=base, headers=hdr) as c:
            time.sleep(0.5)
            for i in range(101):
                typ = "stop" if i == 100 else ("pause" if i % 2 == 0 else "resume")
                r = c.post("/api/command", json={"type": typ})
                if r.status_code != 202:
                    raise SystemExit(f"{typ} answered {r.status_code}: {r.text}")
                sent.append((typ, s.core.t))  # session time when the 202 came back
                time.sleep(wall_per_tick * 1.5)
        done.set()

    def filler():  # keeps the note lane full from inside the process (HTTP alone cannot, here)
        from engine.session.commands import CommandError

        i = 0
        while not stop.is_set():
            try:
                s.core.push_command({"type": "annotate", "text": f"fill {i}"})
                i += 1
            except CommandError:
                time.sleep(0.001)
            codes["filled"] = i

    threads = [threading.Thread(target=flooder, args=(k,), daemon=True) for k in range(n_flooders)]
    if fill:
        threads.append(threading.Thread(target=filler, daemon=True))
    threads.append(threading.Thread(target=therapist, daemon=True))
    for th in threads:
        th.start()
    t = 0.0
    while not (done.is_set() and s.core.arbiter.stopped):
        t += dt
        s.clock.sleep_until(t)
        s.step(t)
        time.sleep(wall_per_tick)
        if t > 3000:
            raise SystemExit("the stop never arrived")
    stop.set()
    for th in threads:
        th.join(10)
    s.close("bench over")
    with SessionReader(s.path) as r:
        rows = [x for x in r.records("commands") if x["type"] in ("pause", "resume", "stop")]
    if [x["type"] for x in rows] != [typ for typ, _ in sent] or not all(x["accepted"] for x in rows):
        raise SystemExit("the log does not hold every safety command, applied, in order")
    # ticks the session made after the 202 before the command was applied (0: applied by a tick
    # that ran while the request was answered)
    ticks = [max(0, round((x["t"] - t_ok) / dt)) for x, (_, t_ok) in zip(rows, sent, strict=True)]
    return {"ticks": ticks, "codes": codes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=43200, help="session ticks (43200 = 3 simulated hours)")
    ap.add_argument("--part", choices=["overhead", "safety", "all"], default="all")
    a = ap.parse_args()
    if a.part in ("safety", "all"):
        quiet, busy, full = safety(flood=False), safety(flood=True), safety(flood=True, fill=True)
        for name, r in (("no flood (reference)", quiet), ("4 clients flooding notes", busy),
                        ("4 clients + note lane kept full", full)):
            tk = r["ticks"]
            print(f"safety commands, {name}: {len(tk)} (100 pause/resume + stop), ticks from acceptance to "
                  f"application: worst {max(tk)}, median {statistics.median(tk):g}, "
                  f"share within one tick {sum(x <= 1 for x in tk) / len(tk):.0%}")
        for name, r in (("flood", busy), ("lane full", full)):
            print(f"  {name}: note answers {dict(sorted(r['codes'].items(), key=str))}; "
                  f"worst case ratio to reference {max(r['ticks']) / max(1, max(quiet['ticks'])):.2f}x")
    if a.part == "safety":
        return
    ref = run(a.ticks, load=False)
    busy = run(a.ticks, load=True)
    ms = lambda x: f"{x * 1000:.3f} ms"  # noqa: E731
    print(f"session ticks: {a.ticks} (0.25 s each, {a.ticks / 240:.0f} simulated minutes), speed max")
    for name, r in (("no console (reference)", ref), ("console under load", busy)):
        d = r["dur"]
        print(f"  {name:24s} tick median {ms(statistics.median(d))}  p99 {ms(pct(d, 0.99))}  "
              f"max {ms(max(d))}  whole run {r['wall']:.2f} s")
    med = statistics.median
    print(f"  ratio console/reference: median tick {med(busy['dur']) / med(ref['dur']):.2f}x, "
          f"p99 tick {pct(busy['dur'], 0.99) / pct(ref['dur'], 0.99):.2f}x, "
          f"whole run {busy['wall'] / ref['wall']:.2f}x")
    ls, lc = busy["lat"]["state"], busy["lat"]["command"]
    print(f"  GET /api/state under load: {len(ls)} requests, median {ms(med(ls))}, p99 {ms(pct(ls, 0.99))}")
    print(f"  POST /api/command under load: {len(lc)} requests, median {ms(statistics.median(lc))}, "
          f"p99 {ms(pct(lc, 0.99))}; status codes {dict(sorted(busy['codes'].items()))}")


if __name__ == "__main__":
    main()
