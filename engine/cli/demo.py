"""``exposure demo``: a short simulated session, summarised."""

from __future__ import annotations

import json

from engine.cli.common import sessions_dir, sessions_dir_arg


def register(sub) -> None:
    p = sub.add_parser("demo", help="a short simulated session, no hardware and no display needed",
                       description="Run a short simulated session on the virtual patient, as fast as "
                                   "possible, and print what happened.")
    p.add_argument("--scene", default="heights", help="heights or crowds")
    p.add_argument("--duration", default="20m", help="simulated length (default 20m)")
    p.add_argument("--controller", default="", help="controller (default: as for run)")
    p.add_argument("--seed", type=int, default=7)
    sessions_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from engine.session.config import SessionConfig, parse_duration
    from engine.session.live import Session
    from engine.store.summary import summarize

    cfg = SessionConfig(scene=args.scene, sensor=f"sim://?seed={args.seed}",
                        controller=args.controller, display="none",
                        duration_s=parse_duration(args.duration), speed="max", patient="demo",
                        sessions_dir=sessions_dir(args), console=None, seed=args.seed).validated()
    session = Session(cfg)
    session.run_headless()
    s = summarize(session.path)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"Simulated {s['duration_s'] / 60:.0f} min of {s['scene']} exposure for a virtual patient "
          f"(controller: {s['controller']}).")
    b = f"{s['baseline_hr']:.0f}" if s["baseline_hr"] else "?"
    pk = f"{s['peak_hr']:.0f}" if s["peak_hr"] else "?"
    print(f"  heart rate: baseline {b} bpm, peak {pk} bpm over {s['samples']} samples")
    print(f"  highest level reached: {s['top_level']} ({s['top_level_name']}); "
          f"ended at level {s['final_level']}")
    print(f"  SUDS answers: {_suds_line([v for _, v in s['suds']])}")
    print("  who changed the intensity, and why:")
    for c in s["changes"]:
        print(f"    {c['count']:4d} × {c['who']}: {c['reason']}")
    why = ", ".join(f"{n} × {r}" for r, n in s["shield_reasons"].items())
    print(f"  safety shield interventions: {s['shield_interventions']}" + (f" ({why})" if why else ""))
    print(f"  ended: {s['ended']}")
    if s["no_signal"]:
        print(f"  {s['no_signal']}")
    print(f"log: {s['path']}")
    print(f"export it: exposure export {s['id']} --format csv --out ./export "
          f"--sessions-dir {cfg.sessions_dir}")
    return 0


def _suds_line(values: list[float]) -> str:
    """A few SUDS numbers as they are; many as first, peak, last and how many."""
    if not values:
        return "none asked"
    if len(values) <= 8:
        return ", ".join(f"{v:.0f}" for v in values)
    return (f"{len(values)} — first {values[0]:.0f}, peak {max(values):.0f}, last {values[-1]:.0f} "
            "(0-100; every one in 'exposure report')")
