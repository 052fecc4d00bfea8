"""Many virtual patients as one SB3 ``VecEnv``: the fast way to train the policy.

Each lane is one virtual patient going through a course of sessions. The lanes are stepped
together by :class:`policy.dynamics.BatchSession` — the very dynamics a live headless session
and the evaluator run (ramps, loss-of-signal hold, features, SUDS delays) — with the safety
shield applied to every decision, exactly as in a session. One ``step`` is one decision of
the policy for every lane (every ``decision_interval`` seconds of simulated time); an
episode is a whole course, so the policy is rewarded for what a clinician measures after it.

The policy sees only what a live session sees (:class:`policy.learned.PolicyInput` over the
:class:`~policy.observation.Observation`); the reward uses the hidden state, which training
may: it is the change in the patient's expected post-course approach-test fear at the top
step (relative to before treatment), minus penalties for overwhelm seconds, escapes and
dropout, plus a bonus for a responder at the end of the course.

Lanes are split into sub-batches; every course each sub-batch draws new patients (keys from
a training seed namespace disjoint from validation and benchmark seeds) and takes the next
(structure, sensor) combination, so training mixes every model structure and both sensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from sensors.patient import model, noise
from sensors.patient.population import SENSORS, STRUCTURES, Population
from sensors.patient.scenes import SceneTable

from .controllers import Controller, Proposal
from .dynamics import BatchSession
from .learned import ACTION_NVEC, PolicyInput, decode_action
from .shield import SafetyShield

#: patients drawn for training come from seeds TRAIN_SEED_BASE + seed (never an evaluation seed in use)
TRAIN_SEED_BASE = 7_340_000


@dataclass(frozen=True)
class RewardConfig:
    learn: float = 10.0  # × change of (top-step post-test fear ÷ pre-treatment fear)
    overwhelm_s: float = 0.01  # per second of overwhelm
    escape: float = 1.0
    dropout: float = 3.0
    responder: float = 2.0  # at the end of the course
    fear_floor: float = 15.0  # disengagement: mean fear below this over a decision …
    low_fear: float = 0.0  # … costs this much per decision


class _Puppet(Controller):
    """Stands in the BatchSession's group; the VecEnv hands it the policy's proposal."""

    name = "policy"
    learned = True

    def propose(self, obs):  # pragma: no cover - never called: the VecEnv applies proposals itself
        raise RuntimeError("the VecEnv applies proposals directly")


class _Sub:
    """One sub-batch: a BatchSession of n lanes with one (structure, sensor)."""

    def __init__(self, pop: Population, table: SceneTable, n: int):
        self.pop, self.table, self.n = pop, table, n
        self.inp = PolicyInput()
        self.b: BatchSession | None = None

    def start_course(self, keys: np.ndarray, structure: str, sensor: str, seed: int):
        p = model.make_params(self.pop, keys, self.table.scene, structure=structure, sensor=sensor)
        self.b = BatchSession(p, self.table, [(_Puppet(), SafetyShield())], seed=seed)
        self.level_u = model.level_intensities(p, self.table)
        _, self.pre_top = model.approach_test(p, self.b.state, self.level_u[:, -1:], post=False)
        self.pre_top = np.maximum(self.pre_top, 1.0)
        self.phi = self._phi()
        self.session = -1
        self.structure, self.sensor = structure, sensor

    def _phi(self) -> np.ndarray:
        _, top = model.approach_test(self.b.p, self.b.state, self.level_u[:, -1:], post=True)
        return -top / self.pre_top

    def start_session(self, minutes: float) -> np.ndarray:
        self.session += 1
        self.b.start_session(60.0 * minutes)
        self.inp.reset(self.n)
        due = self.b.advance()
        if not due:
            raise RuntimeError("a session with no decision")
        return self.observe()

    def observe(self) -> np.ndarray:
        g = self.b.groups[0]
        self.obs = self.b.observation(g)
        return self.inp(self.obs)


class ExposureVecEnv(VecEnv):
    """``n_envs`` virtual patients (lanes) in ``n_sub`` sub-batches, one decision per step."""

    def __init__(self, pop: Population, table: SceneTable, n_envs: int = 64, n_sub: int = 4, seed: int = 0,
                 structures: tuple[str, ...] = STRUCTURES, sensors: tuple[str, ...] = SENSORS,
                 reward: RewardConfig | None = None, sessions: int | None = None, minutes: float | None = None):
        if n_envs % n_sub:
            raise ValueError("n_envs must be a multiple of n_sub")
        self.pop, self.table = pop, table
        self.rcfg = reward or RewardConfig()
        self.sessions = sessions or pop.sessions.count
        self.minutes = minutes or pop.sessions.minutes
        self.combos = [(s, x) for s in structures for x in sensors]
        self.train_seed = TRAIN_SEED_BASE + int(seed)
        self.subs = [_Sub(pop, table, n_envs // n_sub) for _ in range(n_sub)]
        self.course = 0
        dim = PolicyInput.dim
        obs_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        super().__init__(n_envs, obs_space, spaces.MultiDiscrete(list(ACTION_NVEC)))
        self._actions = None
        self.stats = {"courses": 0, "responders": 0, "dropouts": 0, "patients": 0}

    # ------------------------------------------------------------------ course plumbing
    def _new_course(self) -> np.ndarray:
        out = []
        m = self.subs[0].n
        for j, sub in enumerate(self.subs):
            first = (self.course * len(self.subs) + j) * m
            keys = noise.patient_keys(self.train_seed, np.arange(first, first + m))
            st, se = self.combos[(self.course * len(self.subs) + j) % len(self.combos)]
            sub.start_course(keys, st, se, seed=self.train_seed + self.course)
            out.append(sub.start_session(self.minutes))
        self.course += 1
        return np.concatenate(out).astype(np.float32)

    def reset(self) -> np.ndarray:
        return self._new_course()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs, len(ACTION_NVEC))

    def step_wait(self):
        rc = self.rcfg
        obs_out, rew_out = [], []
        course_over = False
        i = 0
        for sub in self.subs:
            act = self._actions[i:i + sub.n]
            i += sub.n
            b = sub.b
            st = b.state
            over0, esc0, fear0 = st.sess_over_s.copy(), st.escaped.copy(), st.sess_fear_sum.copy()
            vr0 = st.sess_vr_s.copy()
            delta, ask = decode_action(act, sub.obs)
            b.apply(b.groups[0], sub.obs, Proposal(delta, np.zeros(sub.n, int), ("policy",), ask_suds=ask))
            due = b.advance()
            st = b.state
            r = -rc.overwhelm_s * (st.sess_over_s - over0) - rc.escape * (st.escaped & ~esc0)
            if rc.low_fear:
                dv = np.maximum(st.sess_vr_s - vr0, 1.0)
                r -= rc.low_fear * (((st.sess_fear_sum - fear0) / dv) < rc.fear_floor) * (st.sess_vr_s > vr0)
            if not due:  # the session is over
                if sub.session < self.sessions - 1:
                    was = st.dropped.copy()
                    b.end_session()
                    r -= rc.dropout * (b.state.dropped & ~was)
                    phi = sub._phi()
                    r += rc.learn * (phi - sub.phi)
                    sub.phi = phi
                    obs_out.append(sub.start_session(self.minutes))
                else:
                    phi = sub._phi()
                    r += rc.learn * (phi - sub.phi)
                    sub.phi = phi
                    resp = ~b.state.dropped & (-phi <= 0.5)
                    r += rc.responder * resp
                    self.stats["responders"] += int(resp.sum())
                    self.stats["dropouts"] += int(b.state.dropped.sum())
                    self.stats["patients"] += sub.n
                    course_over = True
                    obs_out.append(sub.inp(sub.obs))
            else:
                phi = sub._phi()
                r += rc.learn * (phi - sub.phi)
                sub.phi = phi
                obs_out.append(sub.observe())
            rew_out.append(r)
        obs = np.concatenate(obs_out).astype(np.float32)
        rew = np.concatenate(rew_out).astype(np.float32)
        if course_over:
            # every sub-batch ends its course on the same step (same plan, same clock)
            self.stats["courses"] += 1
            dones = np.ones(self.num_envs, bool)
            infos = [{"terminal_observation": obs[k], "TimeLimit.truncated": False} for k in range(self.num_envs)]
            obs = self._new_course()
        else:
            dones = np.zeros(self.num_envs, bool)
            infos = [{} for _ in range(self.num_envs)]
        return obs, rew, dones, infos

    # ------------------------------------------------------------------ VecEnv boilerplate
    def close(self) -> None:
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._idx(indices))

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [getattr(self, method_name)(*args, **kwargs) for _ in self._idx(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._idx(indices))

    def _idx(self, indices):
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)

    def seed(self, seed=None):
        if seed is not None:
            self.train_seed = TRAIN_SEED_BASE + int(seed)
        return [seed] * self.num_envs
