"""The learned policy against the baselines and the oracle: the results page's table (docs/results.md).

    python bench/bench_policy.py [--patients 1000] [--structure-patients 200] [--seed 777]
                                 [--scenes heights,crowds] [--skip main,structures,optical]

For each scene it runs, as child processes, exactly the commands anyone can run:

    exposure evaluate --controllers policy,ladder,suds,hr-band,hr-pid,oracle --patients 1000 \
        --sessions 6 --scene SCENE --seed 777 --structure full --json
    … --patients 200 --structure all                      (every model structure)
    … --patients 200 --population OPTICAL.toml            (optical sensors: more signal gaps)

on held-out patients (training draws from seed 7340000 + its seed, validation uses seed
90001; the benchmark seed 777 is neither), then prints Markdown tables, the goal ratios
(policy responders ÷ the best baseline and ÷ the oracle; overwhelm against the safest
baseline, dropout against the best one), per structure whether the policy is no worse than the
best baseline, and the inference cost of the numpy actor (µs per decision at N = 1 and per
patient at N = 1000), against a reference in the same run (one ``np.tanh`` over the input).
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


def run_eval(scene: str, args, structure: str, patients: int, population: str | None = None):
    cmd = [sys.executable, "-m", "engine", "evaluate", "--controllers", args.controllers,
           "--patients", str(patients), "--sessions", str(args.sessions), "--scene", scene,
           "--seed", str(args.seed), "--structure", structure, "--json", "--no-progress"]
    if population:
        cmd += ["--population", population]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"evaluate failed for {scene}:\n{p.stderr}")
    shown = ["exposure", *(c for c in cmd[3:] if c != "--no-progress")]
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


OPTICAL = """name = "optical sensors"
sensor = "optical"
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--structure-patients", type=int, default=200,
                    help="patients per structure in the per-structure and optical-sensor runs")
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--scenes", default="heights,crowds")
    ap.add_argument("--controllers", default="policy,ladder,suds,hr-band,hr-pid,oracle")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: main,structures,optical")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    optical = tmp / "optical.toml"
    optical.write_text(OPTICAL)
    for scene in args.scenes.split(","):
        print(f"\n## {scene}")
        if "main" not in skip:
            data, cmd, secs = run_eval(scene, args, "full", args.patients)
            print(f"\n`{' '.join(cmd)}` ({secs:.0f} s)\n")
            print("\n".join(table(data["controllers"])))
            g = goals(data["controllers"])
            print(f"\nresponders: {g['responders_vs_best_baseline']:.2f}× the best baseline, "
                  f"{g['responders_vs_oracle']:.2f}× the oracle; overwhelm {g['overwhelm_policy']:.2f} s/session "
                  f"(safest baseline {g['overwhelm_safest_baseline']:.2f}); dropout {g['dropout_policy']:.3f} "
                  f"(best baseline {g['dropout_best_baseline']:.3f})\n")
            for k, ok in g["met"].items():
                print(f"- {'met' if ok else 'NOT met'}: {k}")
        if "structures" not in skip:
            data, cmd, secs = run_eval(scene, args, "all", args.structure_patients)
            print(f"\nEvery model structure: `{' '.join(cmd)}` ({secs:.0f} s)\n")
            print("| structure | policy responders | best baseline | oracle | policy dropout | min baseline dropout "
                  "| policy overwhelm s | min baseline overwhelm s | no worse than best baseline |")
            print("|---|---|---|---|---|---|---|---|---|")
            for st, v in data["structures"].items():
                print(_structure_row(st, v["controllers"]))
        if "optical" not in skip:
            data, cmd, secs = run_eval(scene, args, "full", args.structure_patients, str(optical))
            print(f"\nOptical sensors (more signal gaps): `{' '.join(cmd).replace(str(optical), 'OPTICAL.toml')}` "
                  f"({secs:.0f} s), OPTICAL.toml = `sensor = \"optical\"`\n")
            print("| structure | policy responders | best baseline | oracle | policy dropout | min baseline dropout "
                  "| policy overwhelm s | min baseline overwhelm s | no worse than best baseline |")
            print("|---|---|---|---|---|---|---|---|---|")
            print(_structure_row("full, optical", data["controllers"]))
        print()
        for n, c in inference_cost(scene).items():
            print(f"- inference N={n}: {c['us_per_call']:.1f} µs per decision ({c['us_per_patient']:.2f} µs per "
                  f"patient; {c['x_reference_tanh']:.1f}× one np.tanh over the input)")


def _structure_row(name: str, res: dict) -> str:
    base = {k: v for k, v in res.items() if k in BASELINES}
    best = max(base.values(), key=lambda m: m["responder_rate"])
    pol = res["policy"]
    orc = res.get("oracle", {}).get("responder_rate", float("nan"))
    ok = pol["responder_rate"] >= best["responder_rate"]
    return (f"| {name} | {pol['responder_rate']:.3f} | {best['responder_rate']:.3f} | {orc:.3f} | "
            f"{pol['dropout_rate']:.3f} | {min(m['dropout_rate'] for m in base.values()):.3f} | "
            f"{pol['overwhelm_s_per_session']:.2f} | {min(m['overwhelm_s_per_session'] for m in base.values()):.2f} | "
            f"{'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()
