"""Training the RL policy: PPO on vectorised virtual patients, the shield in the loop.

``exposure train`` calls :func:`train`. What it does, in order:

1. builds ``n_envs`` copies of ``ExposureTherapy-v0`` (each wrapped in the safety shield, as
   the env module provides) over a training population that mixes the model structures and
   both sensor types, under ``VecCheckNan`` and ``VecNormalize``;
2. trains stable-baselines3 PPO (MLP actor-critic, one torch thread) with callbacks: a
   progress bar, and a periodic evaluation of the current actor *against the baselines* on a
   validation population (its own seeds, never the training or the benchmark ones); the
   best actor so far is saved, and training stops early when it has not improved for
   ``patience`` evaluations;
3. writes, in ``--out``: ``model.zip`` (SB3), ``vecnormalize.pkl`` (its observation and
   reward statistics), ``policy.npz`` (the numpy actor the ``policy`` controller runs), and a
   model card (``card.json`` + ``card.md``) with the seed, the population, the training time
   and the validation metrics of the policy, every baseline and the oracle, per structure.

Everything the policy is judged on here is a *virtual* patient; the card says so.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from policy.errors import PolicyError
from policy.numpy_mlp import export_bundle, load_bundle
from policy.observation import OBS_VERSION

SCENES = ("heights", "crowds")
#: seeds of the validation population used during training (the benchmark uses others)
VALIDATION_SEED = 90_001
BASELINES = ("ladder", "suds", "hr-band", "hr-pid")
#: the decision interval of the learned policy (s): the cost per session counts decisions
DECISION_S = 5.0


class TrainError(PolicyError, ValueError):
    """A training setting that cannot be used; the message names the option."""


@dataclass(frozen=True)
class TrainConfig:
    scene: str = "heights"
    timesteps: int = 8_000_000
    population: str | None = None  # a population TOML file; None: the shipped default
    seed: int = 0
    out: Path | None = None  # default: policy/models/<scene>/
    n_envs: int = 1020  # virtual patients stepped together (lanes)
    n_sub: int = 5  # sub-batches, each a different (structure, sensor) per course: every structure at once
    eval_every: int = 2_000_000  # timesteps between evaluations against the baselines
    eval_patients: int = 200  # validation patients (structure ``eval_structure``) per evaluation
    eval_structure: str = "full"
    eval_sessions: int | None = None  # default: the population's session plan
    card_patients: int = 100  # validation patients per structure for the model card (every structure)
    patience: int = 2  # evaluations without improvement before stopping early
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-4
    n_steps: int = 32
    batch_size: int = 4080  # a factor of n_steps × n_envs (32 × 1020): no truncated mini-batch
    n_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    ent_coef: float = 0.005
    top_shaping: float = 3.0  # extra reward: change of top-step post-test fear ÷ pre-treatment fear
    overwhelm_extra: float = 0.0  # fixed extra penalty per second of overwhelm (the multiplier replaces it)
    # constrained training (PPO-Lagrangian): the safety cost per session (overwhelm s + 30 × escapes)
    # is held under cost_budget by a multiplier adapted each rollout (policy.train.callbacks)
    # The budget holds for the *stochastic* training policy (exploration adds cost that the kept,
    # deterministic actor does not have); λ is kept small (≤ 0.3): the whole progress reward of a
    # course is a few units, so λ ≈ 1 at seconds of overwhelm per session makes "no exposure" the best
    # policy (seen: responders 0 at 1 M steps with budget 0.1, λ up to 2).
    cost_budget: float = 0.5
    cost_lr: float = 0.0005
    cost_init: float = 0.03
    cost_upper: float = 0.3
    ask_price: float = 0.003  # reward price of a SUDS question (the shield allows one per 60 s)
    widen: float = 1.5  # domain randomisation: the spread of every prior of the training population ×
    progress: bool = True
    max_minutes: float | None = None  # wall-clock budget of the PPO loop; the best actor so far is kept
    threads: int = 1
    final_eval: bool = True  # evaluate the kept actor per structure for the card
    env_kwargs: dict = field(default_factory=dict)
    #: the scene's SceneTable (``engine.gym_env.scene_table``): built by the caller from the
    #: scene's hierarchy, because ``policy/`` does not import ``scenes/``
    scene_table: object | None = field(default=None, compare=False, repr=False)

    def validated(self) -> TrainConfig:
        if self.scene not in SCENES:
            raise TrainError(f"--scene: unknown scene {self.scene!r}: choose {' or '.join(SCENES)}")
        for name in ("timesteps", "n_envs", "n_sub", "eval_every", "eval_patients", "card_patients", "patience",
                     "n_steps", "batch_size", "n_epochs", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                flag = {"n_envs": "envs"}.get(name, name).replace("_", "-")
                raise TrainError(f"--{flag} must be a positive integer, not {v!r}")
        if self.eval_sessions is not None and (not isinstance(self.eval_sessions, int) or self.eval_sessions < 1):
            raise TrainError(f"eval_sessions must be a positive integer, not {self.eval_sessions!r}")
        if self.n_envs % self.n_sub:
            raise TrainError(f"--envs ({self.n_envs}) must be a multiple of n_sub ({self.n_sub})")
        if self.timesteps < self.n_envs * self.n_steps:
            raise TrainError(f"--timesteps must be at least n_envs × n_steps = {self.n_envs * self.n_steps}")
        if not all(isinstance(k, int) and k > 0 for k in self.net_arch) or not self.net_arch:
            raise TrainError("net_arch must be positive layer sizes")
        for name in ("learning_rate", "gamma", "gae_lambda"):
            v = getattr(self, name)
            if not (isinstance(v, float | int) and 0 < v <= 1):
                raise TrainError(f"{name} must be in (0, 1], not {v!r}")
        if not (isinstance(self.ent_coef, float | int) and self.ent_coef >= 0):
            raise TrainError(f"ent_coef must be ≥ 0, not {self.ent_coef!r}")
        for name in ("cost_budget", "cost_init", "ask_price", "overwhelm_extra", "top_shaping"):
            v = getattr(self, name)
            if not (isinstance(v, float | int) and not isinstance(v, bool) and 0 <= v < float("inf")):
                raise TrainError(f"--{name.replace('_', '-')} must be a number ≥ 0, not {v!r}")
        if not (isinstance(self.cost_lr, float | int) and self.cost_lr > 0):
            raise TrainError(f"cost_lr must be > 0, not {self.cost_lr!r}")
        if not (isinstance(self.cost_upper, float | int) and self.cost_upper >= self.cost_init):
            raise TrainError(f"cost_upper must be ≥ cost_init, not {self.cost_upper!r}")
        if self.max_minutes is not None and not (isinstance(self.max_minutes, float | int) and self.max_minutes > 0):
            raise TrainError(f"--max-minutes must be a positive number, not {self.max_minutes!r}")
        if not (isinstance(self.widen, float | int) and not isinstance(self.widen, bool) and 1 <= self.widen <= 3):
            raise TrainError(f"--widen must be between 1 and 3, not {self.widen!r}")
        from policy.sim.patient.population import STRUCTURES

        if self.eval_structure not in STRUCTURES:
            raise TrainError(f"eval_structure must be one of {', '.join(STRUCTURES)}, not {self.eval_structure!r}")
        if self.population is not None and not Path(self.population).is_file():
            raise TrainError(f"--population: no such file {self.population}")
        out = Path(self.out) if self.out is not None else Path(__file__).with_name("models") / self.scene
        return TrainConfig(**{**self.__dict__, "out": out})


@dataclass
class TrainResult:
    out: Path
    timesteps: int
    seconds: float
    stopped_early: bool
    card: dict


def defaults_for(scene: str) -> TrainConfig:
    """The settings the shipped policy for ``scene`` was trained with."""
    return TrainConfig(scene=scene)


# --------------------------------------------------------------------------- env plumbing
def _world(cfg: TrainConfig):
    from policy.sim.patient.population import PopulationError, load_population

    try:
        pop = load_population(cfg.population)
    except PopulationError as e:
        raise TrainError(f"--population: {e}") from None
    if cfg.scene_table is None:
        raise TrainError("training needs the scene's table: TrainConfig(scene_table=engine.gym_env.scene_table(scene))")
    return pop, cfg.scene_table


def make_training_env(cfg: TrainConfig):
    """The lanes of virtual patients PPO trains on (an SB3 VecEnv, the shield in the loop)."""
    from policy.learned import STEP_SIZE
    from policy.sim.batch_env import MixedVecEnv

    pop, table = _world(cfg)
    return MixedVecEnv(pop, table, n_envs=cfg.n_envs, n_sub=cfg.n_sub, seed=cfg.seed, step_size=STEP_SIZE,
                       top_shaping=cfg.top_shaping, overwhelm_extra=cfg.overwhelm_extra, ask_price=cfg.ask_price,
                       widen=cfg.widen)


# --------------------------------------------------------------------------- evaluation
def evaluate_controllers(controllers: list, cfg: TrainConfig, structure: str | None = None,
                         patients: int | None = None, seed: int = VALIDATION_SEED) -> dict:
    """Metrics of each controller on the validation population (the same patients and random
    numbers for all), with ``exposure evaluate``'s code: {STRUCTURE: {name: metrics}}; with
    ``structure="all"`` every model structure and their mean under ``"mean"``."""
    from policy.sim import evaluate as ev

    pop, table = _world(cfg)
    structure = structure or cfg.eval_structure
    res = ev.evaluate(pop, table, controllers, patients or cfg.eval_patients, seed=seed, structure=structure,
                      sessions=cfg.eval_sessions)
    if structure != "all":
        return {structure: res["controllers"]}
    per = {st: v["controllers"] for st, v in res["structures"].items()}
    first = next(iter(per.values()))
    mean = {n: {k: float(np.mean([per[st][n][k] for st in per])) for k in first[n]} for n in first}
    return {"mean": mean, **per}


def score(m: dict, ref: dict) -> float:
    """One number to pick the best actor: responders, with penalties for missing the goals'
    margins (docs/policy.md): less safe than the safest baseline (overwhelm + 0.1 s per session,
    escapes + 0.01 per patient), losing more patients than the best one (dropout + 0.01), fewer
    approach-test steps than the ladder − 0.25, more than 0.5 SUDS questions per minute."""
    s = m["responder_rate"]
    s -= 2.0 * max(0.0, m["dropout_rate"] - ref["dropout_rate"] - 0.01)
    s -= 0.05 * max(0.0, m["overwhelm_s_per_session"] - ref["overwhelm_s_per_session"] - 0.1)
    s -= 2.0 * max(0.0, m.get("escapes_per_patient", 0.0) - ref.get("escapes_per_patient", 0.0) - 0.01)
    if ref.get("bat_steps_post") is not None and m.get("bat_steps_post") is not None:
        s -= 0.05 * max(0.0, ref["bat_steps_post"] - 0.25 - m["bat_steps_post"])
    if m.get("suds_asks_per_min") is not None:
        s -= 0.5 * max(0.0, m["suds_asks_per_min"] - 0.5)
    return float(s)


def _reference(baselines: dict) -> dict:
    best = max(baselines.values(), key=lambda m: m["responder_rate"])
    safe = [n for n in ("ladder", "suds", "hr-band") if n in baselines] or list(baselines)
    return {"responder_rate": best["responder_rate"],
            "dropout_rate": min(m["dropout_rate"] for m in baselines.values()),
            "overwhelm_s_per_session": min(baselines[n]["overwhelm_s_per_session"] for n in safe),
            "escapes_per_patient": min(baselines[n].get("escapes_per_patient", 0.0) for n in safe),
            "bat_steps_post": baselines["ladder"].get("bat_steps_post") if "ladder" in baselines else None}


# --------------------------------------------------------------------------- the actor during training
def _evaluate_actor(model, vecnorm, cfg: TrainConfig) -> dict:
    """The current actor's metrics on the validation population ({name: metrics}, name "policy")."""
    from policy.learned import LearnedController

    ctl = LearnedController(scene=cfg.scene, actor=_actor_of(model, vecnorm, cfg))
    return evaluate_controllers([ctl], cfg)[cfg.eval_structure]


