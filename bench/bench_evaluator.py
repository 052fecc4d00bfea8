"""Evaluator throughput: simulated patient-seconds per second, per core, and its scale-out on Ray.

Runs the same evaluation (the 4 baselines side by side on the same patients) in one process
(one core), then as Ray tasks on an in-process Ray with 1 and with 2 CPUs, and
prints each in patient-seconds per second and per core, the speed-up from 1 to 2 Ray workers,
and whether the three results are the same JSON. Ray's start-up is not timed: each Ray is
started and warmed up (its workers import the code) before the clock starts. Patient-seconds per
CPU-second (the CPU time the simulating processes were given) are printed too: on a machine
shared with other jobs they show the cost of the work when the wall-clock figures cannot.

``--cluster N`` then starts a simulated cluster of N Ray nodes on this machine
(``ray.cluster_utils.Cluster``, one CPU each), runs the evaluation there and prints which node ran
how many shards: the same code path as a real cluster joined with ``--ray ADDRESS``.

``--ref PATH`` first runs the same one-process evaluation from another checkout (today's version,
e.g. ``git worktree add --detach ../ref <commit>``) in a child process whose ``PYTHONPATH`` is that
checkout, then this checkout's the same way, and prints both per-core figures, their ratio and whether
the two results are the same JSON (they may differ within the documented floating-point tolerance:
docs/scale.md). ``--rounds K`` alternates the two K times and takes the median round's ratio (a machine whose speed
changes during the run then changes both checkouts' figures). ``--no-ray`` stops after that.

The machine is shared: the load average before and after is printed with the figures.

    python bench/bench_evaluator.py [--patients 1000] [--sessions 6] [--minutes 40] [--ref PATH] [--rounds K]
                                    [--no-ray]
                                    [--cluster 3]

Needs the 'scale' extra (Ray) for everything but the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checkout_child import run_in_checkout  # noqa: E402  (bench/ is on sys.path: scripts run as files)

from engine.gym_env import scene_table  # noqa: E402
from policy.sim.evaluate import evaluate  # noqa: E402
from policy.sim.patient.population import load_population  # noqa: E402

CONTROLLERS = ["ladder", "suds", "hr-band", "hr-pid"]


CHILD = r"""
import json, sys, time
from engine.gym_env import scene_table
from policy.sim.evaluate import evaluate
from policy.sim.patient.population import load_population
n, sessions, minutes = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
pop, table = load_population(), scene_table("heights")
evaluate(pop, table, sys.argv[4:], 8, seed=1, sessions=1, minutes=1)  # warm-up (compilation, caches)
t, c = time.perf_counter(), time.process_time()
out = evaluate(pop, table, sys.argv[4:], n, seed=1, sessions=sessions, minutes=minutes, workers=1)
dt, cpu = time.perf_counter() - t, time.process_time() - c
import policy
print(json.dumps({"seconds": dt, "cpu": cpu, "result": out, "from": policy.__file__}))
"""


def one_core(path: Path, a) -> dict:
    """The one-process evaluation of the checkout at ``path``, in a child process."""
    return run_in_checkout("bench_evaluator", path, CHILD, a.patients, a.sessions, a.minutes, *CONTROLLERS)


def max_difference(a, b) -> float:
    """The largest absolute difference between the numbers of two results of the same shape."""
    if isinstance(a, dict):
        return max((max_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b)
    return 0.0 if a == b else float("inf")


def per_core(a, work: float) -> None:
    """This checkout against the reference checkout, each alone in a child process; with ``--rounds K``
    the two alternate K times (reference first in odd rounds, this checkout first in even ones), so a
    change in the machine's speed during the run (another job, another virtual machine on the host)
    falls on both, and the verdict is the median round's."""
    ratios = []
    for k in range(a.rounds):
        order = (("reference", a.ref.resolve()), ("this checkout", ROOT))
        runs = {}
        if a.rounds > 1:
            print(f"  round {k + 1} of {a.rounds}:")
        for name, path in (order if k % 2 == 0 else order[::-1]):
            r = runs[name] = one_core(path, a)
            print(f"  {name:13} (1 process): {work / r['seconds'] / 1e6:6.2f} M patient-s/s ({r['seconds']:.1f} s); "
                  f"{work / r['cpu'] / 1e6:.2f} M per CPU-second  [{path}]")
        ratio = runs["reference"]["seconds"] / runs["this checkout"]["seconds"]
        cpu_ratio = runs["reference"]["cpu"] / runs["this checkout"]["cpu"]
        # the verdict takes the lower of the two: on a loaded machine the wall-clock ratio depends on how much
        # of a core each child was given, which can flatter either checkout
        ratios.append(min(ratio, cpu_ratio))
        ra, rb = runs["reference"]["result"], runs["this checkout"]["result"]
        same = json.dumps(ra) == json.dumps(rb)
        print(f"  per core: {ratio:.2f}× the reference ({cpu_ratio:.2f}× per CPU-second); results "
              f"{'identical' if same else f'differ, largest metric difference {max_difference(ra, rb):.4f}'}")
    mid = statistics.median(ratios)
    spread = f" (rounds: {', '.join(f'{r:.2f}×' for r in ratios)}; median)" if a.rounds > 1 else ""
    print(f"  per core, the lower of wall-clock and per-CPU-second: {mid:.2f}×{spread}; goal ≥ 3×: "
          f"{'met' if mid >= 3 else 'NOT met'}")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--shard", type=int, default=None, help="patients per Ray task (default: the evaluator's)")
    ap.add_argument("--cluster", type=int, default=0, help="also run on a simulated cluster of N local Ray nodes")
    ap.add_argument("--ref", type=Path, default=None, help="checkout of the version to compare with, per core")
    ap.add_argument("--rounds", type=int, default=1, help="with --ref: alternate the two checkouts this many times")
    ap.add_argument("--no-ray", action="store_true", help="only the per-core comparison")
    a = ap.parse_args()
    pop, table = load_population(), scene_table("heights")
    kw = dict(seed=1, sessions=a.sessions, minutes=a.minutes)
    work = a.patients * len(CONTROLLERS) * a.sessions * a.minutes * 60.0  # patient-seconds simulated
    print(f"evaluator: {a.patients} patients × {a.sessions} sessions × {a.minutes:g} min × "
          f"{len(CONTROLLERS)} controllers ({', '.join(CONTROLLERS)}) = {work / 1e6:.1f} M patient-seconds")
    print(f"before: {load()}")
    if a.ref:
        per_core(a, work)
    if a.no_ray:
        print(f"after: {load()}")
        return
    evaluate(pop, table, CONTROLLERS, 8, seed=1, sessions=1, minutes=1)  # warm-up (compilation, caches)
    cpu = time.process_time()
    ref, t_ref = timed(lambda: evaluate(pop, table, CONTROLLERS, a.patients, workers=1, **kw))
    cpu = time.process_time() - cpu
    print(f"  this process (1 core)   : {work / t_ref / 1e6:6.2f} M patient-s/s, "
          f"{work / t_ref / 1e6:6.2f} M per core ({t_ref:.1f} s; the reference); "
          f"{work / cpu / 1e6:.2f} M per CPU-second")
    try:
        import ray
    except ImportError:
        print("Ray is not installed (pip install -e '.[scale]'): no Ray figures")
        return
    rates = {}
    for cpus in (1, 2):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            evaluate(pop, table, CONTROLLERS, 6, ray="local", shard=3, sessions=1, minutes=1)  # warm-up
            runs = []
            got, dt = timed(lambda runs=runs: evaluate(pop, table, CONTROLLERS, a.patients, ray="local",
                                                       shard=a.shard, ray_options={"on_progress": runs.append}, **kw))
        finally:
            ray.shutdown()
        rates[cpus] = work / dt
        same = json.dumps(got) == json.dumps(ref)
        print(f"  Ray local, {cpus} worker{'s' if cpus > 1 else ' '}  : {rates[cpus] / 1e6:6.2f} M patient-s/s, "
              f"{rates[cpus] / cpus / 1e6:6.2f} M per core ({dt:.1f} s; "
              f"{rates[cpus] * t_ref / work:.2f}× the reference); {work / runs[-1].cpu_seconds / 1e6:.2f} M per "
              f"CPU-second in the workers; JSON {'identical' if same else 'DIFFERENT'}")
    speedup = rates[2] / rates[1]
    print(f"  speed-up 1 → 2 Ray workers: {speedup:.2f}× (goal ≥ 1.7×: {'met' if speedup >= 1.7 else 'NOT met'})")
    print(f"after: {load()}")
    if a.cluster:
        simulated_cluster(a.cluster, pop, table, kw, a.patients, a.shard, ref)


def simulated_cluster(nodes: int, pop, table, kw, patients, shard, ref) -> None:
    import ray
    from ray.cluster_utils import Cluster

    print(f"simulated cluster: {nodes} Ray nodes on this machine, 1 CPU each")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        runs = []
        got, dt = timed(lambda: evaluate(pop, table, CONTROLLERS, patients, ray=cluster.address, shard=shard,
                                         ray_options={"on_progress": runs.append}, **kw))
        per_node = Counter(s["node"][:8] for s in runs[-1].board.values())
        same = json.dumps(got) == json.dumps(ref)
        print(f"  {len(ray.nodes())} nodes, {runs[-1].cpus} CPUs, {runs[-1].shards} shards in {dt:.1f} s; "
              f"shards per node: {dict(per_node)}; JSON {'identical' if same else 'DIFFERENT'}")
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
