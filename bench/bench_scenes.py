"""Scene cost, offscreen, in one run (python bench/bench_scenes.py [--frames N]).

1. The crowd at intensity 1 against heights at intensity 0 (the reference): mean frame time,
   ratio (target ≤ 2×) and draw calls (target ≤ 60).
2. Intensity changes: frames while the intensity sweeps 0 → 1 → 0 at the therapist's fastest
   ramp, against the median frame of the same run (target: no frame > 2× the median).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli_scenes import Snapshotter  # noqa: E402


def frame_times(snap: Snapshotter, n: int, sweep: bool = False) -> list[float]:
    out = []
    for i in range(n):
        if sweep:  # up and down at 0.05 / frame: a level every two frames, far faster than the core ramps
            k = i % 40
            snap.scene.set_intensity(k / 20 if k <= 20 else (40 - k) / 20)
        t = time.perf_counter()
        snap.frame()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="960x720")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    rows = {}
    for scene, x in (("heights", 0.0), ("crowds", 1.0), ("heights", 1.0), ("crowds", 0.0)):
        snap = Snapshotter(scene, size)
        _, stats = snap.shoot(x)
        ts = frame_times(snap, a.frames)
        rows[(scene, x)] = (statistics.mean(ts), stats)
        print(f"{scene:8s} at {x:.1f}: {statistics.mean(ts):7.2f} ms/frame (median {statistics.median(ts):.2f}), "
              f"{stats['draw_calls']} draw calls, {stats['triangles']} triangles, {stats['nodes']} nodes")
        snap.close()
    ref = rows[("heights", 0.0)][0]
    crowd, cstats = rows[("crowds", 1.0)]
    ok1 = crowd <= 2 * ref and cstats["draw_calls"] <= 60
    print(f"crowd@1 / heights@0 frame time: {crowd / ref:.2f}x (target <= 2x), "
          f"crowd@1 draw calls {cstats['draw_calls']} (target <= 60): {'OK' if ok1 else 'MISSED'}")
    ok2 = True
    for scene in ("heights", "crowds"):
        snap = Snapshotter(scene, size)
        snap.shoot(0.0)
        still = frame_times(snap, a.frames)[5:]  # the same scene, intensity held: the machine's own noise
        ts = frame_times(snap, a.frames, sweep=True)[5:]
        med = statistics.median(ts)
        worst = max(ts)
        p99 = sorted(ts)[int(0.99 * (len(ts) - 1))]
        ok = worst <= 2 * med
        ok2 &= ok
        print(f"{scene:8s} intensity sweep: median {med:.2f} ms, p99 {p99:.2f} ms, worst {worst:.2f} ms = "
              f"{worst / med:.2f}x median (target <= 2x): {'OK' if ok else 'MISSED'}; intensity held: median "
              f"{statistics.median(still):.2f} ms, worst {max(still):.2f} ms = "
              f"{max(still) / statistics.median(still):.2f}x")
        snap.close()
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