def _actor_of(model, vecnorm, cfg: TrainConfig, meta: dict | None = None):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = export_bundle(model, vecnorm, Path(d) / "a.npz", _bundle_meta(cfg, meta))
        return load_bundle(p)


def _bundle_meta(cfg: TrainConfig, extra: dict | None = None) -> dict:
    from policy.learned import ASK_SUDS, INPUT_VERSION, STEP_SIZE
    from policy.observation import VECTOR_FIELDS

    return {"scene": cfg.scene, "obs_version": OBS_VERSION, "input_version": INPUT_VERSION,
            "inputs": list(VECTOR_FIELDS), "step_size": STEP_SIZE, "ask_suds": ASK_SUDS, "seed": cfg.seed,
            "population": _population_label(cfg), "decision_interval": 5.0, **(extra or {})}


def _population_label(cfg: TrainConfig) -> str:
    if cfg.population is None:
        return "default"
    data = Path(cfg.population).read_bytes()
    return f"{cfg.population} (sha256 {hashlib.sha256(data).hexdigest()[:12]})"


# --------------------------------------------------------------------------- train
def train(cfg: TrainConfig, log=None) -> TrainResult:
    cfg = cfg.validated()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    _world(cfg)  # a bad population file fails here, before anything is written
    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.vec_env import VecCheckNan, VecNormalize

    from policy import controllers as C

    th.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    log(f"baselines on the validation population ({cfg.eval_patients} patients, "
        f"structure {cfg.eval_structure}, seed {VALIDATION_SEED})…")
    base_names = [n for n in (*BASELINES, "oracle") if n in C.controller_names()]
    base = evaluate_controllers(base_names, cfg)
    baselines = {st: {n: m for n, m in r.items() if n != "oracle"} for st, r in base.items()}

    venv = VecCheckNan(make_training_env(cfg), raise_exception=True)
    vecnorm = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=cfg.gamma)
    model = PPO("MlpPolicy", vecnorm, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
                gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, seed=cfg.seed, device="cpu",
                policy_kwargs={"net_arch": list(cfg.net_arch)}, verbose=0)

    from policy.train.callbacks import EvalAgainstBaselines, LagrangeMultiplier, TqdmProgress, WallClockBudget

    lag = LagrangeMultiplier(cfg.cost_budget, lr=cfg.cost_lr, init=cfg.cost_init, upper=cfg.cost_upper,
                             steps_per_session=venv.venv.steps_per_session, log=log)

    def save():
        model.save(out / "model.zip")
        vecnorm.save(str(out / "vecnormalize.pkl"))
        export_bundle(model, vecnorm, out / "policy.npz",
                      _bundle_meta(cfg, {"timesteps": int(model.num_timesteps),
                                         **({"cost_model": cm} if (cm := lag.cost_model(DECISION_S)) else {})}))

    ref = _reference(baselines[cfg.eval_structure])
    ev = EvalAgainstBaselines(cfg.eval_every, cfg.patience, lambda m: _evaluate_actor(m, vecnorm, cfg),
                              lambda metrics: score(metrics, ref), ref, save, log)
    budget = WallClockBudget(cfg.max_minutes * 60.0, log) if cfg.max_minutes else None
    cbs = [lag, ev] + ([budget] if budget else []) + ([TqdmProgress(cfg.timesteps)] if cfg.progress else [])
    model.learn(total_timesteps=cfg.timesteps, callback=CallbackList(cbs))
    if not ev.stopped_early and (not ev.history or ev.history[-1]["timesteps"] != model.num_timesteps):
        ev.evaluate_now()
    train_s = time.monotonic() - t0
    vecnorm.close()
    _add_cost_model(out / "policy.npz", lag.cost_model(DECISION_S))
    stats = venv.venv.stats

    per_structure: dict = {}
    card_s = 0.0
    if cfg.final_eval:
        from policy.learned import LearnedController

        log(f"the kept policy and the baselines under every structure ({cfg.card_patients} patients each)…")
        t1 = time.monotonic()
        kept = LearnedController(scene=cfg.scene, path=out / "policy.npz")
        per_structure = evaluate_controllers([kept, *base_names], cfg, structure="all", patients=cfg.card_patients)
        card_s = time.monotonic() - t1
    card = _card(cfg, ev, base, train_s, int(model.num_timesteps), stats, per_structure, card_s, lag.curve)
    (out / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out / "card.md").write_text(card_markdown(card))
    return TrainResult(out, int(ev.best_step), train_s, ev.stopped_early, card)


