"""Record sessions for the research tests: the real Session and core, driven by a simulated
clock, with a therapist script of commands (the console's commands, without the console)."""

from __future__ import annotations

import numpy as np

from engine.session.clock import SimClock
from engine.session.live import Session, SessionConfig

#: (session seconds, command) — every kind of command a therapist or patient sends
THERAPIST_SCRIPT = (
    (200.0, {"type": "ask_suds"}),
    (400.0, {"type": "set_level", "level": 3}),
    (520.0, {"type": "ask_suds"}),
    (600.0, {"type": "hold"}),
    (700.0, {"type": "auto"}),
    (900.0, {"type": "pause"}),
    (960.0, {"type": "resume"}),
    (1000.0, {"type": "annotate", "text": "patient says the railing helps"}),
    (1100.0, {"type": "event", "kind": "gust"}),
    (1200.0, {"type": "suds", "value": 40}),
    (1250.0, {"type": "resume"}),  # refused: not paused
    (1300.0, {"type": "set_intensity", "intensity": 0.95}),
    (1420.0, {"type": "auto"}),
)


def record(sessions_dir, duration_s: float = 1500.0, script=THERAPIST_SCRIPT, seed: int = 3,
           jitter: float = 0.0, tick_s: float = 0.25, controller: str = "ladder", sensor: str | None = None):
    """Run a session to its end; ``jitter`` > 0 makes tick times irregular like a real clock's
    (or a frame loop's). Returns the session file's path."""
    cfg = SessionConfig(scene="heights", sensor=sensor or f"sim://?seed={seed}", controller=controller,
                        display="none", duration_s=duration_s, speed="max", patient="P017",
                        sessions_dir=sessions_dir, console=None, seed=seed).validated()
    clock = SimClock()
    s = Session(cfg, clock=clock)
    rng = np.random.default_rng(seed)
    todo = sorted(script, key=lambda x: x[0])
    t, k = 0.0, 0
    while t < duration_s and not s.over:
        while todo and todo[0][0] <= t:
            _, cmd = todo.pop(0)
            s.core.push_command(cmd)
        s.step(t)
        k += 1
        t = min(duration_s, t + tick_s + float(rng.uniform(0, jitter)) if jitter else k * tick_s)
        clock.sleep_until(t)
    if not s.over:
        s.core.tick(duration_s)
    s.close("completed")
    return s.path
