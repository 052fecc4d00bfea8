"""Benchmark: re-deriving a logged session's decisions (``exposure replay --display none``).

Records 45-minute sessions at --speed max (the reference: the live core with the virtual patient
and the log writer, on the same machine in the same run), then replays each from its file and
prints how many times faster than real time the replay runs, and its ratio to the recording.

    python bench/bench_replay.py [--minutes 45] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.research.replay import counterfactual, load_log, rederive  # noqa: E402
from engine.session.clock import SimClock  # noqa: E402
from engine.session.live import Session, SessionConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    dur = a.minutes * 60
    rec, load, red, cf, n_dec = [], [], [], [], 0
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.repeat):
            cfg = SessionConfig(sensor=f"sim://?seed={i}", controller="ladder", duration_s=dur, speed="max",
                                sessions_dir=Path(d), console=None, seed=i)
            t = time.perf_counter()
            s = Session(cfg, clock=SimClock())
            s.run_headless()
            rec.append(time.perf_counter() - t)
            t = time.perf_counter()
            log = load_log(s.path)
            load.append(time.perf_counter() - t)
            res = rederive(log)
            if not res.match:
                print(f"session {i}: replay does NOT match ({len(res.mismatches)} mismatches)")
                return 1
            red.append(res.elapsed_s)
            n_dec = res.n_logged
            t = time.perf_counter()
            counterfactual(log, "ladder")
            cf.append(time.perf_counter() - t)
    med = statistics.median
    print(f"{a.minutes:g}-minute session, {n_dec} decisions, median of {a.repeat}:")
    print(f"  record at --speed max (reference): {med(rec):7.3f} s  = {dur / med(rec):8,.0f}x real time")
    print(f"  read the log for replay:           {med(load):7.3f} s")
    print(f"  re-derive every decision:          {med(red):7.3f} s  = {dur / med(red):8,.0f}x real time "
          f"({med(rec) / med(red):.1f}x faster than recording)")
    print(f"  read + re-derive (what the CLI does): {med(load) + med(red):5.3f} s  = "
          f"{dur / (med(load) + med(red)):8,.0f}x real time")
    print(f"  counterfactual (4 Hz tick grid):   {med(cf):7.3f} s  = {dur / med(cf):8,.0f}x real time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
