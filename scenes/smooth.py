"""Rate-limited parameter changes: the scene follows its target parameters without popping.

Pure Python (no Panda3D): each parameter moves towards its target by at most its rate × dt.
"""

from __future__ import annotations

import math


class ParamSmoother:
    """Current scene parameters chasing target ones, each at most ``rates[name]`` per second
    (a parameter without a rate jumps straight to its target)."""

    def __init__(self, initial: dict[str, float], rates: dict[str, float]):
        self.current = dict(initial)
        self.target = dict(initial)
        self.rates = dict(rates)

    def set_target(self, target: dict[str, float]) -> None:
        self.target = dict(target)
        for k, v in target.items():
            self.current.setdefault(k, v)

    def snap(self) -> None:
        """Jump to the target (before the first frame is shown)."""
        self.current = dict(self.target)

    def step(self, dt: float) -> dict[str, float]:
        dt = max(0.0, float(dt))
        for k, tgt in self.target.items():
            cur = self.current[k]
            r = self.rates.get(k, math.inf)
            d = tgt - cur
            lim = r * dt
            self.current[k] = tgt if abs(d) <= lim else cur + math.copysign(lim, d)
        return self.current

    @property
    def settled(self) -> bool:
        return all(abs(self.current[k] - v) < 1e-9 for k, v in self.target.items())


class ShareMeter:
    """The share of recent time a condition held: an exponential average over ``window_s``."""

    def __init__(self, window_s: float = 30.0):
        self.window_s = float(window_s)
        self.value = math.nan

    def update(self, cond: bool, dt: float) -> float:
        x = 1.0 if cond else 0.0
        if math.isnan(self.value):
            self.value = x
        elif dt > 0:
            a = 1.0 - math.exp(-dt / self.window_s)
            self.value += a * (x - self.value)
        return self.value
