"""Reconnect backoff shared by the live sources."""

from __future__ import annotations


class Backoff:
    """Reconnect delays: ``first``, doubling up to ``cap`` seconds; :meth:`reset` after success."""

    def __init__(self, first: float = 0.5, cap: float = 2.0):
        if not 0 < first <= cap:
            raise ValueError("backoff needs 0 < first <= cap")
        self.first, self.cap = first, cap
        self.next_delay = first

    def next(self) -> float:
        d = self.next_delay
        self.next_delay = min(self.cap, d * 2)
        return d

    def reset(self) -> None:
        self.next_delay = self.first
