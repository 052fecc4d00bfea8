"""Helpers for the console tests: a real session with its console, stepped by a simulated clock."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import httpx
import numpy as np

from engine.console import start_console  # noqa: E402
from engine.session.clock import SimClock
from engine.session.live import Session, SessionConfig
from engine.store.files import SessionReader
from policy.controllers import Controller, Proposal, register_controller

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Climb(Controller):
    """A controller that always asks for more: +0.1 at every tick-length decision."""

    name = "test-climb"
    version = "1"
    decision_interval = 0.25

    def propose(self, obs):
        n = len(obs.t)
        return Proposal(np.full(n, 0.1), np.zeros(n, dtype=int), ("climb",))


def register_test_controllers() -> None:
    register_controller("test-climb", Climb)


class GatedClock(SimClock):
    """Simulated time that advances only when the session sleeps, a little wall time per tick
    (a speed-limited simulation), and that a test can freeze between two ticks."""

    realtime = False

    def __init__(self, wall_per_tick: float = 0.01):
        super().__init__(0.0)
        self.wall_per_tick = wall_per_tick
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()  # set while frozen between two ticks

    def sleep_until(self, t, stop=None):
        ev = threading.Event() if stop is None else stop
        if not self.gate.is_set():
            self.waiting.set()
            while not self.gate.wait(0.02):
                if ev.is_set():
                    break
            self.waiting.clear()
        ev.wait(self.wall_per_tick)
        if t > self.t:
            self.t = t

    def freeze(self, timeout: float = 30.0) -> None:
        self.gate.clear()
        if not self.waiting.wait(timeout):
            raise TimeoutError("the session did not reach a tick boundary")

    def release(self) -> None:
        self.gate.set()


def make_session(tmp_path: Path, controller: str = "ladder", clock=None, seed: int = 3,
                 duration_s: float = 3600.0) -> Session:
    cfg = SessionConfig(scene="heights", sensor=f"sim://?seed={seed}", controller=controller,
                        display="none", duration_s=duration_s, speed="max", patient="P017",
                        sessions_dir=tmp_path / "sessions", console=("127.0.0.1", 0), seed=seed)
    return Session(cfg, clock=clock or SimClock(), start_console=start_console)


@contextlib.contextmanager
def live_console(tmp_path: Path, **kw):
    """A session with its console up (not stepped: the test steps it), and an authorised client."""
    s = make_session(tmp_path, **kw)
    try:
        s.start_io()
        h = s.console
        with httpx.Client(base_url=base_url(h), headers={"Authorization": f"Bearer {h.token}"},
                          timeout=30) as c:
            yield s, h, c
    finally:
        s.close("test over")


@contextlib.contextmanager
def running_session(tmp_path: Path, **kw):
    """A session running headless in a thread on a speed-limited simulated clock."""
    clock = GatedClock()
    s = make_session(tmp_path, clock=clock, **kw)
    s.start_io()
    result: dict = {}
    th = threading.Thread(target=lambda: result.setdefault("reason", s.run_headless()), daemon=True)
    th.start()
    try:
        yield s, clock, result
    finally:
        clock.release()
        s.stop_event.set()
        th.join(30)


def base_url(handle) -> str:
    return handle.url.split("/#")[0]


def step(session: Session, n: int = 1, dt: float = 0.25) -> None:
    for _ in range(n):
        t = session.clock.now() + dt
        session.clock.sleep_until(t)
        session.step(t)


def records(path: Path, kind: str) -> list[dict]:
    with SessionReader(path) as r:
        return r.records(kind)
