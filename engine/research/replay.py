"""Replay a logged session: re-derive every decision from the logged inputs, or run another
controller on them (counterfactual, open-loop).

The session core was built for this (engine/core.py): every controller decision is logged —
holds too — with the observation it saw and how many samples had been ingested
(``samples_seen``); features advance only on samples and at decisions; the ramp of intensity
is a function of the last change of target alone; commands are logged with the tick time they
were applied. So a fresh :class:`~engine.session.core.SessionCore` (same hierarchy, controller, shield,
configs, seed and start time, all in the log's meta) that is fed the same samples and commands
and ticked at the logged decision and command times — and only there — must make the same
decisions. :func:`rederive` does that and reports every difference.

A counterfactual replay (:func:`counterfactual`) runs another controller on the same logged
signals. It is **open-loop**: the logged heart rate and SUDS are what the patient did under the
intensity actually shown; how they would have responded to a different intensity is unknown.
"""

from __future__ import annotations

import json
import logging
import math
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from engine.session.commands import CommandError, parse_command
from engine.session.core import CoreConfig, SessionCore
from engine.store.course import course_context_from_meta
from engine.store.files import SessionReader, StoreError
from policy.controllers import ControllerError, make_controller
from policy.shield import SafetyShield, ShieldConfig
from scenes.hierarchy import Hierarchy, HierarchyError, Level, load_hierarchy
from sensors.features import FeatureConfig
from sensors.sample import Sample

OPEN_LOOP_NOTE = ("OPEN-LOOP counterfactual: the other controller is run on the heart rate and SUDS "
                  "logged under the intensity actually shown. How the patient would have responded "
                  "to a different intensity is unknown; read this as 'what it would have proposed "
                  "next', not as an outcome.")

#: who a decision row is attributed to when the controller (or the shield after it) made it
CONTROLLER_WHO = ("baseline", "policy", "shield")


class ReplayError(StoreError):
    """A session that cannot be replayed; the message says why."""


# ------------------------------------------------------------------------------------ the log
def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


@dataclass
class SessionLog:
    """What replay needs from a session file, read once and checked."""

    path: Path
    meta: dict
    samples: list[Sample]
    decisions: list[dict]
    commands: list[dict]
    suds: list[dict]
    events: list[dict]
    scene: list[dict]
    features: list[dict]
    duration_s: float
    problems: list[str] = field(default_factory=list)
    #: tables found damaged (checksum, integrity check, unreadable rows); "file" when the file
    #: failed SQLite's integrity check and has no checksums to say which tables are whole
    damaged: frozenset = frozenset()

    @property
    def id(self) -> str:
        return str(self.meta.get("session_id", self.path.stem))

    @property
    def t0(self) -> float:
        return _num(self.meta.get("t0")) or 0.0


def _json(v, default):
    if v is None:
        return default
    try:
        return json.loads(v) if isinstance(v, str) else v
    except ValueError:
        return default


