"""The OpenXR session lifecycle as the runtime reports it, and what the session does about it.

Pure Python over state *names* (``"FOCUSED"``, ``"STOPPING"`` …, the ``XrSessionState`` enum's
names), so it is tested without a runtime; engine/xr.py feeds it the runtime's events.

The OpenXR specification's state machine (§ 9.3 "Session Lifecycle")::

    IDLE → READY → SYNCHRONIZED → VISIBLE → FOCUSED
                         ↑           ↑  ↓      ↓
                         └───────────┴── (losing focus / visibility)
    … → STOPPING → IDLE → (READY again | EXITING);  LOSS_PENDING at any time (runtime lost)

What each state asks of the app, and of a therapy session:

- READY: begin the session (xrBeginSession); STOPPING: end it (xrEndSession).
- FOCUSED is the only state in which the patient sees the scene *and* the controllers reach us.
  Leaving FOCUSED for any reason (headset taken off, a system menu, another app, STOPPING, the
  runtime going away) pauses to the calm scene and holds the intensity, in the frame the event
  is seen. Coming back to FOCUSED does **not** resume: only the therapist or the patient does.
- EXITING and LOSS_PENDING end the headset session (the session log is closed normally).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STATES = ("UNKNOWN", "IDLE", "READY", "SYNCHRONIZED", "VISIBLE", "FOCUSED", "STOPPING", "LOSS_PENDING",
          "EXITING")


@dataclass(frozen=True)
class LifecycleStep:
    """What to do after one state change: the calls the runtime expects, and the session's part."""

    state: str
    previous: str
    begin_session: bool = False
    end_session: bool = False
    pause: bool = False  # pause to the calm scene (focus lost while the exposure may be showing)
    exit: bool = False  # the headset session is over
    reason: str = ""


@dataclass
class Lifecycle:
    """Tracks the session state; :meth:`on_state` turns each change into a :class:`LifecycleStep`."""

    state: str = "UNKNOWN"
    running: bool = False  # between xrBeginSession and xrEndSession
    ever_focused: bool = False
    history: list[tuple[float, str]] = field(default_factory=list)
    pauses: int = 0

    @property
    def focused(self) -> bool:
        return self.state == "FOCUSED"

    @property
    def visible(self) -> bool:
        return self.state in ("VISIBLE", "FOCUSED")

    def on_state(self, state: str, t: float = 0.0) -> LifecycleStep:
        if state not in STATES:
            raise ValueError(f"unknown OpenXR session state {state!r}")
        prev, self.state = self.state, state
        self.history.append((t, state))
        step = {"state": state, "previous": prev}
        if state == "READY" and not self.running:
            self.running = True
            step["begin_session"] = True
        elif state == "STOPPING" and self.running:
            self.running = False
            step["end_session"] = True
        if state == "FOCUSED":
            self.ever_focused = True
        elif prev == "FOCUSED":
            self.pauses += 1
            step["pause"] = True
            step["reason"] = _WHY.get(state, f"headset session {state.lower()}")
        if state in ("EXITING", "LOSS_PENDING"):
            step["exit"] = True
            step.setdefault("reason", _WHY[state])
            if not step["reason"]:
                step["reason"] = _WHY[state]
        return LifecycleStep(**step)


_WHY = {
    "VISIBLE": "headset lost input focus (system menu or another app in front)",
    "SYNCHRONIZED": "headset not visible (taken off, or the runtime hid the app)",
    "STOPPING": "headset session stopping",
    "IDLE": "headset session idle",
    "EXITING": "headset session exiting",
    "LOSS_PENDING": "headset runtime lost",
}
