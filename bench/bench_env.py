"""The single ``ExposureTherapy-v0`` env, stepped one environment at a time as RL libraries step it:
steps per second (one step = 5 s of session), for this checkout and for a reference checkout, in
one run, each in its own child process with its own ``PYTHONPATH`` (the same machine, the same
moment, the same actions). The shielded env of ``gym.make``; a fixed sequence of actions; episodes
reset with consecutive seeds; the first episode is a warm-up (compilation, caches) and not timed.

    python bench/bench_env.py [--ref PATH] [--steps 3000] [--minutes 40] [--rounds 3]

``--ref`` is a checkout of the version to compare with (e.g. ``git worktree add --detach ../ref
<commit>``); without it only this checkout is measured. The two alternate for ``--rounds`` rounds
and the best round of each counts (other jobs on a shared machine only ever slow a round down);
steps per CPU-second (the CPU time the process was given) are printed too, and the load average:
on a busy machine they are the figures to trust.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from checkout_child import run_in_checkout

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
from engine.gym_env import make_env
steps, minutes = int(sys.argv[1]), float(sys.argv[2])
env = make_env("heights", minutes=minutes)
rng = np.random.default_rng(0)
actions = rng.choice(3, size=steps, p=[0.3, 0.3, 0.4])
def run(n, seed):
    env.reset(seed=seed)
    done = 0
    for i in range(n):
        _, _, term, trunc, _ = env.step(int(actions[i % len(actions)]))
        if term or trunc:
            seed += 1
            env.reset(seed=seed)
            done += 1
    return done
run(200, 1000)  # warm-up
t, c = time.perf_counter(), time.process_time()
episodes = run(steps, 1)
dt, cpu = time.perf_counter() - t, time.process_time() - c
import policy
print(json.dumps({"steps": steps, "seconds": dt, "cpu": cpu, "episodes": episodes, "from": policy.__file__}))
"""


def measure(path: Path, steps: int, minutes: float) -> dict:
    return run_in_checkout("bench_env", path, CHILD, steps, minutes)


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", type=Path, default=None, help="checkout of the reference version")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=40.0, help="session length (the default population's)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each counts")
    a = ap.parse_args()
    print(f"ExposureTherapy-v0 (shielded, heights, {a.minutes:g}-min sessions), one env stepped "
          f"{a.steps} times (one step = 5 s of session)")
    print(f"before: {load()}")
    runs = [("this checkout", ROOT)] + ([("reference", a.ref.resolve())] if a.ref else [])
    rounds: dict[str, list[dict]] = {name: [] for name, _ in runs}
    for _ in range(a.rounds):
        for name, path in runs:
            rounds[name].append(measure(path, a.steps, a.minutes))
    rate, cpu_rate = {}, {}
    for name, path in runs:
        r = min(rounds[name], key=lambda x: x["seconds"])
        rate[name], cpu_rate[name] = r["steps"] / r["seconds"], r["steps"] / min(x["cpu"] for x in rounds[name])
        print(f"  {name:14}: {rate[name]:8.0f} steps/s, {cpu_rate[name]:6.0f} per CPU-second (best of {a.rounds}; "
              f"{r['episodes']} episodes ended)  [{path}]")
    if a.ref:
        ratio, cpu_ratio = rate["this checkout"] / rate["reference"], cpu_rate["this checkout"] / cpu_rate["reference"]
        print(f"  ratio: {ratio:.2f}× the reference in steps/s, {cpu_ratio:.2f}× per CPU-second "
              f"(goal ≥ 3×: {'met' if min(ratio, cpu_ratio) >= 3 else 'NOT met'})")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
