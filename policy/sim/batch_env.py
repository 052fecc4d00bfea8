"""The training VecEnv: ``ExposureTherapy-v0``'s courses over a population that mixes every
model structure and both sensor types.

It is a thin layer over :class:`policy.sim.env._Course` — the env's own course logic (patient
model, live session dynamics, the safety shield on every decision, session resumption one
level below the highest reached, rewards) — with ``n_sub`` batches of lanes. Each batch
runs a whole course for its patients in lockstep, then draws new patients (keys from a
training seed namespace no evaluation uses) and takes the next (structure, sensor)
combination, so over training the policy meets every structure with both sensors.

Reward: the env's reward, an optional extra penalty per second of overwhelm
(``overwhelm_extra``), an optional price per SUDS question asked (``ask_price``; the shield
already refuses more than one a minute), and an optional shaping term aligned with the responder
criterion: ``top_shaping`` × the change of (post-course approach-test fear at the top step ÷
fear there before treatment), estimated from the hidden state at each decision (training
may use hidden state; the policy never sees it).

Constrained training: each lane's ``info["cost"]`` is the env's safety cost of the step
(overwhelm seconds + 30 × escapes). With a Lagrange multiplier λ (:attr:`MixedVecEnv.cost_multiplier`,
set by :class:`policy.train.callbacks.LagrangeMultiplier`) the reward PPO sees is
``(r − λ·cost) / (1 + λ)``, the scaled Lagrangian of PPO-Lagrangian (Ray et al. 2019).

Domain randomisation: ``widen`` > 1 scales the spread of every prior of the training population
(:func:`widened`), so the policy meets patients beyond the default population.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from policy.shield import SafetyShield
from policy.sim.env import OneBatchVecEnvMixin, _Course, _spaces
from policy.sim.patient import model, noise
from policy.sim.patient.population import SENSORS, STRUCTURES, Population
from policy.step import SceneTable

#: patients drawn for training come from seed TRAIN_SEED_BASE + seed (a namespace no evaluation uses)
TRAIN_SEED_BASE = 7_340_000


class _Sub:
    def __init__(self, pop: Population, table: SceneTable, n: int, step_size: float, top_shaping: float,
                 overwhelm_extra: float = 0.0, ask_price: float = 0.0):
        self.pop, self.table, self.n = pop, table, n
        self.course = _Course(table, pop, n, None, None, step_size, True)
        self.course.set_shield(SafetyShield())
        self.top_shaping = top_shaping
        self.overwhelm_extra = overwhelm_extra
        self.ask_price = ask_price
        self.cost_multiplier = 0.0
        self.combo = ("", "")

    def start(self, keys: np.ndarray, structure: str, sensor: str, seed: int) -> np.ndarray:
        self.course.pop = replace(self.pop.with_structure(structure), sensor=sensor)
        self.combo = (structure, sensor)
        obs = self.course.start(keys, seed=seed)
        self.course.shield.reset(self.n)
        if self.top_shaping:
            c = self.course
            self.pre_top = np.maximum(model.level_fears(c.b.p, c.b.state, c.level_u[:, -1:])[:, 0], 1.0)
            self.phi = self._phi()
        return obs

    def _phi(self) -> np.ndarray:
        c = self.course
        _, top = model.approach_test(c.b.p, c.b.state, c.level_u[:, -1:], post=True)
        return -top / self.pre_top

    def step(self, actions: np.ndarray):
        obs, r, done, info = self.course.step(actions)
        if self.overwhelm_extra:
            r = r - self.overwhelm_extra * info["overwhelm_s"]
        if self.ask_price:
            r = r - self.ask_price * info["asked"]
        if self.top_shaping:
            phi = self._phi()
            r = r + self.top_shaping * (phi - self.phi)
            self.phi = phi
        lam = self.cost_multiplier
        if lam:
            r = (r - lam * info["cost"]) / (1.0 + lam)
        # the course is over once every lane finished it or dropped out (the env then starts no new session)
        over = bool(done.all())
        return obs, r, done, info, over


class MixedVecEnv(OneBatchVecEnvMixin, VecEnv):
    """``n_envs`` lanes of ExposureTherapy-v0 courses in ``n_sub`` batches, mixing structures and sensors."""

    def __init__(self, pop: Population, table: SceneTable, n_envs: int = 1024, n_sub: int = 2, seed: int = 0,
                 structures: tuple[str, ...] = STRUCTURES, sensors: tuple[str, ...] = SENSORS,
                 step_size: float = 0.05, top_shaping: float = 0.0, overwhelm_extra: float = 0.0,
                 ask_price: float = 0.0, widen: float = 1.0):
        if n_envs % n_sub:
            raise ValueError("n_envs must be a multiple of n_sub")
        pop = widened(pop, widen)
        obs_space, act_space = _spaces(True)
        self.render_mode = None
        super().__init__(n_envs, obs_space, act_space)
        # every structure in each round of len(structures) courses, the sensors alternating, so n_sub =
        # len(structures) sub-batches meet every structure from the first course on and every
        # (structure, sensor) pair within two
        self.combos = [(st, sensors[(i + r) % len(sensors)]) for r in range(len(sensors))
                       for i, st in enumerate(structures)]
        self.train_seed = TRAIN_SEED_BASE + int(seed)
        self.subs = [_Sub(pop, table, n_envs // n_sub, step_size, top_shaping, overwhelm_extra, ask_price)
                     for _ in range(n_sub)]
        #: per lane, the duration of a session in steps (decisions): for the cost per session
        self.steps_per_session = self.subs[0].course.duration / 5.0
        self.started = 0  # courses started, over all sub-batches
        self._actions = None
        self.stats = {"courses": 0, "patients": 0, "combos": {}}

    @property
    def cost_multiplier(self) -> float:
        """λ of the Lagrangian (0: the reward as it is)."""
        return self.subs[0].cost_multiplier

    @cost_multiplier.setter
    def cost_multiplier(self, lam: float) -> None:
        lam = float(lam)
        if not (lam >= 0.0 and np.isfinite(lam)):
            raise ValueError(f"the cost multiplier must be finite and ≥ 0, not {lam!r}")
        for s in self.subs:
            s.cost_multiplier = lam

    def _start(self, sub: _Sub) -> np.ndarray:
        k = self.started
        self.started += 1
        keys = noise.patient_keys(self.train_seed, np.arange(k * sub.n, (k + 1) * sub.n))
        st, se = self.combos[k % len(self.combos)]
        self.stats["courses"] += 1
        self.stats["patients"] += sub.n
        self.stats["combos"][f"{st}/{se}"] = self.stats["combos"].get(f"{st}/{se}", 0) + 1
        return sub.start(keys, st, se, seed=self.train_seed + k)

    def reset(self) -> np.ndarray:
        return np.concatenate([self._start(s) for s in self.subs]).astype(np.float32)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs, 2)

    def step_wait(self):
        obs_l, rew_l, done_l, infos = [], [], [], []
        i = 0
        for sub in self.subs:
            obs, r, done, info, over = sub.step(self._actions[i:i + sub.n])
            i += sub.n
            term = obs.copy()
            if over:
                done = np.ones(sub.n, bool)
                obs = self._start(sub)
            cost, asked = info["cost"], info["asked"]
            inf = [{"cost": float(cost[j]), "asked": bool(asked[j])} for j in range(sub.n)]
            for j in np.flatnonzero(done):
                inf[j].update({"terminal_observation": term[j].astype(np.float32), "TimeLimit.truncated": False})
            obs_l.append(obs)
            rew_l.append(r)
            done_l.append(done)
            infos += inf
        return (np.concatenate(obs_l).astype(np.float32), np.concatenate(rew_l).astype(np.float32),
                np.concatenate(done_l), infos)

    # ------------------------------------------------------------------ VecEnv boilerplate
    def close(self) -> None:
        pass

    def seed(self, seed=None):
        if seed is not None:
            self.train_seed = TRAIN_SEED_BASE + int(seed)
        return [seed] * self.num_envs


#: priors ``widened`` leaves as they are: demography is what a population file says (adults)
KEEP = ("age",)


def widened(pop: Population, factor: float) -> Population:
    """``pop`` with the spread of every prior scaled by ``factor`` around its centre (normal: sd;
    lognormal: sigma; uniform: half-width; beta: a and b divided by ``factor`` (more spread), bernoulli
    and fixed priors unchanged; ``KEEP`` unchanged); bounds (min, max) are kept, so no parameter
    leaves its valid range, and a uniform prior that starts at 0 or above stays there.
    Domain randomisation for training: patients beyond the default population."""
    from policy.sim.patient.population import Prior

    if factor == 1.0:
        return pop
    if not (factor > 0 and np.isfinite(factor)):
        raise ValueError(f"widen must be a positive number, not {factor!r}")
    out = []
    for name, p in pop.priors:
        a = p.args
        if p.dist == "normal":
            a = (a[0], a[1] * factor)
        elif p.dist == "lognormal":
            a = (a[0], a[1] * factor)
        elif p.dist == "uniform" and name not in KEEP:
            mid, half = (a[0] + a[1]) / 2, (a[1] - a[0]) / 2 * factor
            a = (max(mid - half, 0.0) if a[0] >= 0 else mid - half, mid + half)  # no negative delays or costs
        elif p.dist == "beta":
            a = (a[0] / factor, a[1] / factor)
        out.append((name, Prior(p.dist, a, p.lo, p.hi)))
    return replace(pop, name=f"{pop.name} (spread ×{factor:g})", priors=tuple(out))
