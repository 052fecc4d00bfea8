"""``ExposureTherapy-v0``: graded exposure of one virtual patient over a course of sessions.

The env is a thin shell over the same pieces a live session runs: the virtual patient of
:mod:`policy.sim.patient.model` (the ``sim://`` source's model) and the session rules of
:mod:`policy.step` (the very code of the live session core: ramp, level, features, shield,
SUDS), stepped as a headless live session steps by :mod:`policy.sim.batch_session`. A policy trained here sees in a
live session exactly what it saw in training.

Construction
    ``gym.make("ExposureTherapy-v0", scene="heights", population=None, structure=None)``
    after ``engine.gym_env.register_gym_env()`` (which registers the id and loads the scene's hierarchy:
    ``policy/`` does not import ``scenes/``), or directly
    ``ExposureTherapyEnv(table=load_hierarchy("heights"))``.
    Other kwargs: ``sessions``/``minutes`` (override the population's session plan — short
    courses train faster), ``ask_suds`` (add the SUDS question to the action), ``step_size``.
    ``gym.make`` wraps the env in :class:`SafetyShieldWrapper` (the live safety shield) unless
    ``shield=False``.

Action space
    ``Discrete(3)``: 0 = step intensity down, 1 = hold, 2 = step up (by ``step_size``, 0.05).
    With ``ask_suds=True``: ``MultiDiscrete([3, 2])``, the second entry 1 = ask for a SUDS
    rating (answered 5 s later; asking costs the patient some immersion). The change moves the
    session's target intensity; intensity ramps toward it at the live session's rates.

Observation space
    ``Box(-10, 10, (18,), float32)``: :meth:`policy.observation.Observation.vector`, fields
    ``policy.observation.VECTOR_FIELDS`` — intensity, level fraction, time at level, HR rise
    over the resting baseline, HR slope, RMSSD, signal quality, signal lost, last SUDS, its
    age, share of time looking away, session time; then the course: session index, highest
    level, peak SUDS and peak HR rise of the previous session, minutes in VR so far in the
    course, return of fear at the start of this session (once its first SUDS answer came). No
    hidden state.

Steps and episodes
    One step = one decision: 5 s of session time (the patient advances every second, the
    session ticks every 0.25 s). Sessions last the plan's minutes; each session after the
    first resumes one level below the highest level reached in the one before (as
    ``exposure evaluate`` does). Between sessions part of the safety memory is lost and the
    patient may drop out. The episode ends (``terminated``) when the course is complete —
    the post-course approach test is then taken — or when the patient drops out. No
    truncation by the env itself.

Reward (per step)
    + 5 × the increase of treatment progress (mean over hierarchy levels of the fear removed
      by the safety memory, 0..1 scale) — learning;
    − 0.01 per second of overwhelm (fear above the patient's threshold or HR above 85% of the
      true max HR); − 1 per escape; − 3 on dropout;
    at course end: + 2 × (approach-test steps passed / steps) + 2 × (fear at the top step before
      − after) / 100.

Info
    ``fear`` (hidden; for analysis only), ``session``, ``overwhelm_s``, ``escaped``, ``dropped``,
    ``shield`` (intervention code, with the wrapper), ``cost`` (the safety cost of the step:
    overwhelm seconds + ``COST_PER_ESCAPE`` (30) × escapes, for constrained training), ``asked``
    (a SUDS question was asked: the shield allows one per 60 s), and at the end ``bat_steps``,
    ``top_suds``.

Seeding
    ``reset(seed=S)`` meets patient 0 of seed S: the same patient as ``sim://?seed=S`` and as
    patient 0 of ``exposure evaluate --seed S``; without a seed, each reset draws a new patient
    from ``self.np_random``.

Vectorised
    :class:`ExposureVecEnv` is an SB3 ``VecEnv`` of n patients in one numpy batch (same model,
    same dynamics); a lane whose course ends gets a new patient at the next session boundary.

Version history
    v0: first version (observation version ``policy.observation.OBS_VERSION`` = 1).
    Observation version 2 appends the course fields (18 instead of 12); the id is unchanged
    for now (see the manual, docs/courses.md).
"""