def load_log(path: Path) -> SessionLog:
    """Read a session file for replay; rows that are damaged are skipped and counted."""
    with SessionReader(path) as r:
        meta = r.meta
        raw = {k: r.records(k) for k in ("samples", "decisions", "commands", "suds", "events",
                                          "scene", "features")}
        duration = r.info().duration_s  # verifies the file (integrity check, checksums)
        damaged = set(r.damaged_tables) | ({"file"} if r.unsure() else set())
        problems = list(r.problems)
    bad: dict[str, int] = {}

    def skip(kind):
        bad[kind] = bad.get(kind, 0) + 1

    samples = []
    for s in raw["samples"]:
        t = _num(s["t"])
        if t is None or not math.isfinite(t):
            skip("samples")
            continue
        bpm = _num(s["bpm"])
        rr = _json(s["rr_ms"], [])
        if not isinstance(rr, list) or not all(_num(x) is not None for x in rr):
            rr = []
            skip("samples")
        c = s["contact"]
        samples.append(Sample(t, _num(s["wall"]) or 0.0, math.nan if bpm is None else bpm,
                              tuple(float(x) for x in rr), None if c is None else bool(c),
                              str(s["source"] or "")))
    decisions = []
    for d in raw["decisions"]:
        if any(_num(d[k]) is None for k in ("t", "target_before", "target_after")):
            skip("decisions")
            continue
        d = dict(d)
        d["obs"] = _json(d["obs"], None)
        d["info"] = _json(d["info"], None)
        decisions.append(d)
    commands = []
    for c in raw["commands"]:
        if _num(c["t"]) is None or not isinstance(c["type"], str):
            skip("commands")
            continue
        c = dict(c)
        c["payload"] = _json(c["payload"], {"type": c["type"]})
        commands.append(c)
    events = []
    for e in raw["events"]:
        if _num(e["t"]) is None:
            skip("events")
            continue
        e = dict(e)
        e["detail"] = _json(e["detail"], {})
        events.append(e)
    for kind, n in bad.items():
        if kind not in damaged:  # the reader has not said so already: one line per damaged table
            problems.append(f"{n} damaged {kind} row(s) skipped")
        damaged.add(kind)
    return SessionLog(Path(path), meta, samples, decisions, commands,
                      [x for x in raw["suds"] if _num(x["t"]) is not None and _num(x["value"]) is not None],
                      events, [x for x in raw["scene"] if _num(x["t"]) is not None],
                      [x for x in raw["features"] if _num(x["t"]) is not None], float(duration), problems,
                      frozenset(damaged))


def hierarchy_of(log: SessionLog, with_params: bool = False) -> Hierarchy:
    """The hierarchy the session ran on, from its log (levels and intensities as logged).

    ``with_params`` also loads the scene parameters from the hierarchy file when it still
    matches the logged levels (a rendered replay needs them); otherwise they are empty.
    """
    m = log.meta
    h = m.get("hierarchy") if isinstance(m.get("hierarchy"), dict) else {}
    scene = m.get("scene")
    levels = h.get("levels")
    if not isinstance(scene, str) or not isinstance(levels, list) or len(levels) < 2:
        raise ReplayError(f"{log.path}: the log does not say which scene and hierarchy it ran "
                          "(meta 'scene'/'hierarchy' missing or damaged); it cannot be replayed")
    try:
        lv = tuple(Level(str(n), float(x), {}) for n, x in levels)
    except (TypeError, ValueError):
        raise ReplayError(f"{log.path}: the logged hierarchy levels are damaged") from None
    if with_params:
        for ref in (h.get("file"), scene):
            try:
                real = load_hierarchy(ref) if ref else None
            except HierarchyError:
                continue
            if real is not None and [(x.name, x.intensity) for x in real.levels] == [(x.name, x.intensity) for x in lv]:
                return real
    return Hierarchy(scene, str(h.get("name", scene)), lv, str(h.get("file", "")))


def _known(cls, d) -> dict:
    if not isinstance(d, dict):
        return {}
    names = set(cls.__dataclass_fields__)
    return {k: v for k, v in d.items() if k in names}


class ReplayCore(SessionCore):
    """A session core driven by the log only: commands from anyone else (a key pressed in a
    re-enactment's window) are ignored and counted, so the replay cannot drift from the record."""

    feeding = False
    ignored_commands = 0

    def push_command(self, cmd, origin: str = "therapist"):
        if not self.feeding:
            self.ignored_commands += 1
            return None
        return super().push_command(cmd, origin)


