"""A 45-minute simulated session with --display none --speed max: how many times real time?

Prints the simulated-to-wall ratio (goal ≥ 2000×) and, as a reference measured in the same run,
the bare cost of the virtual patient and feature pipeline alone (no core, no store), so the
session's own overhead shows as a ratio.

    python bench/bench_session.py [--minutes 45] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.session.live import Session, SessionConfig  # noqa: E402
from policy.sim.source import SimPatientSource  # noqa: E402
from sensors.features import FeatureBank  # noqa: E402
from sensors.source import Exposure  # noqa: E402


def session_once(minutes: float, d: Path, controller: str) -> float:
    cfg = SessionConfig(sensor="sim://?seed=3", controller=controller, display="none",
                        duration_s=minutes * 60, speed="max", patient="bench", sessions_dir=d)
    s = Session(cfg)
    t0 = time.perf_counter()
    s.run_headless()
    return time.perf_counter() - t0


def reference_once(minutes: float) -> float:
    src = SimPatientSource("sim://", seed=3)
    bank = FeatureBank(1)
    t0 = time.perf_counter()
    for sec in range(1, int(minutes * 60) + 1):
        src.observe(Exposure(sec, 0.3))
        for smp in src.poll(float(sec)):
            rr = np.array([list(smp.rr_ms) or [np.nan]])
            bank.update(smp.t, np.array([smp.bpm]), rr, np.array([int(bool(smp.contact))]))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--controller", default="ladder")
    a = ap.parse_args()
    sim_s = a.minutes * 60
    with tempfile.TemporaryDirectory() as d:
        runs = [session_once(a.minutes, Path(d), a.controller) for _ in range(a.repeat)]
    refs = [reference_once(a.minutes) for _ in range(a.repeat)]
    best, ref = min(runs), min(refs)
    print(f"session: {a.minutes:g} simulated min, --display none --speed max, controller {a.controller}")
    print(f"  wall time: best {best:.3f} s, median {statistics.median(runs):.3f} s over {a.repeat} runs")
    print(f"  speed: {sim_s / best:,.0f}x real time (goal >= 2000x)")
    print(f"reference (virtual patient + features only): best {ref:.3f} s = {sim_s / ref:,.0f}x real time")
    print(f"  whole session costs {best / ref:.2f}x the reference pipeline")


if __name__ == "__main__":
    main()
