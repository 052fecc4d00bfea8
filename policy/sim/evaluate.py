"""The evaluation harness: every controller meets the same virtual patients, with the same
random numbers, over a course of sessions; outcomes a clinician would accept.

All controllers run side by side in one vectorised batch (lanes = controllers × patients) on
the session rules of :mod:`policy.step` — the code a live session runs, with N = 1 — and the
model of :mod:`policy.sim.patient.model`. Metrics (per controller; see the manual, docs/patients.md):

  responder_rate           share of patients who completed the course and whose fear at the top
                           step of the post-course approach test is at most half of that before
  bat_steps_post           hierarchy steps passed below a fear of 60 in the post-course approach
                           test (after a delay and a change of context; dropouts tested as they left)
  top_suds_post            fear at the top step in that test (0..100)
  dropout_rate             share of patients who left the course early
  escapes_per_patient      escapes (leaving VR mid-session) over the course
  overwhelm_s_per_session  seconds of overwhelm (fear above the patient's threshold or HR above
                           85% of the true max HR) per session attended
  window_fraction          share of time in VR with fear in the therapeutic window
  vr_minutes               minutes in VR over the course
  fear_reduction           relative reduction of fear at the top step, before → after the course, among
                           completers (dropouts are left out of this one; NaN → null when nobody completed)
  suds_asks_per_min        SUDS questions asked per minute in VR (each one costs immersion)
  …_worst10                the same metric over the most severe decile of patients (highest
                           fear at the top step before treatment; the same patients for every controller)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from policy.controllers import Controller, make_controller
from policy.errors import PolicyError
from policy.shield import SafetyShield
from policy.sim.batch_session import BatchSession, DynamicsConfig
from policy.sim.patient import model, noise
from policy.sim.patient.population import STRUCTURES, Population
from policy.step import SceneTable, course_start_level

METRICS = ("responder_rate", "bat_steps_post", "top_suds_post", "dropout_rate", "escapes_per_patient",
           "overwhelm_s_per_session", "window_fraction", "vr_minutes", "fear_reduction", "suds_asks_per_min")
#: True where higher is better (for display)
HIGHER_BETTER = {"responder_rate": True, "bat_steps_post": True, "top_suds_post": False, "dropout_rate": False,
                 "escapes_per_patient": False, "overwhelm_s_per_session": False, "window_fraction": True,
                 "vr_minutes": None, "fear_reduction": True, "suds_asks_per_min": False}
#: metrics averaged over completers only (NaN for dropouts)
COMPLETERS_ONLY = ("fear_reduction",)
#: per-patient outcomes kept for the calibration checks (policy/sim/calibrate.py), not in the summary
EXTRAS = ("hr_rise_s1", "followup_top", "post_fears", "level_u")


class EvaluationError(PolicyError, ValueError):
    """Bad evaluation settings; the message names the option."""


class _Metered(BatchSession):
    def start_course(self):
        L = self.p.n
        self.window_s = np.zeros(L)
        self.escapes = np.zeros(L)
        self.hr_avg = self.p.rest_hr.copy()
        self.hr_rise_s1 = np.zeros(L)

    def on_second(self, k, r):
        self.window_s += r.in_window
        self.escapes += r.escaped_now
        if self.session == 0:  # peak of the 30-s average HR rise over rest in the first session
            self.hr_avg += (self.state.hr - self.hr_avg) / 30.0
            self.hr_rise_s1 = np.maximum(self.hr_rise_s1, self.hr_avg - self.p.rest_hr)


@dataclass
class CourseResult:
    names: list[str]
    per_patient: dict[str, np.ndarray]  # metric → (C, N)
    pre_top: np.ndarray  # (N,) fear at the top step before treatment
    concordance: np.ndarray  # (N,) HR–fear concordance (hidden)
    extras: dict | None = None  # name → (C, N, …) outcomes for the calibration checks (EXTRAS)

    @property
    def severe(self) -> np.ndarray:
        """(N,) bool: the most severe decile (highest fear at the top step before treatment)."""
        n = len(self.pre_top)
        k10 = max(1, int(round(0.1 * n)))
        out = np.zeros(n, bool)
        out[np.argsort(-self.pre_top, kind="stable")[:k10]] = True
        return out

    def summary(self) -> dict:
        out = {}
        for c, name in enumerate(self.names):
            m = {}
            for k in METRICS:
                x = self.per_patient[k][c]
                m[k] = _mean(x, k)
                m[k + "_worst10"] = _mean(x[self.severe], k)
            out[name] = m
        return out

    def by_concordance(self) -> dict:
        """Key metrics per HR–fear concordance tertile (low, mid, high), per controller."""
        q = np.quantile(self.concordance, [1 / 3, 2 / 3])
        groups = {"low": self.concordance <= q[0], "mid": (self.concordance > q[0]) & (self.concordance <= q[1]),
                  "high": self.concordance > q[1]}
        keys = ("responder_rate", "dropout_rate", "escapes_per_patient", "overwhelm_s_per_session")
        return {name: {g: {k: float(np.mean(self.per_patient[k][c][m])) for k in keys} for g, m in groups.items()}
                for c, name in enumerate(self.names)}


def _mean(x: np.ndarray, metric: str) -> float | None:
    """Mean over patients; for a completers-only metric, over completers (None if there are none)."""
    if metric in COMPLETERS_ONLY:
        x = x[np.isfinite(x)]
        return float(np.mean(x)) if len(x) else None
    return float(np.mean(x))


def _fmt(v, w: int) -> str:
    return f"{'—':>{w}}" if v is None else f"{v:>{w}.3f}"


def run_course(pop: Population, table: SceneTable, controllers: list[str | Controller], n_patients: int,
               seed: int = 0, structure: str | None = None, sessions: int | None = None,
               minutes: float | None = None, config: DynamicsConfig | None = None,
               progress=None, first_patient: int = 0, record=None) -> CourseResult:
    """Run every controller over the same ``n_patients`` for a course; per-patient outcomes.

    ``record(batch, group_index)`` (optional) is called at every decision, for tests."""
    # the learned policy is per scene (as engine.session builds it)
    ctrls = [(make_controller(c, scene=table.scene) if c == "policy" else make_controller(c))
             if isinstance(c, str) else c for c in controllers]
    names = [c.name for c in ctrls]
    if len(set(names)) != len(names):
        raise EvaluationError("--controllers names a controller twice")
    K = sessions or pop.sessions.count
    dur = 60.0 * (minutes or pop.sessions.minutes)
    keys = noise.patient_keys(seed, np.arange(first_patient, first_patient + n_patients))
    C, N = len(ctrls), n_patients
    p = model.make_params(pop, keys, table.scene, rep=C, structure=structure)
    b = _Metered(p, table, [(c, SafetyShield()) for c in ctrls], config, seed=seed)
    b.start_course()
    level_u = model.level_intensities(p, table)
    _, pre_top = model.approach_test(p, b.state, level_u, post=False)
    attended = np.zeros(p.n)
    over_s = np.zeros(p.n)
    vr_s = np.zeros(p.n)
    asks = np.zeros(p.n)
    start = None
    for s in range(K):
        active = ~b.state.dropped
        b.start_session(dur, start)
        for g in b.decisions():
            obs = b.observation(g)
            if getattr(g.controller, "needs_hidden", False):
                g.controller.see(b.hidden(g))
            waiting = np.isnan(b.s.pending[g.lanes])
            b.apply(g, obs, g.controller.propose(obs))
            asks[g.lanes] += waiting & ~np.isnan(b.s.pending[g.lanes])  # questions asked now
            if record is not None:
                record(b, b.groups.index(g))
        attended += active
        over_s += b.state.sess_over_s
        vr_s += b.state.sess_vr_s
        if progress is not None:
            progress(s + 1, K)
        if s < K - 1:
            b.course_ctx = b.next_course_context()
            b.end_session()
            # the next session resumes one level below the highest level reached, as a therapist would
            start = b.levels[course_start_level(b.max_level)]
    steps, top = model.approach_test(p, b.state, level_u, post=True)
    dropped = b.state.dropped
    completer_gain = np.where(pre_top > 0.0, (pre_top - top) / np.maximum(pre_top, 1e-9), 0.0)
    per = {
        "responder_rate": (~dropped & (top <= 0.5 * pre_top)).astype(float),
        "bat_steps_post": steps,
        "top_suds_post": top,
        "dropout_rate": dropped.astype(float),
        "escapes_per_patient": b.escapes,
        "overwhelm_s_per_session": over_s / np.maximum(attended, 1),
        "window_fraction": b.window_s / np.maximum(vr_s, 1.0),
        "vr_minutes": vr_s / 60.0,
        "fear_reduction": np.where(dropped, np.nan, completer_gain),
        "suds_asks_per_min": asks / np.maximum(vr_s / 60.0, 1.0 / 60.0),
    }
    per = {k: v.reshape(C, N) for k, v in per.items()}
    post = model.approach_fears(p, b.state, level_u, post=True)
    followup = model.approach_fears(p, b.state, level_u[:, -1:], post=True, delays=2)[:, 0]
    extras = {"hr_rise_s1": b.hr_rise_s1.reshape(C, N), "followup_top": followup.reshape(C, N),
              "post_fears": post.reshape(C, N, -1), "level_u": level_u[:N].copy()}
    return CourseResult(names, per, pre_top[:N], p.concordance[:N].copy(), extras)


def _job(args, structure, start, n, progress=None) -> CourseResult:
    pop, table, controllers, seed, sessions, minutes = args
    return run_course(pop, table, controllers, n, seed, structure, sessions, minutes, progress=progress,
                      first_patient=start)


def evaluate(pop: Population, table: SceneTable, controllers: list[str], n_patients: int, seed: int = 0,
             structure: str | None = None, sessions: int | None = None, minutes: float | None = None,
             progress: bool = False, chunk: int = 1000, workers: int = 1, ray: str | None = None,
             shard: int | None = None, ray_options: dict | None = None) -> dict:
    """The ``exposure evaluate`` result: {"controllers": {NAME: {METRIC: value}}, …}.

    ``structure="all"`` runs every model structure and adds ``"structures"``. Patients are run
    in chunks of at most ``chunk`` (memory), each chunk the same patients for every controller,
    spread over ``workers`` processes. Results do not depend on chunks or workers: every
    patient's random numbers are its own.

    ``ray`` (``local``, ``auto`` or a cluster address) runs the patients instead as Ray tasks of
    ``shard`` patients each (default: split evenly over the cluster's CPUs; :mod:`policy.sim.distributed`;
    ``ray_options`` go to its ``run_jobs``, e.g. ``num_cpus`` for ``local``), with the same result."""
    if n_patients < 1:
        raise EvaluationError("--patients must be at least 1")
    structs = list(STRUCTURES) if structure == "all" else [structure or pop.structure]
    for s in structs:
        if s not in STRUCTURES:
            raise EvaluationError(f"--structure {s!r}: choose one of {', '.join(STRUCTURES)} or all")
    K = sessions or pop.sessions.count
    args = (pop, table, controllers, seed, sessions, minutes)
    # --- scale-out: the same jobs as Ray tasks (policy/sim/distributed.py) ---------------------
    if ray is not None:
        from policy.sim import distributed

        jobs, parts, _ = distributed.run_jobs(_job, args, structs, n_patients, K, ray, shard=shard,
                                              progress=progress, **(ray_options or {}))
        return _assemble(pop, table, structs, jobs, parts, n_patients, K, seed, structure, minutes)
    # --------------------------------------------------------------------------------------------
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(structs) * K * n_patients, unit=" patient-sessions", file=sys.stderr,
                   leave=False, dynamic_ncols=True)
    workers = max(1, min(workers or 1, os.cpu_count() or 1))
    size = min(chunk, max(1, -(-n_patients // workers)))
    jobs = [(st, start, min(size, n_patients - start)) for st in structs for start in range(0, n_patients, size)]
    parts: dict[tuple[str, int], CourseResult] = {}
    if workers == 1 or len(jobs) == 1:
        for st, start, n in jobs:
            prog = (lambda s, k, n=n: bar.update(n)) if bar is not None else None
            parts[st, start] = _job(args, st, start, n, prog)
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            futs = {ex.submit(_job, args, st, start, n): (st, start, n) for st, start, n in jobs}
            for f in as_completed(futs):
                st, start, n = futs[f]
                parts[st, start] = f.result()
                if bar is not None:
                    bar.update(n * K)
    if bar is not None:
        bar.close()
    return _assemble(pop, table, structs, jobs, parts, n_patients, K, seed, structure, minutes)


def _assemble(pop, table, structs, jobs, parts, n_patients, K, seed, structure, minutes) -> dict:
    """The result from the parts, in patient order (so it does not depend on how they were run)."""
    by_struct, tertiles = {}, {}
    for st in structs:
        rs = [parts[j[0], j[1]] for j in jobs if j[0] == st]
        per = {k: np.concatenate([r.per_patient[k] for r in rs], axis=1) for k in METRICS}
        # the most severe decile over the whole population, not per chunk
        cr = CourseResult(rs[0].names, per, np.concatenate([r.pre_top for r in rs]),
                          np.concatenate([r.concordance for r in rs]))
        by_struct[st] = cr.summary()
        tertiles[st] = cr.by_concordance()
    out = {"controllers": by_struct[structs[0]], "concordance_tertiles": tertiles[structs[0]],
           "settings": {"patients": n_patients, "sessions": K, "minutes": minutes or pop.sessions.minutes,
                        "scene": table.scene, "seed": seed, "population": pop.name, "structure": structure
                        or pop.structure, "sensor": pop.sensor}}
    if structure == "all":
        out["structures"] = {st: {"controllers": v, "concordance_tertiles": tertiles[st]}
                             for st, v in by_struct.items()}
    return out


def format_table(result: dict) -> str:
    """A plain-text table: metrics as rows, controllers as columns (mean, worst decile)."""
    def block(ctrls: dict, title: str) -> list[str]:
        names = list(ctrls)
        w = max(12, *(len(n) + 2 for n in names))
        lines = [title, f"{'metric':<26}" + "".join(f"{n:>{w}}" for n in names)]
        for m in METRICS:
            lines.append(f"{m:<26}" + "".join(_fmt(ctrls[n][m], w) for n in names))
            lines.append(f"{'  worst decile':<26}" + "".join(_fmt(ctrls[n][m + '_worst10'], w) for n in names))
        return lines

    s = result["settings"]
    head = (f"{s['patients']} patients × {s['sessions']} sessions × {s['minutes']:g} min, scene {s['scene']}, "
            f"seed {s['seed']}, population {s['population']}, sensor {s['sensor']}")
    lines = [head]
    if "structures" in result:
        for st, v in result["structures"].items():
            lines += [""] + block(v["controllers"], f"structure: {st}")
    else:
        lines += [""] + block(result["controllers"], f"structure: {s['structure']}")
    return "\n".join(lines)
