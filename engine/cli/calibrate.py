"""``exposure calibrate``: the virtual patient against the published anchors (policy/sim/calibrate.py)."""

from __future__ import annotations

import json
import os

from scenes.names import SCENES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="check the virtual patients against published outcomes of exposure therapy",
        description="Run every calibration anchor's protocol (a graded course like the Freeman 2018 trial, "
                    "no treatment, the SUDS protocol, one-session treatment, …) on the virtual patients and "
                    "print each anchor beside the model's value, within tolerance or not. Exit status 1 if "
                    "any anchor is out. See docs/calibration.md.")
    p.add_argument("--scene", default="heights", help="heights, crowds or all (default heights)")
    p.add_argument("--patients", type=int, default=1000, help="virtual patients per protocol (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed: which patients (default 0)")
    p.add_argument("--population", default=None, help="a population TOML file (default: the shipped one)")
    p.add_argument("--anchors", default=None,
                   help="comma-separated anchor keys to check (default: all; the table names them)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from engine.cli.common import UserError
    from engine.gym_env import scene_table
    from policy.sim.calibrate import CalibrationError, calibrate, format_table, select
    from policy.sim.patient.population import PopulationError, load_population
    from scenes.hierarchy import HierarchyError

    scenes = list(SCENES) if args.scene == "all" else [args.scene]
    if any(s not in SCENES for s in scenes):
        raise UserError(f"--scene {args.scene!r}: choose {', '.join(SCENES)} or all")
    if args.patients < 1:
        raise UserError("--patients must be at least 1")
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    if workers < 1:
        raise UserError("--workers must be at least 1")
    results = []
    try:
        anchors = select(args.anchors)
        pop = load_population(args.population)
        for s in scenes:
            results.append(calibrate(pop, scene_table(s), args.patients, seed=args.seed, workers=workers,
                                     anchors=anchors))
    except (PopulationError, HierarchyError) as e:
        raise UserError(f"--population: {e}") from None
    except CalibrationError as e:
        raise UserError(str(e)) from None
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"scenes": results}, indent=1))
    else:
        print("\n\n".join(format_table(r) for r in results))
    return 0 if all(r["passed"] for r in results) else 1