def _card(cfg: TrainConfig, ev, base: dict, train_s: float, run_steps: int, env_stats: dict,
          per_structure: dict, card_s: float, cost_curve: list | None = None) -> dict:
    from policy.observation import VECTOR_FIELDS
    from policy.sim.batch_env import TRAIN_SEED_BASE

    st = cfg.eval_structure
    val = {"policy": (ev.best_result or {}).get("policy"), **base[st]}
    hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
          if k not in ("out", "progress", "population", "scene_table")}
    digest = hashlib.sha256((Path(cfg.out) / "policy.npz").read_bytes()).hexdigest()[:12]
    return {
        "name": f"exposure-policy-{cfg.scene}", "version": digest,
        "scene": cfg.scene, "seed": cfg.seed, "population": _population_label(cfg),
        "training_patients": training_patients_text(TRAIN_SEED_BASE + cfg.seed, env_stats),
        "algorithm": ("PPO-Lagrangian (stable-baselines3 PPO, MLP actor-critic, VecNormalize; a Lagrange "
                      "multiplier on the safety cost adapted each rollout); safety shield, with its one-question-"
                      "a-minute budget, applied to every action"),
        "patient_model": _patient_model(), "patient_model_digest": _patient_model_digest(),
        "constraint": {"cost": "overwhelm seconds + 30 × escapes (ExposureTherapy-v0 info['cost'])",
                       "budget_per_session": cfg.cost_budget, "multiplier_lr": cfg.cost_lr,
                       "multiplier_init": cfg.cost_init, "multiplier_max": cfg.cost_upper,
                       "curve": _thin(cost_curve or [], 60)},
        "domain_randomisation": {"prior_spread": cfg.widen, "structures": "all five", "sensors": "chest and optical"},
        "inputs": list(VECTOR_FIELDS), "obs_version": OBS_VERSION,
        "reward": f"(ExposureTherapy-v0's reward (policy/sim/env.py) − {cfg.overwhelm_extra} per second of overwhelm "
                  f"− {cfg.ask_price} per SUDS question + {cfg.top_shaping} × change of top-step post-test fear ÷ "
                  "pre-treatment fear − λ × cost) / (1 + λ)",
        "hyperparameters": hp, "timesteps_kept": int(ev.best_step), "timesteps_run": run_steps,
        "training_seconds": round(train_s, 1), "stopped_early": ev.stopped_early,
        "max_minutes": cfg.max_minutes,
        "training_courses": env_stats,
        "validation": {"seed": VALIDATION_SEED, "patients": cfg.eval_patients, "structure": st,
                       "sessions": cfg.eval_sessions or "the population's plan", "results": val},
        "per_structure": {"patients": cfg.card_patients, "seconds": round(card_s, 1), "results": per_structure},
        "history": ev.history,
        "reproduce": (f"exposure train --scene {cfg.scene} --timesteps {cfg.timesteps} --seed {cfg.seed}"
                      f" --envs {cfg.n_envs} --eval-every {cfg.eval_every} --eval-patients {cfg.eval_patients}"
                      f" --patience {cfg.patience} --card-patients {cfg.card_patients}"
                      f" --cost-budget {cfg.cost_budget:g} --cost-max {cfg.cost_upper:g} --ask-price {cfg.ask_price:g}"
                      f" --widen {cfg.widen:g}" + (f" --max-minutes {cfg.max_minutes:g}" if cfg.max_minutes else "")
                      + (f" --population {cfg.population}" if cfg.population else "")),
        "caveat": ("Judged on virtual patients only: a simulation built from published figures and "
                   "assumptions (docs/patients.md and docs/calibration.md in the repository), not on people. "
                   "It is not evidence of clinical benefit or safety."),
    }


