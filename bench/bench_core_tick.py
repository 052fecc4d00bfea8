"""The session core's cost per tick with a realistic sample stream (goal ≤ 0.5 ms median).

A 60 fps rendered session ticks the core once a frame; a chest strap sends one sample a second
with 1–2 RR intervals; the controller decides every 5 s; the store buffers and commits every
0.5 s of wall time. Prints the median, 99th percentile and maximum per tick, split into ticks
that ingest a sample, ticks that decide, and plain ticks; the reference is an empty tick (no
samples, between decisions), measured in the same run.

    python bench/bench_core_tick.py [--minutes 10] [--fps 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.session.core import SessionCore  # noqa: E402
from engine.store.files import SessionWriter  # noqa: E402
from policy.controllers import make_controller  # noqa: E402
from policy.shield import SafetyShield  # noqa: E402
from policy.sim.source import SimPatientSource  # noqa: E402
from scenes.hierarchy import load_hierarchy  # noqa: E402
from sensors.source import Exposure  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--fps", type=float, default=60)
    ap.add_argument("--controller", default="ladder")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        w = SessionWriter(Path(d), "bench", {})
        core = SessionCore(load_hierarchy("heights"), make_controller(a.controller), SafetyShield(), w)
        src = SimPatientSource("sim://", seed=1, dropout=0.0)
        dt = 1.0 / a.fps
        n = int(a.minutes * 60 * a.fps)
        cost = np.empty(n)
        kind = np.zeros(n, dtype=int)  # 0 plain, 1 sample, 2 decision
        for i in range(n):
            now = (i + 1) * dt
            samples = src.poll(now)
            deciding = now >= core.next_decision
            t0 = time.perf_counter()
            for s in samples:
                core.push_sample(s)
            core.tick(now)
            cost[i] = time.perf_counter() - t0
            src.observe(Exposure(now, core.intensity))
            kind[i] = 2 if deciding else (1 if samples else 0)
        w.close()
    ms = cost * 1e3
    print(f"core tick at {a.fps:g} fps over {a.minutes:g} simulated min ({n} ticks), controller {a.controller}")
    print(f"  all ticks:      median {np.median(ms):.4f} ms  p99 {np.percentile(ms, 99):.4f} ms  "
          f"max {ms.max():.3f} ms   (goal: median <= 0.5 ms)")
    for k, name in ((1, "sample ticks"), (2, "decision ticks"), (0, "plain ticks")):
        m = ms[kind == k]
        if m.size:
            print(f"  {name + ':':15} median {np.median(m):.4f} ms  p99 {np.percentile(m, 99):.4f} ms  n={m.size}")
    ref = np.median(ms[kind == 0])
    print(f"  reference (plain tick) median {ref:.4f} ms; a sample tick costs {np.median(ms[kind == 1]) / ref:.1f}x, "
          f"a decision tick {np.median(ms[kind == 2]) / ref:.1f}x")


if __name__ == "__main__":
    main()
