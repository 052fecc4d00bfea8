"""``sim://``: one virtual patient who responds to what the session shows.

The same model as the gymnasium env and the evaluator (:mod:`policy.sim.patient.model`), with
N = 1: patient 0 of the default population drawn with ``seed``, in its first session — or, in
the next session of a course, the same patient continued from the state the previous session
ended in (``course_state``, logged by the live session; then :func:`model.next_session`, as the
evaluator does between sessions). The
patient advances on whole seconds and, during each second, feels the last exposure the
session showed before it (scene parameters → effective intensity with the patient's own
weights; a pending SUDS question costs immersion). The sensor reports integer bpm once a
second with RR intervals in 1/1024 s (chest strap: poor contact in the first minute;
optical: lagging and noisier, gaps with movement), with Bluetooth dropouts. The share of
time looking down/away is reported as behaviour; SUDS answers come when asked. When the
patient escapes (takes off the headset) an ``escape`` event is emitted.

URL parameters: ``seed`` (int), ``sensor`` (``chest`` | ``optical``; default: the
population's), ``dropout`` (probability per second of a Bluetooth dropout starting, default
0.0004), ``population`` (a population TOML file), ``structure`` (a model structure).
"""

from __future__ import annotations

import time
from dataclasses import fields, replace

import numpy as np

from policy.sim.patient import model, noise
from policy.sim.patient.population import PopulationError, load_population
from sensors.errors import SourceURLError
from sensors.sample import Sample
from sensors.source import Exposure, HRSource


class SimPatientSource(HRSource):
    clocked = True

    def __init__(self, url: str, seed: int = 0, sensor: str | None = None, dropout: float = 0.0004,
                 wall0: float | None = None, scene: str = "heights", population: str | None = None,
                 structure: str | None = None, index: int = 0, session: int = 0,
                 course_state: dict | None = None):
        super().__init__(url)
        if sensor not in (None, "chest", "optical"):
            raise SourceURLError(f"sim:// sensor must be chest or optical, not {sensor!r}")
        if not 0.0 <= dropout <= 1.0:
            raise SourceURLError(f"sim:// dropout must be a probability in [0, 1], not {dropout!r}")
        try:
            pop = load_population(population, structure)
            self.params = model.make_params(pop, noise.patient_keys(seed, index), scene, sensor=sensor,
                                            dropout_per_s=dropout)
        except (PopulationError, model.ModelError) as e:
            raise SourceURLError(f"sim://: {e}") from None
        self.seed = seed
        self.sensor = self.params.sensor
        self.session = session
        self.state = model.initial_state(self.params)
        self._identity = {"url": url, "seed": seed, "index": index, "scene": scene}
        #: True when this session continues the virtual patient of the previous session of a course
        self.continued = False
        if course_state is not None and all(course_state.get(k) == v for k, v in self._identity.items()):
            self._continue(course_state)
        self.exposure = Exposure(0.0, 0.0, scene)
        self.next_t = 1.0
        self.wall0 = time.time() if wall0 is None else wall0
        self.look_away: float | None = None

    def _continue(self, prev: dict) -> None:
        # the next session of the same virtual patient: the state the previous session ended
        # in, then what happens between sessions (model.next_session), as in the evaluator
        cur = self.state
        kw = {}
        for f in fields(cur):
            like = getattr(cur, f.name)
            kw[f.name] = np.asarray([prev["state"][f.name]], dtype=like.dtype).reshape(like.shape)
        done = int(prev["session"])
        self.state, _ = model.next_session(self.params, replace(cur, **kw), done)
        self.session = done + 1
        self.continued = True

    def course_state(self) -> dict:
        """The virtual patient's hidden state now, for the next session of a course (written to
        the session's metadata by the live session; a simulation's, never a real patient's)."""
        st = {f.name: getattr(self.state, f.name)[0].tolist() for f in fields(self.state)}
        return {**self._identity, "session": self.session, "state": st}

    @property
    def fear(self) -> float:
        """The hidden fear (for tests and the oracle; never shown to a controller)."""
        return float(self.state.A[0])

    def observe(self, exposure: Exposure) -> None:
        self.exposure = exposure

    def _u(self) -> np.ndarray:
        e = self.exposure
        x = np.array([0.0 if e.paused else e.intensity])
        prm = None if e.params is None or e.paused else {k: np.array([v]) for k, v in e.params.items()}
        return model.effective_intensity(self.params, x, prm)

    def suds(self, now: float) -> float | None:
        return float(model.suds(self.params, self.state, self.session, int(round(now * 1000)))[0])

    def behaviour(self, now: float) -> dict | None:
        return None if self.look_away is None else {"look_away": self.look_away}

    def poll(self, now: float) -> list[Sample]:
        out = []
        while self.next_t <= now:
            t = self.next_t
            k = int(round(t))
            was = bool(self.state.escaped[0])
            self.state, r = model.step(self.params, self.state, self._u(),
                                       np.array([bool(self.exposure.asked_suds)]), self.session, k)
            self.next_t += 1.0
            self.look_away = float(r.look_away[0])
            if bool(self.state.escaped[0]) and not was:
                self.emit(t, "escape", fear=round(float(r.fear[0]), 1))
            if np.isnan(r.bpm[0]):
                continue
            rr = tuple(float(x) for x in r.rr[0] if not np.isnan(x))
            c = int(r.contact[0])
            out.append(Sample(t, self.wall0 + t, float(r.bpm[0]), rr, None if c < 0 else bool(c), self.url))
        return out


def _factory(target: str, params: dict[str, str], options: dict) -> HRSource:
    try:
        seed = int(params.get("seed", options.get("seed", 0) or 0))
        dropout = float(params.get("dropout", 0.0004))
    except ValueError as e:
        raise SourceURLError(f"sim:// parameter is not a number: {e}") from None
    url = "sim://" + target + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
    return SimPatientSource(url, seed=seed, sensor=params.get("sensor"), dropout=dropout,
                            wall0=options.get("wall0"), scene=options.get("scene") or "heights",
                            population=params.get("population"), structure=params.get("structure"),
                            course_state=options.get("course_state"))


open_sim = _factory
