"""The learned policy against the baselines and the oracle: the README's results table.

    python bench/bench_policy.py [--patients 1000] [--sessions 6] [--seed 777] [--scenes heights,crowds]

For each scene it runs, as a child process, exactly the command anyone can run:

    exposure evaluate --controllers policy,ladder,suds,hr-band,hr-pid,oracle --patients 1000 \
        --sessions 6 --scene SCENE --seed 777 --structure all --json

on held-out seeds (training uses seeds from 0 and validation 90001; the benchmark seed is
neither), then prints a Markdown table, the goal ratios (policy responders ÷ best baseline and
÷ oracle; overwhelm and dropout against the safest / best baseline; per structure), and the
inference cost of the numpy actor (µs per decision at N = 1, and per patient at N = 1000),
measured against a reference in the same run (one ``np.tanh`` over the same input).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINES = ("ladder", "suds", "hr-band", "hr-pid")
SHOW = ("responder_rate", "bat_steps_post", "top_suds_post", "dropout_rate", "escapes_per_patient",
        "overwhelm_s_per_session", "window_fraction", "vr_minutes")


def run_eval(scene: str, args) -> tuple[dict, list[str], float]:
    cmd = [sys.executable, "-m", "engine", "evaluate", "--controllers", args.controllers,
           "--patients", str(args.patients), "--sessions", str(args.sessions), "--scene", scene,
           "--seed", str(args.seed), "--structure", "all", "--json"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"evaluate failed for {scene}:\n{p.stderr}")
    shown = ["exposure", *cmd[3:]]
    return json.loads(p.stdout), shown, time.monotonic() - t0


def table(res: dict) -> list[str]:
    out = ["| controller | " + " | ".join(SHOW) + " |", "|---" * (len(SHOW) + 1) + "|"]
    for name, m in res.items():
        out.append(f"| {name} | " + " | ".join(_f(m.get(k)) for k in SHOW) + " |")
    return out


def _f(x) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def goals(res: dict) -> dict:
    pol = res["policy"]
    base = {k: v for k, v in res.items() if k in BASELINES}
    best = max(base.values(), key=lambda m: m["responder_rate"])
    g = {
        "responders_vs_best_baseline": pol["responder_rate"] / max(best["responder_rate"], 1e-9),
        "responders_vs_oracle": pol["responder_rate"] / max(res["oracle"]["responder_rate"], 1e-9)
        if "oracle" in res else None,
        "overwhelm_policy": pol["overwhelm_s_per_session"],
        "overwhelm_safest_baseline": min(m["overwhelm_s_per_session"] for m in base.values()),
        "dropout_policy": pol["dropout_rate"],
        "dropout_best_baseline": best["dropout_rate"],
    }
    g["met"] = {
        "responders ≥ 1.25× best baseline": g["responders_vs_best_baseline"] >= 1.25,
        "responders ≥ 0.9× oracle": g["responders_vs_oracle"] is not None and g["responders_vs_oracle"] >= 0.9,
        "overwhelm ≤ safest baseline": g["overwhelm_policy"] <= g["overwhelm_safest_baseline"],
        "dropout ≤ best baseline": g["dropout_policy"] <= g["dropout_best_baseline"],
    }
    return g


def inference_cost(scene: str) -> dict:
    from policy.learned import LearnedController
    from policy.observation import empty_observation

    ctl = LearnedController(scene=scene)
    out = {}
    for n in (1, 1000):
        ctl.reset(n, np.linspace(0, 1, 11), np.random.default_rng(0))
        obs = empty_observation(n)
        reps = 2000 if n == 1 else 50
        ctl.propose(obs)
        t0 = time.perf_counter()
        for _ in range(reps):
            ctl.propose(obs)
        t = (time.perf_counter() - t0) / reps
        x = obs.vector()
        t0 = time.perf_counter()
        for _ in range(reps):
            np.tanh(x)
        ref = (time.perf_counter() - t0) / reps
        out[n] = {"us_per_call": t * 1e6, "us_per_patient": t * 1e6 / n, "x_reference_tanh": t / max(ref, 1e-12)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--scenes", default="heights,crowds")
    ap.add_argument("--controllers", default="policy,ladder,suds,hr-band,hr-pid,oracle")
    args = ap.parse_args()
    for scene in args.scenes.split(","):
        data, cmd, secs = run_eval(scene, args)
        print(f"\n## {scene}\n\n`{' '.join(cmd)}` ({secs:.0f} s)\n")
        print("\n".join(table(data["controllers"])))
        g = goals(data["controllers"])
        print(f"\nresponders: {g['responders_vs_best_baseline']:.2f}× best baseline, "
              f"{g['responders_vs_oracle']:.2f}× oracle; overwhelm {g['overwhelm_policy']:.1f} s/session "
              f"(safest baseline {g['overwhelm_safest_baseline']:.1f}); dropout {g['dropout_policy']:.3f} "
              f"(best baseline {g['dropout_best_baseline']:.3f})")
        for k, ok in g["met"].items():
            print(f"- {'met' if ok else 'NOT met'}: {k}")
        for s, res in (data.get("structures") or {}).items():
            base = {k: v for k, v in res.items() if k in BASELINES}
            best = max(base.values(), key=lambda m: m["responder_rate"])
            pol = res["policy"]
            print(f"- structure {s}: responders policy {pol['responder_rate']:.3f} vs best baseline "
                  f"{best['responder_rate']:.3f}, oracle {res.get('oracle', {}).get('responder_rate', float('nan')):.3f}; "
                  f"dropout {pol['dropout_rate']:.3f} vs {min(m['dropout_rate'] for m in base.values()):.3f}; "
                  f"{'no worse' if pol['responder_rate'] >= best['responder_rate'] else 'WORSE'} than the best baseline")
        for n, c in inference_cost(scene).items():
            print(f"- inference N={n}: {c['us_per_call']:.1f} µs per decision ({c['us_per_patient']:.2f} µs per "
                  f"patient; {c['x_reference_tanh']:.1f}× one np.tanh over the input)")


if __name__ == "__main__":
    main()
