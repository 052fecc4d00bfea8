"""The training VecEnv: ``ExposureTherapy-v0``'s courses over a population that mixes every
model structure and both sensor types.

It is a thin layer over :class:`policy.sim.env._Course` — the env's own course logic (patient
model, live session dynamics, the safety shield on every decision, session resumption one
level below the highest reached, rewards) — with ``n_sub`` batches of lanes. Each batch
runs a whole course for its patients in lockstep, then draws new patients (keys from a
training seed namespace no evaluation uses) and takes the next (structure, sensor)
combination, so over training the policy meets every structure with both sensors.

Reward: the env's reward, an optional extra penalty per second of overwhelm
(``overwhelm_extra``), and an optional shaping term aligned with the responder
criterion: ``top_shaping`` × the change of (post-course approach-test fear at the top step ÷
fear there before treatment), estimated from the hidden state at each decision (training
may use hidden state; the policy never sees it).
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
                 overwhelm_extra: float = 0.0):
        self.pop, self.table, self.n = pop, table, n
        self.course = _Course(table, pop, n, None, None, step_size, True)
        self.course.set_shield(SafetyShield())
        self.top_shaping = top_shaping
        self.overwhelm_extra = overwhelm_extra
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
        if self.top_shaping:
            phi = self._phi()
            r = r + self.top_shaping * (phi - self.phi)
            self.phi = phi
        # the course is over once every lane finished it or dropped out (the env then starts no new session)
        over = bool(done.all())
        return obs, r, done, info, over


class MixedVecEnv(OneBatchVecEnvMixin, VecEnv):
    """``n_envs`` lanes of ExposureTherapy-v0 courses in ``n_sub`` batches, mixing structures and sensors."""

    def __init__(self, pop: Population, table: SceneTable, n_envs: int = 1024, n_sub: int = 2, seed: int = 0,
                 structures: tuple[str, ...] = STRUCTURES, sensors: tuple[str, ...] = SENSORS,
                 step_size: float = 0.05, top_shaping: float = 0.0, overwhelm_extra: float = 0.0):
        if n_envs % n_sub:
            raise ValueError("n_envs must be a multiple of n_sub")
        obs_space, act_space = _spaces(True)
        self.render_mode = None
        super().__init__(n_envs, obs_space, act_space)
        self.combos = [(s, x) for s in structures for x in sensors]
        self.train_seed = TRAIN_SEED_BASE + int(seed)
        self.subs = [_Sub(pop, table, n_envs // n_sub, step_size, top_shaping, overwhelm_extra) for _ in range(n_sub)]
        self.started = 0  # courses started, over all sub-batches
        self._actions = None
        self.stats = {"courses": 0, "patients": 0, "combos": {}}

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
            inf = [{} for _ in range(sub.n)]
            for j in np.flatnonzero(done):
                inf[j] = {"terminal_observation": term[j].astype(np.float32), "TimeLimit.truncated": False}
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
