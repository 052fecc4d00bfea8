"""``exposure replay``: re-derive a session's decisions, run a counterfactual, or re-enact it."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from engine.cli.common import UserError, sessions_dir, sessions_dir_arg, warn


def register(sub) -> None:
    p = sub.add_parser(
        "replay", help="replay a logged session: re-derive its decisions, try another controller, or re-enact it",
        description="Replay a logged session. --display none re-derives every decision from the logged "
                    "inputs as fast as possible and reports whether they match what was recorded (exit 1 "
                    "when they do not); with --controller NAME it runs another controller on the logged "
                    "signals instead (an OPEN-LOOP counterfactual). --display window|offscreen re-enacts "
                    "the session in its scene at --speed from --from.")
    p.add_argument("session", help="session id (or unique prefix, or path)")
    p.add_argument("--speed", default="1", help="re-enactment speed: 1 = as recorded, N = N× faster, max")
    p.add_argument("--from", dest="from_", default="0", metavar="T",
                   help="start at T into the session (e.g. 90s, 12m); with --display none, compare "
                        "decisions from T on")
    p.add_argument("--display", default="none", choices=("window", "offscreen", "none"),
                   help="none (default): re-derive decisions, no scene; window/offscreen: re-enact in the scene")
    p.add_argument("--controller", default=None,
                   help="run this controller on the logged signals instead (counterfactual, open-loop)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for results: replay.json, or counterfactual.csv and counterfactual.png")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    sessions_dir_arg(p)
    p.set_defaults(func=cmd_replay)


def _from_seconds(text: str) -> float:
    from engine.session.config import parse_duration

    t = str(text).strip()
    if t in ("0", "0s", ""):
        return 0.0
    try:
        return parse_duration(t)
    except ValueError as e:
        raise UserError(str(e).replace("--duration", "--from")) from None


def _out_dir(out: Path | None) -> Path | None:
    if out is None:
        return None
    from engine.store.files import make_private_dirs

    out = Path(out).expanduser()
    try:
        make_private_dirs(out)  # what a replay writes holds patient data: new folders 0700, files 0600
    except OSError as e:
        raise UserError(f"cannot create --out {out}: {e.strerror}") from None
    return out


#: tables a re-derivation reads ("file": the file failed its integrity check, no checksums)
REPLAY_TABLES = frozenset({"meta", "samples", "decisions", "commands", "events", "features", "file"})
#: exit status of replay when the log is damaged: neither MATCH (0) nor MISMATCH (1)
EXIT_DAMAGED = 3


def cmd_replay(args) -> int:
    from engine.research.replay import load_log
    from engine.session.config import parse_speed
    from engine.store.files import find_session

    path = find_session(sessions_dir(args), args.session)
    t_from = _from_seconds(args.from_)
    speed = parse_speed(args.speed)
    log = load_log(path)
    warn(log.problems)
    if args.display != "none":
        return _rendered(args, log, t_from, speed)
    if args.controller:
        return _counterfactual(args, log, t_from)
    return _rederive(args, log, t_from)


def _rederive(args, log, t_from: float) -> int:
    from engine.research.replay import ReplayError, rederive

    try:
        res = rederive(log)
    except ReplayError as e:
        if not log.damaged:
            raise
        if args.json:
            print(json.dumps({"session": log.id, "verdict": "damaged", "match": None,
                              "damaged_tables": sorted(log.damaged), "problems": log.problems, "error": str(e)},
                             indent=2))
        else:
            print(f"cannot verify: damaged ({e})")
        return EXIT_DAMAGED
    mism = [m for m in res.mismatches if m.t is None or m.t >= t_from]
    ok = not mism and (t_from > 0 or res.match)
    # a damaged log cannot confirm or refute the record: neither MATCH nor MISMATCH
    # (damage elsewhere — the scene or SUDS tables — is warned about but does not touch the decisions)
    damaged = sorted(log.damaged & REPLAY_TABLES)
    verdict = "damaged" if damaged else ("match" if ok else "mismatch")
    doc = {"session": res.session, "controller": res.controller, "verdict": verdict,
           "damaged_tables": sorted(log.damaged), "decisions_logged": res.n_logged,
           "decisions_replayed": res.n_replayed, "match": None if damaged else ok, "mismatches": len(mism),
           "max_observation_difference": res.max_obs_diff if math.isfinite(res.max_obs_diff) else "missing",
           "duration_s": res.duration_s, "elapsed_s": res.elapsed_s, "speedup": res.speedup,
           "from_s": t_from, "problems": res.problems,
           "first_mismatches": [m.line() for m in mism[:20]]}
    out = _out_dir(args.out)
    if out is not None:
        from engine.store.files import open_private

        with open_private(out / "replay.json", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_DAMAGED if damaged else (0 if ok else 1)
    print(f"replay of {res.session}: controller {res.controller}, {res.duration_s / 60:.1f} min, "
          f"{res.n_logged} decisions logged")
    if damaged:
        print(f"cannot verify: damaged ({', '.join(damaged)}; see the warning above); the replay neither "
              "confirms nor refutes the record")
        return EXIT_DAMAGED
    print(f"re-derived {res.n_replayed} decisions from the logged inputs in {res.elapsed_s:.3f} s "
          f"({res.speedup:,.0f}× real time)")
    if ok:
        scope = f" from {t_from:g} s on" if t_from else ""
        print(f"MATCH: every decision{scope} (time, who, target, reason) is the one recorded; "
              f"largest difference in what the controller saw: {res.max_obs_diff:g}"
              + (f" ({res.obs_diff_field})" if res.max_obs_diff else ""))
        return 0
    print(f"MISMATCH: {len(mism)} decision(s) differ from the record; the first:")
    for m in mism[:20]:
        print("  " + m.line())
    return 1


def _counterfactual(args, log, t_from: float) -> int:
    from engine.research.replay import OPEN_LOOP_NOTE, ReplayError, counterfactual

    try:
        res = counterfactual(log, args.controller)
    except ReplayError as e:
        raise UserError(str(e)) from None
    rows = [r for r in res.rows if r["t"] >= t_from]
    diff = [r for r in rows if r["differs"]]
    s = res.summary()
    out = _out_dir(args.out)
    if out is not None:
        _write_cf_csv(out / "counterfactual.csv", rows)
        _cf_plot(out / "counterfactual.png", log, res)
    if args.json:
        print(json.dumps({"open_loop": True, "note": OPEN_LOOP_NOTE, "session": res.session,
                          "logged_controller": res.logged_controller, "controller": res.controller,
                          "summary": s, "differing": diff}, indent=2, default=str))
        return 0
    print(OPEN_LOOP_NOTE)
    print()
    print(f"session {res.session}: logged controller {res.logged_controller}; counterfactual {res.controller}")
    agree = f" ({100 * (len(rows) - len(diff)) / len(rows):.0f}% agree)" if rows else ""
    print(f"{len(rows)} decisions of {res.controller}; {len(diff)} differ from what "
          f"{res.logged_controller} did{agree}")
    if diff:
        print()
        left = res.logged_controller + " (logged)"
        hdr = f"{'time':>6}  {'HR':>4} {'ΔHR':>5} {'SUDS':>4} | {left:<44} | {res.controller} (open-loop)"
        print(hdr)
        print("-" * len(hdr))
        for r in diff[:40]:
            print(f"{_mmss(r['t']):>6}  {_f(r['hr'], '{:.0f}'):>4} {_f(r['hr_delta'], '{:+.0f}'):>5} "
                  f"{_f(r['suds'], '{:.0f}'):>4} | {_act(r, 'logged'):<44.44} | {_act(r, 'alt')}")
        if len(diff) > 40:
            print(f"… {len(diff) - 40} more" + (" in counterfactual.csv" if out else " (use --out for all)"))
    print()
    print(f"highest level: logged L{s['logged_top_level']} vs {res.controller} L{s['alt_top_level']}; "
          f"mean intensity {_f(s['logged_mean_intensity'], '{:.2f}')} vs {_f(s['alt_mean_intensity'], '{:.2f}')}; "
          f"shield interventions {s['logged_shield']} vs {s['alt_shield']}")
    if out is not None:
        print(f"wrote {out / 'counterfactual.csv'} and {out / 'counterfactual.png'}")
    return 0


def _mmss(t: float) -> str:
    return f"{int(t // 60):02d}:{int(t % 60):02d}"


def _f(x, fmt: str) -> str:
    return "–" if x is None else fmt.format(x)


def _act(r: dict, side: str) -> str:
    a = r[f"{side}_action"]
    if a is None:
        return "(no decision yet)"
    who = r[f"{side}_who"]
    by = " by shield" if who == "shield" else ""
    return f"{a}{by} → L{r[f'{side}_level']}: {r[f'{side}_reason']}"


def _write_cf_csv(path: Path, rows: list[dict]) -> None:
    from engine.store.files import open_private

    cols = ["t", "hr", "hr_delta", "suds", "logged_t", "logged_who", "logged_action", "logged_level",
            "logged_target", "logged_reason", "alt_who", "alt_action", "alt_level", "alt_target",
            "alt_reason", "differs"]
    with open_private(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in cols])


def _cf_plot(path: Path, log, res) -> None:
    from matplotlib.figure import Figure

    from engine.store.files import open_private

    fig = Figure(figsize=(11, 6.5))
    ax_hr, ax_x = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 3]})
    f = log.features
    ax_hr.plot([x["t"] / 60 for x in f], [x["hr"] if x["hr"] is not None and not x["lost"] else math.nan for x in f],
               color="#d81b60", lw=1.2, label="logged heart rate")
    ax_hr.set_ylabel("HR (bpm)")
    ax_hr.legend(loc="upper left", fontsize=8)
    ax_hr.grid(alpha=0.3)
    lt = res.logged_traj
    ax_x.plot([t / 60 for t, _, _ in lt], [x for _, x, _ in lt], color="#6a1b9a", lw=1.8,
              label=f"{res.logged_controller}: intensity shown (logged)")
    at = res.alt_traj
    ax_x.plot([t / 60 for t, *_ in at], [x for _, x, _, _ in at], color="#ef6c00", lw=1.6, ls="--",
              label=f"{res.controller}: intensity it would have set (open-loop)")
    d = res.differing
    if d:
        ax_x.plot([r["t"] / 60 for r in d], [r["alt_target"] for r in d], "x", color="#ef6c00", ms=5,
                  label="decisions that differ")
    levels = (log.meta.get("hierarchy") or {}).get("levels") or []
    if levels:
        ax_x.set_yticks([float(x) for _, x in levels])
        ax_x.set_yticklabels([f"L{i}" for i in range(len(levels))], fontsize=7)
    ax_x.set_ylim(-0.03, 1.03)
    ax_x.set_xlabel("minutes from the start of the session")
    ax_x.set_ylabel("intensity / level")
    ax_x.grid(alpha=0.3)
    ax_x.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"OPEN-LOOP counterfactual: {res.controller} on the signals logged under "
                 f"{res.logged_controller} — the patient's response to a different intensity is unknown",
                 fontsize=10)
    fig.tight_layout()
    with open_private(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)


def _rendered(args, log, t_from: float, speed: str) -> int:
    """Re-enact in the scene with the Panda3D runner's ``Runner`` (engine/panda_runner.py),
    which drives any Session-shaped object once a frame; here a :class:`ReplaySession`."""
    from engine.render.panda_runner import Runner, frame_dt, resolve_display
    from engine.research.replay import ReplaySession
    from engine.session.clock import SimClock

    mode = resolve_display(args.display)
    clock = SimClock() if frame_dt(speed) is not None else None
    rs = ReplaySession(log, display=mode, speed=speed, t_from=t_from, clock=clock)
    print(f"re-enacting {log.id} in the {rs.cfg.scene} scene from {_mmss(t_from)} at speed {speed} "
          f"({mode}); nothing is recorded", flush=True)
    runner = None
    try:
        runner = Runner(rs, mode)
        _overlay(runner, rs)
        reason = runner.run()
    finally:
        if runner is not None:
            runner.close()
    print(f"replay ended at {_mmss(rs.session_time)}: {reason}; {runner.frames} frames shown")
    return 0


def _overlay(runner, rs) -> None:
    """A line over the scene saying what was happening then: time, HR, level, mode, last change."""
    from panda3d.core import TextNode

    tn = TextNode("replay-overlay")
    tn.setAlign(TextNode.ALeft)
    tn.setTextColor(1, 1, 0.85, 1)
    tn.setShadow(0.04, 0.04)
    tn.setShadowColor(0, 0, 0, 0.7)
    node = runner.host.aspect2d.attachNewNode(tn)
    node.setScale(0.045)
    node.setPos(-runner.host.aspect + 0.05, 0, 0.9)

    def update(task):
        s = rs.core.snapshot()
        hr = "–" if s["bpm"] is None else f"{s['bpm']:.0f}"
        base = "" if s["baseline"] is None else f" (baseline {s['baseline']:.0f})"
        last = s["last_decision"]
        why = "" if last is None else f"\nlast change {_mmss(last['t'])}: {last['who']} — {last['reason']}"
        suds = s["suds"][-1] if s["suds"] else None
        sd = "" if suds is None else f"   last SUDS {suds['value']:.0f} at {_mmss(suds['t'])}"
        tn.setText(f"REPLAY {rs.id}   {_mmss(s['t'])}   HR {hr}{base}   level {s['level']} "
                   f"{s['level_name']}   {s['mode']}{sd}{why}")
        return task.cont

    runner.tm.add(update, "replay-overlay", sort=5)