from __future__ import annotations

import numpy as np

try:
    import gymnasium as gym
    from gymnasium import spaces
except ModuleNotFoundError as e:  # pragma: no cover - gymnasium is a dependency
    raise ModuleNotFoundError("the exposure env needs gymnasium: pip install gymnasium") from e

from policy.controllers import Controller, Proposal
from policy.observation import (  # noqa: F401  (the env's action/observation encoding)
    DOWN,
    HOLD,
    OBS_HIGH,
    OBS_LOW,
    UP,
    VECTOR_FIELDS,
    Observation,
    action_to_delta,
    observation_vector,
)
from policy.shield import SafetyShield, ShieldResult
from policy.sim.batch_session import BatchSession, DynamicsConfig
from policy.sim.patient import model, noise
from policy.sim.patient.population import Population, load_population
from policy.step import SceneTable, course_start_level, first_course_context

ENV_ID = "ExposureTherapy-v0"
R_PROGRESS, R_OVERWHELM_S, R_ESCAPE, R_DROPOUT, R_BAT_STEPS, R_BAT_TOP = 5.0, 0.01, 1.0, 3.0, 2.0, 2.0
#: the safety cost of a step (info["cost"], for constrained training): overwhelm seconds + this × escapes
COST_PER_ESCAPE = 30.0


class ActionController(Controller):
    """A Controller from a function of observation vectors (n, 12) → env actions: how a policy
    trained on the env drives a live session, the evaluator or a replay."""

    decision_interval = 5.0

    def __init__(self, fn, name: str = "env-policy", step_size: float = 0.05, ask_suds: bool = False):
        self.fn, self.name, self.step_size, self.ask_suds = fn, name, step_size, ask_suds

    def propose(self, obs: Observation) -> Proposal:
        delta, ask = action_to_delta(self.fn(observation_vector(obs)), self.step_size, self.ask_suds)
        reason = np.where(delta > 0, 2, np.where(delta < 0, 0, 1))
        return Proposal(delta, reason, ("policy: step down", "policy: hold", "policy: step up"),
                        ask_suds=ask if self.ask_suds else None)


class _Seat(Controller):
    """The agent's seat in the batch: decides every 5 s; its proposals come from actions."""

    name = "agent"
    decision_interval = 5.0


