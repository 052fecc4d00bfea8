"""The full calibration check: every anchor on 1,000 patients in both scenes (``exposure calibrate``),
printed as the markdown table of docs/calibration.md, with the wall time of each scene.

    python bench/bench_calibrate.py [--patients 1000] [--seed 0] [--workers 2] [--population FILE] [--json OUT]
    python bench/bench_calibrate.py --scenes crowds --json crowds.json     # one scene (run scenes side by side)
    python bench/bench_calibrate.py --tables heights.json crowds.json      # the table from saved runs

Exit status 1 if any anchor is out in any scene.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.gym_env import scene_table  # noqa: E402
from policy.sim.calibrate import ANCHORS, calibrate  # noqa: E402
from policy.sim.patient.population import load_population  # noqa: E402


def _v(x, unit=""):
    return "—" if x is None else f"{x:.3g}" + (f" {unit}" if unit else "")


def markdown(results: dict) -> str:
    scenes = list(results)
    head = "| anchor | source | protocol | outcome | published | accepted | " + " | ".join(
        f"model ({s})" for s in scenes) + " |"
    lines = [head, "|" + "---|" * (6 + len(scenes))]
    for a in ANCHORS:
        cells = []
        for s in scenes:
            r = next((x for x in results[s]["anchors"] if x["key"] == a.key), None)
            cells.append("n/a" if r is None else f"{_v(r['model'], a.unit)} {'✓' if r['ok'] else '**✗**'}")
        acc = f"{a.low:g} – {a.high:g}" + (f" {a.unit}" if a.unit else "")
        lines.append(f"| {a.key} | {a.source} | {a.protocol} | {a.outcome} | {a.published} | {acc} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--population", default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--scenes", default="heights,crowds", help="comma-separated scenes (default both)")
    ap.add_argument("--chunk", type=int, default=500, help="patients per job (results do not depend on it)")
    ap.add_argument("--tables", nargs="+", default=None, metavar="JSON",
                    help="print the table from results saved with --json instead of running")
    a = ap.parse_args()
    results = {}
    if a.tables:
        for f in a.tables:
            results.update(json.loads(Path(f).read_text()))
        print(markdown(results))
        return 0 if all(r["passed"] for r in results.values()) else 1
    pop = load_population(a.population)
    for scene in a.scenes.split(","):
        t = time.perf_counter()
        results[scene] = calibrate(pop, scene_table(scene), a.patients, seed=a.seed, workers=a.workers,
                                   chunk=a.chunk)
        print(f"{scene}: {time.perf_counter() - t:.0f} s wall for {a.patients} patients × {len(ANCHORS)} anchors",
              file=sys.stderr)
    print(markdown(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
