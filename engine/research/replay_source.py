"""``replay://SESSION``: a logged session's heart rate as an HR source.

A clocked source: :meth:`ReplaySource.poll` yields the logged samples (bpm, RR, contact, wall
time as recorded) when the session clock reaches their original time, so a session run on
``replay://`` sees the signal exactly as the live one did, at ``--speed`` N or max. It reads
the log through the store's :class:`~engine.store.SessionReader` — the same format the session
wrote. SESSION is an id, a unique id prefix, or a path; ids are looked up in ``?dir=`` or the
run's ``--sessions-dir``.

URL parameters: ``from`` (seconds into the log to start at; sample times shift by it),
``dir`` (sessions folder). SUDS questions are answered with the patient's most recent logged
rating (None before the first one). When the log runs out the source reports ``disconnected``
once (reason "end of the replayed log") and the session's loss-of-signal rules take over.

Registered from engine/ (sensors/ imports nothing of ours); engine/session.py imports this
module when a sensor URL starts with ``replay://``.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from engine.store.files import StoreError, find_session
from sensors.errors import SourceURLError
from sensors.sample import Sample
from sensors.source import HRSource


class ReplaySource(HRSource):
    clocked = True

    def __init__(self, url: str, path: Path, t_from: float = 0.0):
        super().__init__(url)
        from engine.research.replay import load_log

        try:
            log = load_log(path)
        except StoreError as e:
            raise SourceURLError(f"{url}: {e}") from None
        self.log = log
        self.problems = list(log.problems)
        self.t_from = t_from
        self.samples = [Sample(s.t - t_from, s.wall, s.bpm, s.rr_ms, s.contact, url)
                        for s in log.samples if s.t >= t_from]
        self._suds = [(x["t"] - t_from, float(x["value"])) for x in log.suds if x.get("origin") == "patient"]
        self._suds_t = [t for t, _ in self._suds]
        self._i = 0
        self._ended = False
        self.end_t = self.samples[-1].t if self.samples else 0.0

    def poll(self, now: float) -> list[Sample]:
        j = self._i
        while j < len(self.samples) and self.samples[j].t <= now:
            j += 1
        out = self.samples[self._i:j]
        self._i = j
        if j >= len(self.samples) and not self._ended and now > self.end_t:
            self._ended = True
            self.emit(now, "disconnected", reason="end of the replayed log")
        return out

    def suds(self, now: float) -> float | None:
        k = bisect.bisect_right(self._suds_t, now) - 1
        return self._suds[k][1] if k >= 0 else None


def _factory(target: str, params: dict[str, str], options: dict) -> HRSource:
    if not target:
        raise SourceURLError("replay:// needs a session: replay://SESSION_ID or replay:///path/to/file.session")
    try:
        t_from = float(params.get("from", 0) or 0)
    except ValueError:
        raise SourceURLError(f"replay:// parameter from={params.get('from')!r} is not a number of seconds") from None
    if not t_from >= 0:
        raise SourceURLError("replay:// parameter from must be ≥ 0")
    d = params.get("dir") or options.get("sessions_dir")
    if d is None:
        from engine.session.live import default_sessions_dir

        d = default_sessions_dir()
    try:
        path = find_session(Path(d), target)
    except StoreError as e:
        raise SourceURLError(f"replay://{target}: {e}") from None
    return ReplaySource(f"replay://{target}", path, t_from)


open_replay = _factory