class _Course:
    """n lanes of patients in courses, one decision per step: shared by the env and the VecEnv."""

    def __init__(self, table: SceneTable, pop: Population, n: int, sessions: int | None, minutes: float | None,
                 step_size: float, ask_suds: bool, config: DynamicsConfig | None = None):
        self.table, self.pop, self.n = table, pop, n
        self.K = sessions or pop.sessions.count
        self.duration = 60.0 * (minutes or pop.sessions.minutes)
        self.step_size, self.ask_suds = step_size, ask_suds
        self.cfg = config
        self.shield: SafetyShield | None = None

    def start(self, keys: np.ndarray, seed: int = 0) -> np.ndarray:
        p = model.make_params(self.pop, keys, self.table.scene)
        self.b = _CourseBatch(p, self.table, [(_Seat(), self.shield)], self.cfg, seed=seed)
        self.g = self.b.groups[0]
        self.level_u = model.level_intensities(p, self.table)
        self.pre = model.level_fears(p, self.b.state, self.level_u)
        self.progress = self._progress()
        self.course_session = np.zeros(self.n, int)
        self.b.start_session(self.duration)
        self.b.reset_counters()
        self.b.advance()
        return self._obs()

    def set_shield(self, shield: SafetyShield | None) -> None:
        self.shield = shield
        if hasattr(self, "g"):
            self.g.shield = shield
            if shield is not None:
                shield.reset(self.g.n)

    def _progress(self) -> np.ndarray:
        now = model.level_fears(self.b.p, self.b.state, self.level_u)
        return np.mean(self.pre - now, axis=1) / 100.0

    def _obs(self) -> np.ndarray:
        self.last_obs = self.b.observation(self.g)
        return observation_vector(self.last_obs)

    def step(self, action, new_keys=None):
        """Apply actions, run to the next decision. Returns obs, reward, done, info-arrays, res."""
        b = self.b
        delta, ask = action_to_delta(action, self.step_size, self.ask_suds)
        res: ShieldResult = b.apply(self.g, self.last_obs, Proposal(delta, np.zeros(self.n, int), ("agent",),
                                                                     ask_suds=ask))
        b.reset_counters()
        due = b.advance()
        over_s, esc = b.over_s.copy(), b.escapes.copy()
        reward = -R_OVERWHELM_S * over_s - R_ESCAPE * esc
        done = np.zeros(self.n, bool)
        info = {"fear": b.state.A.copy(), "overwhelm_s": over_s, "escaped": esc > 0,
                "session": self.course_session.copy(), "shield": res.code.copy(),
                # safety cost and SUDS questions (constrained training, the question budget)
                "cost": over_s + COST_PER_ESCAPE * esc,
                "asked": res.asked.copy() if res.asked is not None else np.zeros(self.n, bool)}
        bat = np.full(self.n, np.nan), np.full(self.n, np.nan)
        if not due:  # the session is over
            complete = self.course_session >= self.K - 1
            steps, top = model.approach_test(b.p, b.state, self.level_u, post=True)
            _, pre_top = model.approach_test(b.p, b.state, self.level_u, post=False)
            reward += np.where(complete, R_BAT_STEPS * steps / (len(self.table.intensities) - 1)
                               + R_BAT_TOP * np.maximum(pre_top - top, 0.0) / 100.0, 0.0)
            bat = (np.where(complete, steps, np.nan), np.where(complete, top, np.nan))
            start = b.levels[course_start_level(b.max_level)]
            ctx = b.next_course_context()
            drop = b.end_session() & ~complete
            reward -= R_DROPOUT * drop
            done = complete | drop | b.state.dropped
            self.course_session += 1
            if new_keys is not None and done.any():
                lanes = np.flatnonzero(done)
                keys = new_keys(len(lanes))
                b.p, b.state = model.replace_lanes(b.p, b.state, lanes, keys, self.pop)
                self.level_u[lanes] = model.level_intensities(b.p, self.table)[lanes]
                self.pre[lanes] = model.level_fears(b.p, b.state, self.level_u)[lanes]
                self.course_session[lanes] = 0
                start[lanes] = 0.0
                fresh = first_course_context(len(lanes), len(b.levels))
                for k, v in fresh.items():
                    ctx[k][lanes] = v
                self.progress = np.where(done, self._progress(), self.progress)
            b.course_ctx = ctx
            if new_keys is not None or not done.all():
                b.start_session(self.duration, start)
                b.reset_counters()
                b.advance()
        prog = self._progress()
        reward += np.where(done & (new_keys is not None), 0.0, R_PROGRESS * (prog - self.progress))
        self.progress = prog
        info["dropped"] = b.state.dropped.copy()
        info["bat_steps"], info["top_suds"] = bat
        return self._obs(), reward, done, info


class _CourseBatch(BatchSession):
    def reset_counters(self):
        self.over_s = np.zeros(self.p.n)
        self.escapes = np.zeros(self.p.n)

    def on_second(self, k, r):
        self.over_s += r.overwhelm
        self.escapes += r.escaped_now


def _spaces(ask_suds: bool):
    obs = spaces.Box(OBS_LOW, OBS_HIGH, (len(VECTOR_FIELDS),), np.float32)
    act = spaces.MultiDiscrete([3, 2]) if ask_suds else spaces.Discrete(3)
    return obs, act


class ExposureTherapyEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, table: SceneTable, population: str | Population | None = None, structure: str | None = None,
                 sessions: int | None = None, minutes: float | None = None, ask_suds: bool = False,
                 step_size: float = 0.05):
        pop = population if isinstance(population, Population) else load_population(population, structure)
        if structure:
            pop = pop.with_structure(structure)
        self.course = _Course(table, pop, 1, sessions, minutes, step_size, ask_suds)
        self.observation_space, self.action_space = _spaces(ask_suds)
        self.ask_suds = ask_suds
        self._started = False

    def set_shield(self, shield: SafetyShield | None) -> None:
        """Install the safety shield (see :class:`SafetyShieldWrapper`)."""
        self.course.set_shield(shield)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        pseed = seed if seed is not None else int(self.np_random.integers(2 ** 31))
        self.patient_seed = pseed
        obs = self.course.start(noise.patient_keys(pseed, 0), seed=pseed)
        self._started = True
        return obs[0], {"patient_seed": pseed}

    def step(self, action):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action).reshape(1, 2) if self.ask_suds else np.asarray([action])
        obs, r, done, info = self.course.step(a)
        terminated = bool(done[0])
        if terminated:
            self._started = False
        out = {k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in info.items()}
        out = {k: v for k, v in out.items() if not (isinstance(v, float) and v != v)}  # no NaN entries
        return obs[0], float(r[0]), terminated, False, out


class SafetyShieldWrapper(gym.Wrapper):
    """The live safety shield (one object, :class:`policy.shield.SafetyShield`) between the
    agent's action and the session, as in every live session. ``info["shield"]`` is its
    intervention code (0: none; see ``policy.shield.REASONS``)."""

    def __init__(self, env: gym.Env, shield: SafetyShield | None = None):
        super().__init__(env)
        self.shield = shield or SafetyShield()
        env.unwrapped.set_shield(self.shield)


try:
    from stable_baselines3.common.vec_env import VecEnv
except ModuleNotFoundError:  # pragma: no cover
    VecEnv = object


class OneBatchVecEnvMixin:
    """The VecEnv plumbing shared by every env here that is one numpy batch, not N sub-envs:
    attributes and methods belong to the batch, so a call is made once and its result repeated
    for each requested index."""

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._idx(indices))

    def set_attr(self, attr_name, value, indices=None):
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [getattr(self, method_name)(*args, **kwargs)] * len(self._idx(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._idx(indices))

    def _idx(self, indices):
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)


class ExposureVecEnv(OneBatchVecEnvMixin, VecEnv):
    """n patients at once over the same numpy model (an SB3 VecEnv). Lanes finish their course
    (or drop out) at session boundaries and then get a new patient. Shielded by default."""

    def __init__(self, table: SceneTable, n_envs: int = 64, population: str | Population | None = None,
                 structure: str | None = None, sessions: int | None = None, minutes: float | None = None,
                 ask_suds: bool = False, step_size: float = 0.05, seed: int = 0, shield: bool = True):
        pop = population if isinstance(population, Population) else load_population(population, structure)
        if structure:
            pop = pop.with_structure(structure)
        obs_space, act_space = _spaces(ask_suds)
        self.render_mode = None
        super().__init__(n_envs, obs_space, act_space)
        self.course = _Course(table, pop, n_envs, sessions, minutes, step_size, ask_suds)
        if shield:
            self.course.set_shield(SafetyShield())
        self._seed = seed
        self._next_patient = 0
        self._actions = None
        self.ask_suds = ask_suds

    def _keys(self, k: int) -> np.ndarray:
        idx = np.arange(self._next_patient, self._next_patient + k)
        self._next_patient += k
        return noise.patient_keys(self._seed, idx)

    def reset(self):
        self._next_patient = 0
        return self.course.start(self._keys(self.num_envs), seed=self._seed)

    def step_async(self, actions):
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, r, done, info = self.course.step(self._actions, new_keys=self._keys)
        infos = [{k: v[i] for k, v in info.items()} for i in range(self.num_envs)]
        for i in np.flatnonzero(done):
            infos[i]["terminal_observation"] = obs[i]  # the lane's next patient starts at this obs
        return obs, r.astype(np.float32), done, infos

    def seed(self, seed=None):
        self._seed = 0 if seed is None else int(seed)
        return [self._seed] * self.num_envs

    def close(self):
        pass

