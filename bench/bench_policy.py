"""The learned policy's goal table: the five goals of the policy page (docs/policy.md), per scene,
for every model structure, both sensors and every example population, each met or not.

    python bench/bench_policy.py [--patients 200] [--seed 777] [--scenes heights,crowds]
                                 [--policy-dir DIR] [--workers 2] [--write-card]
                                 [--parts chest,optical,populations] [--compare-dir policy/models]

For each scene it runs, as child processes, exactly the commands anyone can run (printed with
the table):

    exposure evaluate --controllers policy,ladder,suds,hr-band,hr-pid,oracle --patients P \\
        --scene SCENE --seed 777 --structure all --json                  (chest strap, every structure)
    … --population OPTICAL.toml                                         (optical sensor, every structure)
    … --population NAME                                                 (each example population)

on held-out patients: training draws from seed 7340000 + its seed, validation during training
uses seed 90001; the benchmark seed 777 is neither, and the example populations (written in the
project's population format, policy/sim/patient/populations/) are never trained on — training
uses the default population with its priors widened.

The goals (held-out patients, per row):

1. responders ≥ the best clinical baseline + 0.03 and ≥ the oracle − 0.02;
2. overwhelm seconds per session ≤ the safest of ladder, SUDS protocol and HR band + 0.1, and
   escapes per patient ≤ their minimum + 0.01;
3. dropout ≤ the lowest baseline dropout + 0.01;
4. approach-test steps passed ≥ the ladder's − 0.25;
5. SUDS questions ≤ 0.5 per minute in VR (never two within 60 s: the shield's question budget,
   tests/policy/test_shield_asks.py).

``--compare-dir DIR`` judges a second set of policies (e.g. the shipped ones, ``policy/models``) on
the same patients against the same baselines: one more ``evaluate --controllers policy`` per command
(evaluate gives each controller the same random numbers whichever others run), a second table, and
the goals met and the overwhelm and escapes of both, pooled over the rows.

``--write-card`` writes the result into the model card (``card.json``: ``goals``) of the policy
judged (the shipped one, or ``--policy-dir``), so :func:`policy.learned.goals_met` can decide
whether the policy may be the default. It also prints the numpy actor's inference cost (µs per
decision at N = 1, against one ``np.tanh`` over the input in the same run) and checks that
loading and running the policy imports no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINES = ("ladder", "suds", "hr-band", "hr-pid")
SAFE = ("ladder", "suds", "hr-band")  # goal 2: the safest of these
CONTROLLERS = "policy,ladder,suds,hr-band,hr-pid,oracle"
GOALS = ("1 responders", "2 safety", "3 dropout", "4 approach test", "5 questions")
OPTICAL = 'name = "optical sensor"\nsensor = "optical"\n'


def goal_row(res: dict) -> dict:
    """The five goals for one evaluation (``{controller: metrics}``): {goal: (met, text)}."""
    pol = res["policy"]
    base = {k: v for k, v in res.items() if k in BASELINES}
    best = max(m["responder_rate"] for m in base.values())
    orc = res["oracle"]["responder_rate"] if "oracle" in res else None
    need = max(best + 0.03, orc - 0.02 if orc is not None else -1.0)
    r = pol["responder_rate"]
    over = min(base[k]["overwhelm_s_per_session"] for k in SAFE)
    esc = min(base[k]["escapes_per_patient"] for k in SAFE)
    drop = min(m["dropout_rate"] for m in base.values())
    bat = base["ladder"]["bat_steps_post"]
    asks = pol.get("suds_asks_per_min") or 0.0
    g = {
        "1 responders": (r >= need - 1e-9, f"{r:.3f} vs ≥ {need:.3f} (best baseline {best:.3f}, oracle "
                                             + (f"{orc:.3f})" if orc is not None else "–)")),
        "2 safety": (pol["overwhelm_s_per_session"] <= over + 0.1 + 1e-9 and pol["escapes_per_patient"] <= esc + 0.01
                     + 1e-9, f"overwhelm {pol['overwhelm_s_per_session']:.2f} vs ≤ {over + 0.1:.2f} s/session; "
                             f"escapes {pol['escapes_per_patient']:.3f} vs ≤ {esc + 0.01:.3f}"),
        "3 dropout": (pol["dropout_rate"] <= drop + 0.01 + 1e-9, f"{pol['dropout_rate']:.3f} vs ≤ {drop + 0.01:.3f}"),
        "4 approach test": (pol["bat_steps_post"] is not None and bat is not None
                            and pol["bat_steps_post"] >= bat - 0.25 - 1e-9,
                            f"{_f(pol['bat_steps_post'])} vs ≥ {_f(None if bat is None else bat - 0.25)} steps"),
        "5 questions": (asks <= 0.5 + 1e-9, f"{asks:.2f} vs ≤ 0.50 per min"),
    }
    return g


def _f(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def run_eval(scene: str, args, structure: str | None, population: str | None, shown_population: str | None = None,
             controllers: str = CONTROLLERS, policy_dir: str | None = None):
    """Run one ``exposure evaluate`` as a child process: (its JSON, the command as shown, seconds).
    ``policy_dir`` (default ``--policy-dir``) is where the judged policy comes from."""
    policy_dir = policy_dir if policy_dir is not None else args.policy_dir
    cmd = [sys.executable, "-m", "engine", "evaluate", "--controllers", controllers,
           "--patients", str(args.patients), "--scene", scene, "--seed", str(args.seed),
           *(["--structure", structure] if structure else []), "--json", "--no-progress"]
    if population:
        cmd += ["--population", population]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if policy_dir:
        env["EXPOSURE_POLICY_DIR"] = str(Path(policy_dir).resolve())
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if p.returncode != 0:
        sys.exit(f"evaluate failed for {scene} ({structure}, {population or 'default'}):\n{p.stderr.strip()}")
    shown = ["exposure", *(c for c in cmd[3:] if c not in ("--no-progress",))]
    if population and shown_population:
        shown = [shown_population if c == population else c for c in shown]
    prefix = f"EXPOSURE_POLICY_DIR={policy_dir} " if policy_dir else ""
    return json.loads(p.stdout), prefix + " ".join(shown), time.monotonic() - t0


def example_populations() -> list[str]:
    from policy.sim.patient.population import shipped_populations

    return [n for n in shipped_populations() if n != "default"]


def scene_table_rows(scene: str, args, optical: Path) -> tuple[list[tuple[str, dict]], list[str], list, list]:
    """[(row name, {controller: metrics})] and the commands that produced them; with ``--compare-dir``
    also the rows of the policy in that folder (its own ``evaluate --controllers policy`` run on the
    same patients: evaluate gives every controller the same random numbers, whichever others run) set
    against the same baselines, and its commands."""
    rows, cmds, alt_rows, alt_cmds = [], [], [], []
    parts = set(args.parts.split(","))

    def also(name_of, data, *where):
        if not args.compare_dir:
            return
        alt, cmd, secs = run_eval(scene, args, *where, controllers="policy", policy_dir=args.compare_dir)
        alt_cmds.append(f"{cmd}  ({secs:.0f} s)")
        for name, res, alt_res in name_of(data, alt):
            alt_rows.append((name, {**res, "policy": alt_res["policy"]}))

    for sensor, pop, shown in (("chest", None, None), ("optical", str(optical), "OPTICAL.toml")):
        if sensor not in parts:
            continue
        data, cmd, secs = run_eval(scene, args, "all", pop, shown)
        cmds.append(f"{cmd}  ({secs:.0f} s)")
        for st, v in data["structures"].items():
            rows.append((f"default · {st} · {sensor}", v["controllers"]))
        also(lambda d, a, sensor=sensor: [(f"default · {st} · {sensor}", v["controllers"],
                                           a["structures"][st]["controllers"]) for st, v in d["structures"].items()],
             data, "all", pop, shown)
    for name in example_populations() if "populations" in parts else []:
        data, cmd, secs = run_eval(scene, args, None, name)
        cmds.append(f"{cmd}  ({secs:.0f} s)")
        st = data["settings"]
        row = f"{name} · {st.get('structure')} · {st.get('sensor')}"
        rows.append((row, data["controllers"]))
        also(lambda d, a, row=row: [(row, d["controllers"], a["controllers"])], data, None, name)
    return rows, cmds, alt_rows, alt_cmds


def print_table(rows: list[tuple[str, dict]]) -> dict:
    print("| population · structure · sensor | " + " | ".join(GOALS) + " | all |")
    print("|---" * (len(GOALS) + 2) + "|")
    summary = {g: {"met": True, "missed": []} for g in GOALS}
    for name, res in rows:
        g = goal_row(res)
        cells = [f"{'met' if ok else '**not met**'}: {txt}" for ok, txt in (g[k] for k in GOALS)]
        allmet = all(g[k][0] for k in GOALS)
        print(f"| {name} | " + " | ".join(cells) + f" | {'met' if allmet else '**not met**'} |")
        for k in GOALS:
            if not g[k][0]:
                summary[k]["met"] = False
                summary[k]["missed"].append(name)
    return summary


def print_summary(summary: dict, n_rows: int) -> None:
    for k, v in summary.items():
        missed = len(v["missed"])
        print(f"- goal {k}: " + ("met in every row" if v["met"] else
                                 f"NOT met in {missed} rows (met in {n_rows - missed} of {n_rows})"))


def print_safety(scene: str, rows: list, alt_rows: list, compare_dir: str) -> None:
    """Goals met, and overwhelm and escapes pooled over the rows, of the judged policy and the compared one."""
    def pooled(rs):
        met = sum(ok for _, res in rs for ok, _ in goal_row(res).values())
        over = np.mean([res["policy"]["overwhelm_s_per_session"] for _, res in rs])
        esc = np.mean([res["policy"]["escapes_per_patient"] for _, res in rs])
        resp = np.mean([res["policy"]["responder_rate"] for _, res in rs])
        return met, over, esc, resp
    n = len(rows) * len(GOALS)
    for label, rs in (("judged", rows), (compare_dir, alt_rows)):
        met, over, esc, resp = pooled(rs)
        print(f"- {scene} {label}: goals met in {met} of {n} row-goals; mean over rows: overwhelm {over:.2f} "
              f"s/session, escapes {esc:.3f} per patient, responders {resp:.3f}")


def inference_cost(scene: str) -> dict:
    from policy.learned import LearnedController
    from policy.observation import empty_observation

    ctl = LearnedController(scene=scene)
    ctl.reset(1, np.linspace(0, 1, 11), np.random.default_rng(0))
    obs = empty_observation(1)
    reps = 2000
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
    return {"us_per_decision": t * 1e6, "x_reference_tanh": t / max(ref, 1e-12)}


def torch_free(scene: str, policy_dir: str | None) -> bool:
    code = ("import sys, numpy as np\nfrom policy.learned import LearnedController\n"
            "from policy.observation import empty_observation\n"
            f"c = LearnedController(scene={scene!r}); c.reset(1, np.linspace(0, 1, 11)); "
            "c.propose(empty_observation(1))\nprint('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if policy_dir:
        env["EXPOSURE_POLICY_DIR"] = str(Path(policy_dir).resolve())
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    return p.returncode == 0 and p.stdout.strip() == "False"


def write_card(scene: str, args, summary: dict, rows: list, cmds: list[str]) -> Path:
    from policy.learned import policy_dir

    path = policy_dir() / scene / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    card["goals"] = {
        "judged": time.strftime("%Y-%m-%d", time.gmtime()), "seed": args.seed, "patients": args.patients,
        "held_out": "benchmark seed, never used in training or validation; example populations never trained on",
        "commands": [c.split("  (")[0] for c in cmds],
        "results": summary if args.parts == "chest,optical,populations" else
        {**summary, "complete table": {"met": False, "missed": [f"only {args.parts} were run"]}},
        "parts": args.parts,
        "rows": {name: {k: {"met": bool(ok), "figures": txt} for k, (ok, txt) in goal_row(res).items()}
                 for name, res in rows},
    }
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md = path.with_name("card.md")
    if md.exists():
        text = md.read_text(encoding="utf-8").split("\n## Goals on held-out patients")[0].rstrip("\n")
        lines = ["", "", f"## Goals on held-out patients ({args.patients} per row, seed {args.seed})", ""]
        lines += [f"- {'met' if v['met'] else 'NOT met'}: goal {k}"
                  + (f" (missed in: {', '.join(v['missed'])})" if v["missed"] else "") for k, v in summary.items()]
        lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in card["goals"]["commands"]), ""]
        md.write_text(text + "\n".join(lines), encoding="utf-8")
    return path


def print_part(rows, cmds, heading: str):
    """One goal table, the commands that made it and its summary; returns the summary."""
    summary = print_table(rows)
    print(f"\n{heading}\n")
    for c in cmds:
        print(f"    {c}")
    print()
    print_summary(summary, len(rows))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=200, help="virtual patients per row (default 200)")
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--scenes", default="heights,crowds")
    ap.add_argument("--workers", type=int, default=0, help="processes per evaluation (default: evaluate's own)")
    ap.add_argument("--policy-dir", default=None,
                    help="judge the candidate policies in this folder (SCENE/policy.npz, card.json) instead of "
                         "the shipped ones (sets EXPOSURE_POLICY_DIR for the commands)")
    ap.add_argument("--compare-dir", default=None,
                    help="also judge the policies in this folder (e.g. policy/models, the shipped ones) on the same "
                         "patients against the same baselines (one extra 'evaluate --controllers policy' per command)")
    ap.add_argument("--write-card", action="store_true", help="write the goals into the judged policy's card.json")
    ap.add_argument("--parts", default="chest,optical,populations",
                    help="rows to run: chest, optical (every structure with that sensor), populations (default: all; "
                         "a card written from fewer parts cannot show every goal met)")
    args = ap.parse_args()
    bad = set(args.parts.split(",")) - {"chest", "optical", "populations"}
    if bad:
        sys.exit(f"--parts: unknown part(s) {', '.join(sorted(bad))}: choose from chest, optical, populations")
    if args.policy_dir:
        os.environ["EXPOSURE_POLICY_DIR"] = str(Path(args.policy_dir).resolve())
    tmp = Path(tempfile.mkdtemp())
    optical = tmp / "optical.toml"
    optical.write_text(OPTICAL)
    print(f"# The learned policy's goals: {args.patients} held-out virtual patients per row, seed {args.seed}")
    print("\nOPTICAL.toml = `sensor = \"optical\"` (the default population with an optical sensor)")
    for scene in args.scenes.split(","):
        print(f"\n## {scene}\n")
        rows, cmds, alt_rows, alt_cmds = scene_table_rows(scene, args, optical)
        summary = print_part(rows, cmds, "Commands:")
        if args.compare_dir:
            print(f"\n### {scene}: the policy in {args.compare_dir}, on the same patients and baselines\n")
            print_part(alt_rows, alt_cmds, "Commands (the baselines are those of the table above):")
            print()
            print_safety(scene, rows, alt_rows, args.compare_dir)
        c = inference_cost(scene)
        print(f"- inference N = 1: {c['us_per_decision']:.1f} µs per decision ({c['x_reference_tanh']:.1f}× one "
              f"np.tanh over the input); under 1 ms: {'yes' if c['us_per_decision'] < 1000 else 'NO'}")
        print(f"- live inference imports no torch: {'yes' if torch_free(scene, args.policy_dir) else 'NO'}")
        if args.write_card:
            print(f"- goals written to {write_card(scene, args, summary, rows, cmds)}")


if __name__ == "__main__":
    main()
