"""Training callbacks (stable-baselines3 ``BaseCallback``s, kept at module level as SB3 keeps its own).

Importing this module imports stable-baselines3 and torch: only :func:`policy.train.trainer.train`
does, when it trains.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from stable_baselines3.common.callbacks import BaseCallback


class TqdmProgress(BaseCallback):
    """A progress bar on stderr (SB3's own needs ``rich``)."""

    def __init__(self, total: int):
        super().__init__()
        self.total = total
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="step", file=sys.stderr, desc="train",
                        dynamic_ncols=True, mininterval=1.0)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class WallClockBudget(BaseCallback):
    """Stops training (returns False) once ``seconds`` of wall-clock time have passed since training
    started; the trainer then evaluates and writes the best actor so far, as after early stopping."""

    def __init__(self, seconds: float, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.seconds, self.log, self.clock = float(seconds), log, clock
        self.t0 = None
        self.stopped = False

    def _on_training_start(self) -> None:
        self.t0 = self.clock()

    def _on_step(self) -> bool:
        if self.clock() - self.t0 < self.seconds:
            return True
        self.stopped = True
        if self.log is not None:
            self.log(f"wall-clock budget of {self.seconds / 60:.0f} min reached at {self.num_timesteps} steps: "
                     "stopping")
        return False


class EvalAgainstBaselines(BaseCallback):
    """Every ``eval_every`` timesteps: the current actor against the baselines on the
    validation population. ``evaluate(model)`` gives the actor's metrics there and
    ``score(metrics)`` one number to rank them (``policy.train.trainer.score`` against the
    baselines' ``reference``). Keeps the best actor (``save()``); returns False — stopping
    training — after ``patience`` evaluations without improvement."""

    def __init__(self, eval_every: int, patience: int, evaluate: Callable[[object], dict],
                 score: Callable[[dict], float], reference: dict, save: Callable[[], None],
                 log: Callable[[str], None]):
        super().__init__()
        self.eval_every, self.patience = eval_every, patience
        self._evaluate, self._score, self.ref = evaluate, score, reference
        self.save, self.log = save, log
        self.best = -math.inf
        self.best_result: dict | None = None
        self.best_step = 0
        self.bad = 0
        self.history: list[dict] = []
        self.next_eval = eval_every
        self.stopped_early = False

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.eval_every
        return self.evaluate_now()

    def evaluate_now(self) -> bool:
        t0 = time.monotonic()
        res = self._evaluate(self.model)
        m = res["policy"]
        sc = self._score(m)
        self.history.append({"timesteps": int(self.num_timesteps), "score": sc,
                             "eval_seconds": round(time.monotonic() - t0, 1),
                             **{k: m[k] for k in ("responder_rate", "dropout_rate", "overwhelm_s_per_session")}})
        better = sc > self.best + 1e-9
        self.log(f"eval @ {self.num_timesteps}: responders {m['responder_rate']:.3f} "
                 f"(best baseline {self.ref['responder_rate']:.3f}), dropout {m['dropout_rate']:.3f}, "
                 f"overwhelm {m['overwhelm_s_per_session']:.1f} s/session, score {sc:.4f}"
                 + (" <- best" if better else ""))
        if better:
            self.best, self.best_result, self.best_step, self.bad = sc, res, int(self.num_timesteps), 0
            self.save()
        else:
            self.bad += 1
            if self.bad >= self.patience:
                self.log(f"no improvement in {self.bad} evaluations: stopping early")
                self.stopped_early = True
                return False
        return True


class LagrangeMultiplier(BaseCallback):
    """PPO-Lagrangian's multiplier, adapted once per rollout (Ray, Achiam & Amodei 2019,
    "Benchmarking Safe Exploration in Deep Reinforcement Learning"; the update as in OmniSafe's
    ``omnisafe/common/lagrange.py``: gradient ascent on λ·(J_c − budget), λ projected to
    [0, ``upper``]).

    Written here rather than taken from OmniSafe or safety-gym: both bring their own PPO, envs and
    torch training loop; this project trains with stable-baselines3's PPO, so the multiplier is a
    callback over SB3's rollouts and the env applies it (``MixedVecEnv.cost_multiplier``). With one
    critic the Lagrangian enters as the reward ``(r − λ·c) / (1 + λ)`` — OmniSafe's scaled
    advantage ``(A_r − λ·A_c) / (1 + λ)`` with a shared value function.

    J_c is the safety cost (each lane's ``info["cost"]``: overwhelm seconds + 30 × escapes) per session
    (``steps_per_session`` decisions) over the rollouts of the last session's worth of steps: the
    training lanes run their sessions in lockstep, so one rollout's cost depends on where in the
    session it falls (calm starts, demanding ends) more than on the policy; ``budget`` is the
    allowed cost per session.
    :attr:`curve` records, per rollout, the timesteps, J_c and λ (for the model card).

    It also fits the **cost estimate** the live policy logs with each decision: a ridge regression
    of the cost over the next ``horizon`` decisions on the normalised observation, from the rollouts
    (the most recent weighing most). :meth:`cost_model` gives its weights for the bundle.
    """

    def __init__(self, budget: float, lr: float = 0.005, init: float = 0.0, upper: float = 2.0,
                 steps_per_session: float = 480.0, horizon: int = 12, log: Callable[[str], None] | None = None):
        super().__init__()
        if not (budget >= 0 and lr > 0 and init >= 0 and upper >= init and steps_per_session > 0 and horizon >= 1):
            raise ValueError("LagrangeMultiplier: budget ≥ 0, lr > 0, 0 ≤ init ≤ upper, steps_per_session > 0, "
                             "horizon ≥ 1")
        self.budget, self.lr, self.upper = float(budget), float(lr), float(upper)
        self.lam = float(init)
        self.steps_per_session, self.horizon = float(steps_per_session), int(horizon)
        self.log = log
        self.curve: list[dict] = []
        self._cost: list = []
        self._recent: list[tuple[float, int]] = []  # (cost sum, lane-steps) of the recent rollouts
        self._xtx = None
        self._xty = None

    def _on_training_start(self) -> None:
        self.training_env.set_attr("cost_multiplier", self.lam)

    def _on_rollout_start(self) -> None:
        self._cost = []

    def _on_step(self) -> bool:
        import numpy as np

        self._cost.append(np.array([i.get("cost", 0.0) for i in self.locals["infos"]], dtype=float))
        return True

    def _on_rollout_end(self) -> None:
        import numpy as np

        if not self._cost:
            return
        c = np.stack(self._cost)  # (steps, lanes)
        jc = self.session_cost(c)
        self.lam = self.update(self.lam, jc)
        self.training_env.set_attr("cost_multiplier", self.lam)
        self.curve.append({"timesteps": int(self.num_timesteps), "cost_per_session": round(jc, 4),
                           "multiplier": round(self.lam, 5)})
        if self.log is not None and len(self.curve) % 10 == 1:
            self.log(f"rollout {len(self.curve)} @ {self.num_timesteps}: safety cost {jc:.2f} per session "
                     f"(budget {self.budget:g}), multiplier {self.lam:.4f}")
        self._fit(c)

    def session_cost(self, c) -> float:
        """J_c after a rollout of costs ``c`` (steps, lanes): the cost per session over this and the
        rollouts before it, one session's worth of steps at most."""
        self._recent.append((float(c.sum()), c.size))
        while sum(n for _, n in self._recent[1:]) >= self.steps_per_session * c.shape[1]:
            self._recent.pop(0)
        return sum(x for x, _ in self._recent) / sum(n for _, n in self._recent) * self.steps_per_session

    def update(self, lam: float, jc: float) -> float:
        """One step of gradient ascent on λ·(J_c − budget), projected to [0, upper]."""
        return float(min(self.upper, max(0.0, lam + self.lr * (jc - self.budget))))

    def _fit(self, c) -> None:
        import numpy as np

        buf = self.model.rollout_buffer
        obs = np.asarray(buf.observations, dtype=float)  # (steps, lanes, dim), already normalised
        starts = np.asarray(buf.episode_starts, dtype=bool)
        T, H = c.shape[0], self.horizon
        if T <= H or obs.shape[:2] != c.shape:
            return
        cs = np.concatenate([np.zeros((1, c.shape[1])), np.cumsum(c, axis=0)])
        y = cs[H:T] - cs[:T - H]  # cost over the next H decisions from each step with a full window
        st = np.concatenate([np.zeros((1, c.shape[1])), np.cumsum(starts, axis=0)])
        ok = (st[H + 1:T + 1] - st[1:T - H + 1]) == 0  # no new episode inside the window
        x = obs[:T - H][ok]
        x = np.hstack([x, np.ones((len(x), 1))])
        xtx, xty = x.T @ x, x.T @ y[ok]
        if self._xtx is None:
            self._xtx, self._xty = xtx, xty
        else:  # older rollouts weigh less: the policy, and so the cost, moves on
            self._xtx, self._xty = 0.7 * self._xtx + xtx, 0.7 * self._xty + xty

    def cost_model(self, decision_s: float = 5.0) -> dict | None:
        """The cost estimate's weights (over the normalised inputs, then the intercept), or None."""
        import numpy as np

        if self._xtx is None:
            return None
        d = self._xtx.shape[0]
        reg = 1e-3 * np.trace(self._xtx) / d
        wb = np.linalg.solve(self._xtx + reg * np.eye(d), self._xty)
        return {"w": [float(v) for v in wb[:-1]], "b": float(wb[-1]), "horizon_s": self.horizon * decision_s,
                "what": "expected overwhelm seconds + 30 × escapes over the next horizon_s seconds "
                        "(ridge regression on the training rollouts)"}
