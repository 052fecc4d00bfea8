"""The arbiter: who drives the intensity. A therapist command always wins.

Modes:
    auto    the controller proposes, the shield judges, intensity follows
    manual  the therapist sets the level or intensity; the controller is not consulted
    hold    intensity stays where it is until the therapist says otherwise
    paused  the scene fades to the calm place; the exposure level is kept for resume
    stopped the session is over

Transitions (therapist commands): ``auto``, ``manual``, ``hold`` switch mode; ``set_level`` and
``set_intensity`` switch to manual; ``pause`` remembers the mode it left and ``resume`` returns
to it; ``stop`` ends the session from any mode. A patient's "stop at any time" key is a
``pause`` with origin ``patient``.
"""

from __future__ import annotations

AUTO, MANUAL, HOLD, PAUSED, STOPPED = "auto", "manual", "hold", "paused", "stopped"
MODES = (AUTO, MANUAL, HOLD, PAUSED, STOPPED)


class Arbiter:
    def __init__(self, mode: str = AUTO):
        if mode not in (AUTO, MANUAL, HOLD):
            raise ValueError(f"a session starts in auto, manual or hold, not {mode!r}")
        self.mode = mode
        self.before_pause = mode

    @property
    def controller_drives(self) -> bool:
        return self.mode == AUTO

    @property
    def paused(self) -> bool:
        return self.mode == PAUSED

    @property
    def stopped(self) -> bool:
        return self.mode == STOPPED

    def transition(self, command_type: str) -> tuple[str, str]:
        """Apply a mode-changing command; returns (mode before, mode after).

        Commands that do not change the mode (suds, annotate, …) leave it as it is. Any command
        but ``stop`` is refused once stopped (ValueError), and only ``resume``, ``stop`` and
        commands that do not drive intensity are accepted while paused.
        """
        before = self.mode
        if self.mode == STOPPED:
            raise ValueError("the session has stopped")
        t = command_type
        if t == "stop":
            self.mode = STOPPED
        elif t == "pause":
            if self.mode != PAUSED:
                self.before_pause = self.mode
                self.mode = PAUSED
        elif t == "resume":
            if self.mode != PAUSED:
                raise ValueError("resume: the session is not paused")
            self.mode = self.before_pause
        elif t in ("auto", "manual", "hold", "set_level", "set_intensity"):
            if self.mode == PAUSED:
                # Mode changes while paused take effect on resume; the calm scene stays.
                self.before_pause = MANUAL if t in ("set_level", "set_intensity") else t
            else:
                self.mode = MANUAL if t in ("set_level", "set_intensity") else t
        return before, self.mode