def build_core(log: SessionLog, controller: str | None = None, writer=None) -> SessionCore:
    """A fresh core set up as the logged session's was (or with another controller)."""
    from engine.session.live import _takes_scene

    m = log.meta
    name = controller or m.get("controller")
    if not isinstance(name, str):
        raise ReplayError(f"{log.path}: the log does not name its controller; give --controller")
    hierarchy = hierarchy_of(log)
    try:
        ctl = make_controller(name, scene=hierarchy.scene) if _takes_scene(name) else make_controller(name)
    except ControllerError as e:
        raise ReplayError(f"controller {name!r} cannot be rebuilt here: {e}") from None
    sh = m.get("shield") if isinstance(m.get("shield"), dict) else {}
    shield_cfg = _known(ShieldConfig, sh.get("config"))
    if isinstance(sh.get("config"), dict):
        # a session logged before the shield had a question budget asked as its controller wanted
        shield_cfg.setdefault("min_ask_interval_s", 0.0)
    seed = m.get("seed") if isinstance(m.get("seed"), int) else 0
    core = ReplayCore(hierarchy, ctl, SafetyShield(ShieldConfig(**shield_cfg)), writer,
                      CoreConfig(**_known(CoreConfig, m.get("core_config"))),
                      FeatureConfig(**_known(FeatureConfig, m.get("feature_config"))),
                      seed=seed, t0=log.t0)
    ctx = course_context_from_meta(m, len(hierarchy.levels))  # the course as the session saw it
    if ctx is not None:
        core.course_ctx = ctx
    return core


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


_QUIET = _Quiet()


class DecisionTap:
    """A scratch writer for a replayed core: keeps the decisions (and shield events) in memory."""

    closed = False

    def __init__(self):
        self.decisions: list[dict] = []
        self.shield_events: list[tuple] = []

    def write(self, kind: str, row: tuple) -> None:
        if kind == "events" and row[1] == "shield":
            self.shield_events.append(row)

    def write_dict(self, kind: str, row: dict) -> None:
        if kind == "decisions":
            self.decisions.append(row)

    def set_meta(self, **kv) -> None:
        pass



# ------------------------------------------------------------------------------------ driving
class Replayer:
    """Drives a fresh core through a logged session's inputs, at the logged times.

    Exact mode ticks the core only at the times the live core decided or applied a command,
    ingesting before each decision exactly the samples the live core had seen. With a grid
    (counterfactual), it also ticks every ``grid_s`` seconds so that a controller with another
    cadence decides at its own times.
    """

    def __init__(self, log: SessionLog, controller: str | None = None, grid_s: float | None = None,
                 tap: DecisionTap | None = None):
        self.log = log
        self.tap = tap if tap is not None else DecisionTap()
        self.core = build_core(log, controller, self.tap)
        self.n_levels = len(self.core.levels)
        self.samples = log.samples
        self._sample_t = [s.t for s in self.samples]
        self.ingested = 0
        self.rejected_commands = 0
        self.trajectory: list[tuple[float, float, float, int]] = []  # (t, intensity, target, level)
        # decision t → samples seen and look-away the live core had then
        self._dec: dict[float, tuple[int, float | None]] = {}
        for d in log.decisions:
            if d["who"] == "course":
                # where the course started the session: a given, not a decision to re-derive (the
                # rebuilt core starts there too, from the logged core config); kept in its place
                self.tap.decisions.append(dict(d))
                continue
            n = d.get("samples_seen")
            obs = d.get("obs") if isinstance(d.get("obs"), dict) else {}
            la = _num(obs.get("look_away")) if obs else None
            if isinstance(n, int):
                prev = self._dec.get(d["t"], (0, None))
                self._dec[d["t"]] = (max(prev[0], n), la if la is not None else prev[1])
            elif d["t"] not in self._dec:
                self._dec[d["t"]] = (-1, la)
        self._dec_times = sorted(self._dec)
        self._cmds: dict[float, list[dict]] = {}
        for c in log.commands:
            self._cmds.setdefault(c["t"], []).append(c)
        times = set(self._dec) | set(self._cmds)
        if grid_s:
            t0, end = log.t0, log.duration_s
            k = 1
            while t0 + k * grid_s <= end:
                times.add(t0 + k * grid_s)
                k += 1
        self.times = sorted(t for t in times if math.isfinite(t))
        self._i = 0
        self.missing_samples_seen = sum(1 for v in self._dec.values() if v[0] < 0)

    def _samples_upto(self, t: float) -> int:
        """How many samples to have ingested before ticking at ``t``."""
        n_time = bisect_right(self._sample_t, t)
        seen = self._dec.get(t)
        if seen is not None and seen[0] >= 0:
            return min(seen[0], len(self.samples))
        j = bisect_right(self._dec_times, t)
        if j < len(self._dec_times):  # never more than the next decision saw
            nxt = self._dec[self._dec_times[j]][0]
            if nxt >= 0:
                n_time = min(n_time, nxt)
        return n_time

    def step_to(self, t: float) -> None:
        core = self.core
        n = max(self.ingested, self._samples_upto(t))
        for s in self.samples[self.ingested:n]:
            core.push_sample(s)
        self.ingested = n
        for c in self._cmds.get(t, ()):
            payload = c["payload"] if isinstance(c["payload"], dict) else {"type": c["type"]}
            origin = c.get("origin") if c.get("origin") in ("therapist", "patient", "system", "test") else "system"
            core.feeding = True
            try:
                core.push_command(parse_command(payload, origin, n_levels=self.n_levels))
            except CommandError:
                self.rejected_commands += 1
            finally:
                core.feeding = False
        dec = self._dec.get(t)
        if dec is not None:
            core.push_behaviour({} if dec[1] is None else {"look_away": dec[1]})
        if self._cmds.get(t):
            # the core warns about refused commands; they were reported when the session ran
            lg = logging.getLogger("engine.session.core")
            lg.addFilter(_QUIET)
            try:
                core.tick(t)
            finally:
                lg.removeFilter(_QUIET)
        else:
            core.tick(t)
        self.trajectory.append((t, core.intensity, core.target, core.level))

    def advance_to(self, t: float) -> None:
        """Process every logged time up to ``t``, then bring the ramp to ``t`` (for display)."""
        while self._i < len(self.times) and self.times[self._i] <= t:
            self.step_to(self.times[self._i])
            self._i += 1
        if not self.core.arbiter.stopped:
            self.core.advance(t)
            self.core._update_snapshot()

    @property
    def done(self) -> bool:
        return self._i >= len(self.times)

    def run(self) -> None:
        for t in self.times[self._i:]:
            self.step_to(t)
        self._i = len(self.times)


