"""Evaluator throughput: simulated patient-seconds per second of wall time.

Runs the same evaluation (4 controllers side by side on the same patients, one 10-minute
session) with 1 process and with 2, and prints both and their ratio. The issue asks for
≥ 1 M patient-seconds/s on this 2-core machine.

    python bench/bench_evaluator.py [--patients 2000] [--minutes 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.gym_env import scene_table  # noqa: E402
from policy.sim.evaluate import evaluate  # noqa: E402
from policy.sim.patient.population import load_population  # noqa: E402

CONTROLLERS = ["ladder", "suds", "hr-band", "oracle"]


def run(pop, table, patients, minutes, workers) -> float:
    t = time.perf_counter()
    evaluate(pop, table, CONTROLLERS, patients, seed=1, sessions=1, minutes=minutes, workers=workers)
    dt = time.perf_counter() - t
    return patients * len(CONTROLLERS) * minutes * 60.0 / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=10.0)
    a = ap.parse_args()
    pop, table = load_population(), scene_table("heights")
    one = run(pop, table, a.patients, a.minutes, 1)
    two = run(pop, table, a.patients, a.minutes, 2)
    print(f"evaluator, {a.patients} patients × {len(CONTROLLERS)} controllers × {a.minutes:g} min:")
    print(f"  1 process : {one / 1e6:.2f} M patient-seconds/s (reference)")
    print(f"  2 processes: {two / 1e6:.2f} M patient-seconds/s ({two / one:.2f}× the reference)")
    print(f"  target ≥ 1 M patient-seconds/s: {'met' if two >= 1e6 else 'NOT met'}")


if __name__ == "__main__":
    main()
