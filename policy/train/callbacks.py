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