# ------------------------------------------------------------------------------------ rederive
@dataclass
class Mismatch:
    index: int
    t: float | None
    logged: dict | None
    replayed: dict | None

    def line(self) -> str:
        def fmt(d):
            if d is None:
                return "(none)"
            return f"{d['who']} → {d['target_after']:.4f} ({d['reason']})"
        t = "?" if self.t is None else f"{self.t:8.2f}s"
        return f"#{self.index} at {t}: logged {fmt(self.logged)}; replayed {fmt(self.replayed)}"


@dataclass
class RederiveResult:
    session: str
    controller: str
    n_logged: int
    n_replayed: int
    mismatches: list[Mismatch]
    max_obs_diff: float  # largest |difference| over every number in every observation seen
    obs_diff_field: str
    duration_s: float
    elapsed_s: float
    problems: list[str]

    @property
    def match(self) -> bool:
        return not self.mismatches and self.n_logged == self.n_replayed

    @property
    def speedup(self) -> float:
        return self.duration_s / self.elapsed_s if self.elapsed_s > 0 else math.inf


def _same(a: dict, b: dict) -> bool:
    return a["who"] == b["who"] and a["reason"] == b["reason"] and a["target_after"] == b["target_after"]


def rederive(log: SessionLog) -> RederiveResult:
    """Re-derive every decision of a logged session and compare it with what was recorded."""
    if not log.decisions and not log.samples:
        raise ReplayError(f"{log.path}: nothing to replay (no decisions and no samples intact)")
    started = time.perf_counter()
    rp = Replayer(log)
    rp.run()
    elapsed = time.perf_counter() - started
    got = rp.tap.decisions
    want = log.decisions
    mism: list[Mismatch] = []
    worst, worst_field = 0.0, ""
    for i in range(max(len(got), len(want))):
        a = want[i] if i < len(want) else None
        b = got[i] if i < len(got) else None
        if a is None or b is None or not _same(a, b) or a["t"] != b["t"]:
            mism.append(Mismatch(i, (a or b)["t"], a, b))
            continue
        oa, ob = a.get("obs"), b.get("obs")
        if isinstance(oa, dict) and isinstance(ob, dict):
            for k, va in oa.items():
                vb = ob.get(k)
                if va is None or vb is None:
                    if (va is None) != (vb is None):
                        worst, worst_field = (math.inf, k) if worst < math.inf else (worst, worst_field)
                    continue
                try:
                    diff = abs(float(va) - float(vb))
                except (TypeError, ValueError):
                    continue
                if diff > worst:
                    worst, worst_field = diff, k
    problems = list(log.problems)
    if rp.missing_samples_seen:
        problems.append(f"{rp.missing_samples_seen} decision(s) without samples_seen (an older log): "
                        "samples were fed by time, which may differ from what the live core had seen")
    if "t0" not in log.meta:
        problems.append("the log does not record the core's start time (older log): assumed 0")
    return RederiveResult(log.id, rp.core.controller.name, len(want), len(got), mism, worst,
                          worst_field, log.duration_s, elapsed, problems)


