"""``exposure evaluate``: every controller on the same virtual patients (policy/evaluate.py)."""

from __future__ import annotations

import json
import os
import sys

from engine.cli.common import UserError
from scenes.names import SCENES

#: the model structures (policy/sim/patient/population.py STRUCTURES; named here so --help stays light)
STRUCTURE_HELP = "a model structure name (see the virtual-patient docs) or all"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="compare controllers on virtual patients",
        description="Run every controller over the same virtual patients (same random numbers) for a "
                    "course of sessions and report outcomes: responders, approach test, dropout, "
                    "escapes, overwhelm, time in the therapeutic window, minutes in VR.")
    p.add_argument("--controllers", default="ladder,suds,hr-band,hr-pid,oracle",
                   help="comma-separated controller names (default ladder,suds,hr-band,hr-pid,oracle)")
    p.add_argument("--patients", type=int, default=1000, help="virtual patients (default 1000)")
    p.add_argument("--sessions", type=int, default=None, help="sessions per course (default: the population's)")
    p.add_argument("--minutes", type=float, default=None, help="minutes per session (default: the population's)")
    p.add_argument("--scene", default="heights", help="heights or crowds (default heights)")
    p.add_argument("--hierarchy", default=None, help="a hierarchy TOML file of your own (default: the scene's)")
    p.add_argument("--seed", type=int, default=0, help="random seed: which patients (default 0)")
    p.add_argument("--population", default=None, help="a population TOML file (default: the shipped one)")
    p.add_argument("--structure", default=None,
                   help=f"{STRUCTURE_HELP} (default: the population's)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="local|auto|ADDRESS",
                   help="run the patients as Ray tasks: local (an in-process Ray with this machine's cores, "
                        "or --workers of them), auto (the cluster this machine joined with 'ray start') or "
                        "HOST:PORT of a cluster's head; same result as one process (needs the 'scale' extra)")
    p.add_argument("--shard", type=int, default=None,
                   help="patients per Ray task (default: the patients split evenly over the CPUs, at most 1000)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from engine.gym_env import scene_table
    from policy.controllers import ControllerError, controller_names
    from policy.sim.evaluate import EvaluationError, evaluate, format_table
    from policy.sim.patient.population import STRUCTURES, PopulationError, load_population
    from scenes.hierarchy import HierarchyError

    names = [n.strip() for n in args.controllers.split(",") if n.strip()]
    if not names:
        raise UserError("--controllers names no controller")
    known = controller_names()
    for n in names:
        if n not in known:
            raise UserError(f"--controllers: unknown controller {n!r}: choose from {', '.join(known)}")
    if args.scene not in SCENES:
        raise UserError(f"--scene {args.scene!r}: choose {' or '.join(SCENES)}")
    if args.patients < 1:
        raise UserError("--patients must be at least 1")
    if args.sessions is not None and not 1 <= args.sessions <= 100:
        raise UserError("--sessions must be from 1 to 100")
    if args.minutes is not None and not 1 <= args.minutes <= 240:
        raise UserError("--minutes must be between 1 and 240")
    if args.structure is not None and args.structure != "all" and args.structure not in STRUCTURES:
        raise UserError(f"--structure {args.structure!r}: choose one of {', '.join(STRUCTURES)} or all")
    try:
        pop = load_population(args.population)
        table = scene_table(args.scene, args.hierarchy)
        workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
        if workers < 1:
            raise UserError("--workers must be at least 1")
        ray = None
        if args.ray is not None:
            ray = _ray_options(args)
        elif args.shard is not None:
            raise UserError("--shard applies to --ray runs")
        result = evaluate(pop, table, names, args.patients, seed=args.seed, structure=args.structure,
                          sessions=args.sessions, minutes=args.minutes,
                          progress=not args.no_progress and sys.stderr.isatty() or None, workers=workers,
                          ray=args.ray, shard=args.shard, ray_options=ray)
    except (PopulationError, HierarchyError) as e:
        raise UserError(f"--population/--hierarchy: {e}") from None
    except (EvaluationError, ControllerError) as e:
        raise UserError(str(e)) from None
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
    return 0


def _ray_options(args) -> dict:
    """Check the --ray options (Ray itself is imported only when the run starts)."""
    from policy.sim.distributed import check_address, require_ray

    check_address(args.ray)
    require_ray()
    if args.shard is not None and args.shard < 1:
        raise UserError("--shard must be at least 1")
    if args.ray != "local":
        if args.workers is not None:
            raise UserError("--workers sets the cores of --ray local; a cluster uses all of its cores")
        return {}
    return {"num_cpus": args.workers}
