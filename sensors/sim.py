"""``sim://``: a virtual patient who responds to the intensity the session shows.

Stand-in model until the full virtual-patient model lands (one model, shared with the
gymnasium env and the evaluator): fear follows a lagging drive from intensity with
within-session habituation; heart rate follows fear with a gain, plus a fear-independent
response to the scene; the chest strap reports integer bpm once a second with RR intervals
quantised to 1/1024 s, poor contact in the first seconds and occasional dropouts.

URL parameters: ``seed`` (int), ``sensor`` (``chest`` | ``optical``), ``dropout`` (probability
per second of a dropout starting, default 0.002).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .errors import SourceURLError
from .sample import Sample
from .source import Exposure, HRSource, register_scheme


class SimPatientSource(HRSource):
    clocked = True

    def __init__(self, url: str, seed: int = 0, sensor: str = "chest", dropout: float = 0.002,
                 wall0: float | None = None):
        super().__init__(url)
        if sensor not in ("chest", "optical"):
            raise SourceURLError(f"sim:// sensor must be chest or optical, not {sensor!r}")
        self.seed = seed
        self.sensor = sensor
        self.rng = np.random.default_rng(seed)
        r = self.rng
        self.rest_hr = float(np.clip(r.normal(72, 10), 48, 105))
        self.gain = float(np.exp(r.normal(np.log(15), 0.3)))
        self.midpoint = float(r.uniform(0.25, 0.7))
        self.slope = float(r.uniform(6, 12))
        self.half_life_s = float(np.exp(r.normal(np.log(480), 0.4)))
        self.dropout_p = dropout
        self.fear = 0.0  # 0..100
        self.habituation = 0.0
        self.hr = self.rest_hr
        self.exposure = Exposure(0.0, 0.0)
        self.next_t = 1.0
        self.wall0 = time.time() if wall0 is None else wall0
        self.dropout_until = -1.0
        self.contact_from = float(r.uniform(3, 20))

    def observe(self, exposure: Exposure) -> None:
        self.exposure = exposure

    def _advance(self, dt: float) -> None:
        u = 0.0 if self.exposure.paused else self.exposure.intensity
        v = 100.0 / (1.0 + math.exp(-self.slope * (u - self.midpoint)))
        drive = v * (1.0 - self.habituation)
        tau = 8.0 if drive > self.fear else 30.0
        self.fear += (drive - self.fear) * (1 - math.exp(-dt / tau))
        k = math.log(2) / self.half_life_s
        self.habituation += k * dt * (self.fear / 100.0) * (1 - self.habituation)
        target = self.rest_hr + self.gain * self.fear / 100.0 + 3.0 * u
        tau_hr = 5.0 if target > self.hr else 30.0
        self.hr += (target - self.hr) * (1 - math.exp(-dt / tau_hr))

    def suds(self, now: float) -> float | None:
        v = self.fear + self.rng.normal(0, 5)
        return float(np.clip(5 * round(v / 5), 0, 100))

    def poll(self, now: float) -> list[Sample]:
        out = []
        while self.next_t <= now:
            t = self.next_t
            self._advance(1.0)
            self.next_t += 1.0
            if t < self.dropout_until:
                continue
            if self.rng.random() < self.dropout_p:
                self.dropout_until = t + float(self.rng.uniform(2, 40))
                continue
            hr = self.hr + self.rng.normal(0, 1.0 if self.sensor == "chest" else 3.0)
            contact = t >= self.contact_from
            n_rr = int(round(hr / 60.0))
            rr = []
            for _ in range(n_rr):
                ms = 60000.0 / hr * (1 + 0.04 * math.sin(2 * math.pi * t / 4.5)) + self.rng.normal(0, 8)
                rr.append(round(ms * 1.024) / 1.024)  # 1/1024 s quantisation
            bpm = float(round(hr)) if contact else float(round(hr + self.rng.normal(0, 15)))
            out.append(Sample(t, self.wall0 + t, bpm, tuple(rr) if contact else (), contact,
                              self.url))
        return out


def _factory(target: str, params: dict[str, str], options: dict) -> HRSource:
    try:
        seed = int(params.get("seed", options.get("seed", 0) or 0))
        dropout = float(params.get("dropout", 0.002))
    except ValueError as e:
        raise SourceURLError(f"sim:// parameter is not a number: {e}") from None
    url = "sim://" + target + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
    return SimPatientSource(url, seed=seed, sensor=params.get("sensor", "chest"), dropout=dropout,
                            wall0=options.get("wall0"))


register_scheme("sim", _factory)