# ------------------------------------------------------------------------------------ counterfactual
def _action(d: dict) -> str:
    a, b = d["target_before"], d["target_after"]
    return "raise" if b > a + 1e-12 else ("lower" if b < a - 1e-12 else "hold")


@dataclass
class CounterfactualResult:
    session: str
    logged_controller: str
    controller: str
    rows: list[dict]  # one per decision of the other controller, paired with the logged one
    logged_traj: list[tuple[float, float, int]]  # (t, intensity, level) from the log's scene rows
    alt_traj: list[tuple[float, float, float, int]]  # (t, intensity, target, level)
    alt_shield: int
    logged_shield: int
    problems: list[str]

    @property
    def differing(self) -> list[dict]:
        return [r for r in self.rows if r["differs"]]

    def summary(self) -> dict:
        n = len(self.rows)
        diff = len(self.differing)

        def mean_intensity(traj):
            if len(traj) < 2:
                return None
            area = sum((traj[i + 1][0] - traj[i][0]) * traj[i][1] for i in range(len(traj) - 1))
            span = traj[-1][0] - traj[0][0]
            return area / span if span > 0 else None

        return {
            "decisions": n, "differing": diff, "agreement": (n - diff) / n if n else None,
            "logged_top_level": max((x[2] for x in self.logged_traj), default=None),
            "alt_top_level": max((x[3] for x in self.alt_traj), default=None),
            "logged_mean_intensity": mean_intensity(self.logged_traj),
            "alt_mean_intensity": mean_intensity([(t, x) for t, x, _, _ in self.alt_traj]),
            "logged_shield": self.logged_shield, "alt_shield": self.alt_shield,
        }


