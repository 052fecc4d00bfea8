"""``exposure train``: train the RL policy for a scene and write it with its model card."""

from __future__ import annotations

import dataclasses
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the RL policy on virtual patients",
        description="Train the exposure policy (PPO, stable-baselines3) on virtual patients with the "
                    "safety shield in the loop. Writes model.zip, vecnormalize.pkl, policy.npz and a model "
                    "card (card.md, card.json) to --out. Judged on virtual patients only.")
    p.add_argument("--scene", default="heights", help="heights or crowds (default heights)")
    p.add_argument("--timesteps", type=int, default=None,
                   help="environment steps (decisions) to train for at most (default: as the shipped policy)")
    p.add_argument("--population", default=None, help="a population TOML file (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the package's policy/models/SCENE, i.e. the shipped policy)")
    p.add_argument("--envs", type=int, default=None, help="parallel virtual patients per rollout")
    p.add_argument("--eval-every", type=int, default=None, help="timesteps between evaluations against the baselines")
    p.add_argument("--eval-patients", type=int, default=None, help="validation patients per evaluation")
    p.add_argument("--card-patients", type=int, default=None,
                   help="validation patients per model structure for the model card (default 100)")
    p.add_argument("--patience", type=int, default=None, help="evaluations without improvement before stopping")
    p.add_argument("--cost-budget", type=float, default=None,
                   help="safety cost allowed per session (overwhelm seconds + 30 × escapes) for the Lagrange "
                        "multiplier (default 0.1)")
    p.add_argument("--cost-max", type=float, default=None,
                   help="upper bound of the Lagrange multiplier (default 0.3)")
    p.add_argument("--ask-price", type=float, default=None,
                   help="reward price of each SUDS question (default 0.003; the shield allows one a minute)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget of the training loop in minutes; the best actor so far is kept")
    p.add_argument("--widen", type=float, default=None,
                   help="domain randomisation: spread of every prior of the training population × this, 1-3 "
                        "(default 1.5)")
    p.add_argument("--seeds", type=int, default=1,
                   help="train this many seeds (--seed, --seed + 1, …) and keep the best by validation "
                        "(needs --out; every run's folder and card go to OUT/runs/)")
    p.add_argument("--grid", type=Path, default=None,
                   help="a TOML file of settings to sweep ([grid] key = [values]; optional seeds = [..]); "
                        "see the manual's scale-out page")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="local|auto|ADDRESS",
                   help="train the runs as Ray tasks: local (this machine's cores), auto (the cluster this "
                        "machine joined) or HOST:PORT of a cluster's head (needs the 'scale' extra)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from engine.cli.common import UserError
    from engine.gym_env import scene_table
    from policy.train.trainer import SCENES, TrainConfig, TrainError, defaults_for, train

    if args.scene not in SCENES:  # before the scene's table is looked up
        raise UserError(f"--scene: unknown scene {args.scene!r}: choose {' or '.join(SCENES)}")
    base = defaults_for(args.scene)
    over = {"scene": args.scene, "seed": args.seed,
            "population": args.population, "out": args.out,
            "progress": not args.no_progress}
    for opt, name in (("timesteps", "timesteps"), ("envs", "n_envs"), ("eval_every", "eval_every"),
                      ("eval_patients", "eval_patients"), ("patience", "patience"),
                      ("cost_budget", "cost_budget"), ("cost_max", "cost_upper"), ("ask_price", "ask_price"),
                      ("widen", "widen"), ("max_minutes", "max_minutes"),
                      ("card_patients", "card_patients")):
        v = getattr(args, opt)
        if v is not None:
            over[name] = v
    if args.seeds != 1 or args.grid is not None or args.ray is not None:
        return _sweep(args, TrainConfig(**{**base.__dict__, **over}))
    try:
        cfg = TrainConfig(**{**base.__dict__, **over}).validated()
        cfg = dataclasses.replace(cfg, scene_table=scene_table(cfg.scene))
        res = train(cfg)
    except TrainError as e:
        raise UserError(str(e)) from None
    val = res.card["validation"]["results"]
    pol = val.get("policy") or {}
    print(f"trained the {cfg.scene} policy in {res.seconds:.0f} s; kept the actor at {res.timesteps} steps"
          + (" (stopped early)" if res.stopped_early else ""))
    if pol:
        base = {k: m for k, m in val.items() if k not in ("policy", "oracle")}
        best = max(base, key=lambda k: base[k]["responder_rate"])
        line = (f"validation responders: policy {pol['responder_rate']:.3f}, best baseline ({best}) "
                f"{base[best]['responder_rate']:.3f}")
        if "oracle" in val:
            line += f", oracle {val['oracle']['responder_rate']:.3f}"
        print(line)
    print(f"wrote {res.out}: policy.npz, model.zip, vecnormalize.pkl, card.md, card.json")
    return 0


def _sweep(args, base) -> int:
    """``--seeds K`` / ``--grid FILE`` / ``--ray``: several runs, every card written, the best kept."""
    from engine.cli.common import UserError
    from policy.train.sweep import plan, sweep
    from policy.train.trainer import TrainError

    if args.ray is not None:
        from policy.sim.distributed import check_address, require_ray

        check_address(args.ray)
        require_ray()
    if args.out is None:
        raise UserError("a sweep (--seeds, --grid or --ray) needs --out: the folder for every run and the best")
    try:
        runs = plan(args.seeds, args.seed, args.grid)
        res = sweep(base, runs, args.out, ray=args.ray, progress=not args.no_progress)
    except TrainError as e:
        raise UserError(str(e)) from None
    for r in res.runs:
        score = "–" if r["score"] is None else f"{r['score']:.4f}"
        mark = "  <- kept" if r["name"] == res.best else ""
        print(f"{r['name']}: validation score {score}, responders {r['validation']['responder_rate']}{mark}")
    print(f"wrote {res.out}: runs/*/ (every run and its card), the best run's files, sweep.json")
    return 0