def _add_cost_model(path: Path, cm: dict | None) -> None:
    """Give a kept bundle saved before the first cost fit (an evaluation inside the first rollout)
    the cost estimate fitted since."""
    if cm is None or not path.exists():
        return
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    meta = json.loads(str(d["meta"]))
    if "cost_model" in meta:
        return
    d["meta"] = np.array(json.dumps({**meta, "cost_model": cm}, sort_keys=True))
    with open(path, "wb") as f:
        np.savez(f, **d)


def _patient_model() -> str:
    """Which virtual-patient model the policy was trained on: "calibrated" only when the model
    declares its calibration done (``policy.sim.patient.model.CALIBRATED = True``, set by the
    calibration work), else "uncalibrated" — so :func:`policy.learned.goals_met` never takes a
    policy trained on an earlier model for the default."""
    from policy.sim.patient import model

    return "calibrated" if getattr(model, "CALIBRATED", False) is True else "uncalibrated"


def _patient_model_digest() -> str:
    """A digest of the patient model's code and shipped populations (which model, exactly)."""
    from policy.sim.patient import model

    h = hashlib.sha256(Path(model.__file__).read_bytes())
    for f in sorted(Path(model.__file__).with_name("populations").glob("*.toml")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _thin(curve: list, k: int) -> list:
    """At most ``k`` points of a per-rollout curve, evenly spaced, the last one kept."""
    if len(curve) <= k:
        return list(curve)
    idx = sorted({round(i * (len(curve) - 1) / (k - 1)) for i in range(k)})
    return [curve[i] for i in idx]


def training_patients_text(seed: int, stats: dict) -> str:
    """What the training patients were: how many, and which (structure, sensor) pairs they met."""
    seen = ", ".join(f"{k} ×{v}" for k, v in stats.get("combos", {}).items())
    return (f"{stats.get('patients', 0)} virtual patients in {stats.get('courses', 0)} courses, seed {seed} "
            f"(a namespace no evaluation uses); (structure/sensor ×courses): {seen}")


def card_markdown(card: dict) -> str:
    v = card["validation"]
    lines = [f"# Model card: {card['name']} ({card['version']})", "",
             f"**{card['caveat']}**", "",
             f"- scene: {card['scene']}", f"- seed: {card['seed']}", f"- population: {card['population']}",
             f"- training patients: {card['training_patients']}",
             f"- algorithm: {card['algorithm']}",
             f"- timesteps kept / run: {card['timesteps_kept']} / {card['timesteps_run']}"
             + (" (stopped early)" if card["stopped_early"] else ""),
             f"- training time: {card['training_seconds']:.0f} s (wall clock, including the validation runs)",
             f"- reproduce: `{card['reproduce']}`", "",
             f"## Validation (kept actor): {v['patients']} patients × {v['sessions']} sessions, structure "
             f"{v['structure']}, seed {v['seed']}", ""]
    lines += _table(v["results"])
    ps = card["per_structure"]
    if ps["results"]:
        lines += ["", f"## Every model structure: {ps['patients']} patients each, same seed", ""]
        for s, res in ps["results"].items():
            lines += ["", f"### {'mean over the structures' if s == 'mean' else 'structure: ' + s}", ""] + _table(res)
    lines += ["", "## Inputs", "", ", ".join(card["inputs"]) + f" (observation version {card['obs_version']})", ""]
    return "\n".join(lines)


def _table(res: dict) -> list[str]:
    from policy.sim.evaluate import METRICS

    cols = list(METRICS)
    out = ["| controller | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in res.items():
        if not r:
            continue
        out.append(f"| {name} | " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return out


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


__all__ = ["TrainConfig", "TrainError", "TrainResult", "train", "card_markdown", "score"]