def counterfactual(log: SessionLog, controller: str, grid_s: float = 0.25) -> CounterfactualResult:
    """Run ``controller`` on the logged signals (open-loop) and pair its decisions with the logged ones."""
    rp = Replayer(log, controller=controller, grid_s=grid_s)
    rp.run()
    logged_name = str(log.meta.get("controller"))
    mine = [d for d in log.decisions if d["who"] in CONTROLLER_WHO and d.get("name") == logged_name]
    mine_t = [d["t"] for d in mine]
    alt_name = rp.core.controller.name
    # A live core decides at the first tick after its interval, the replay on its grid: pair each
    # decision with the logged one nearest before it, allowing half a decision interval late.
    ci = log.meta.get("controller_info") if isinstance(log.meta.get("controller_info"), dict) else {}
    logged_interval = _num(ci.get("decision_interval")) or rp.core.controller.decision_interval
    tol = 0.5 * min(rp.core.controller.decision_interval, logged_interval)
    rows = []
    for d in rp.tap.decisions:
        if not (d["who"] in CONTROLLER_WHO and d["name"] == alt_name):
            continue  # therapist commands replayed as logged: the same on both sides
        j = bisect_right(mine_t, d["t"] + tol) - 1
        ref = mine[j] if j >= 0 else None
        obs = d.get("obs") or {}
        a_alt = _action(d)
        a_log = _action(ref) if ref is not None else None
        # a decision differs when its action does (raise / hold / lower); the levels drift apart
        # as a consequence, which the summary and the plot show
        differs = ref is None or a_alt != a_log
        rows.append({
            "t": d["t"], "hr": obs.get("hr"), "hr_delta": obs.get("hr_delta"), "suds": obs.get("suds"),
            "logged_t": None if ref is None else ref["t"],
            "logged_action": a_log, "logged_level": None if ref is None else ref["level_after"],
            "logged_target": None if ref is None else ref["target_after"],
            "logged_who": None if ref is None else ref["who"],
            "logged_reason": None if ref is None else ref["reason"],
            "alt_action": a_alt, "alt_level": d["level_after"], "alt_target": d["target_after"],
            "alt_who": d["who"], "alt_reason": d["reason"], "differs": differs,
        })
    logged_traj = [(s["t"], float(s["intensity"]), int(s["level"])) for s in log.scene
                   if _num(s.get("intensity")) is not None and isinstance(s.get("level"), int)]
    logged_shield = sum(1 for e in log.events if e["kind"] == "shield")
    label = controller if controller != logged_name else alt_name
    return CounterfactualResult(log.id, logged_name, label, rows, logged_traj, rp.trajectory,
                                len(rp.tap.shield_events), logged_shield, list(log.problems))


# ------------------------------------------------------------------------------------ re-enactment
class ReplaySession:
    """A logged session re-enacted, shaped like :class:`engine.session.Session` for a scene runner.

    The runner calls :meth:`step` once a frame with its clock's time; the replayed core is brought
    to ``t_from + now`` through the logged inputs (never ticked between logged times, so what it
    shows is exactly what the live session showed), and ``core.intensity``, ``core.snapshot()``
    and ``core.arbiter`` read as they did live. Nothing is written: a replay records no session.
    """

    def __init__(self, log: SessionLog, display: str = "offscreen", speed: str = "1", t_from: float = 0.0,
                 clock=None):
        import threading

        from engine.session.clock import make_clock
        from engine.session.live import SessionConfig

        self.log = log
        self.hierarchy = hierarchy_of(log, with_params=True)
        self.replayer = Replayer(log)
        self.core = self.replayer.core
        self.t_from = max(0.0, float(t_from))
        remaining = max(log.duration_s - self.t_from, 1e-3)
        self.cfg = SessionConfig(scene=self.hierarchy.scene, sensor=f"replay://{log.path}",
                                 controller=self.core.controller.name, display=display,
                                 duration_s=remaining, speed=speed, console=None,
                                 sessions_dir=log.path.parent,
                                 seed=log.meta.get("seed") if isinstance(log.meta.get("seed"), int) else 0)
        self.clock = clock or make_clock(speed)
        self.id, self.path = log.id, log.path
        self.source = None
        self.console = None
        self.io = None
        self.extras: list = []
        self.mirror_png: bytes | None = None
        self.stop_event = threading.Event()
        self.replayer.advance_to(self.t_from)  # seek: as fast as possible up to --from

    def start_io(self) -> None:
        pass

    def step(self, now: float) -> None:
        self.replayer.advance_to(self.t_from + now)

    @property
    def session_time(self) -> float:
        return self.core.t

    @property
    def over(self) -> bool:
        return self.stop_event.is_set() or self.core.t >= self.log.duration_s or self.core.arbiter.stopped

    def run_headless(self) -> str:
        """Re-enact without a scene (used by tests and by --display none at a speed)."""
        t = self.clock.now()
        while not self.over:
            self.step(t)
            nxt = t + 0.25
            self.clock.sleep_until(nxt, self.stop_event)
            t = max(nxt, self.clock.now())
        return "replay finished"

    def close(self, reason: str) -> None:
        for x in self.extras:
            x.stop()
