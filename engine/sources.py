"""The table of HR sources a session can open, by URL scheme.

``sensors/`` owns real input (``ble://``, ``serial://``, ``socket://``); the virtual patient
(``sim://``) is the simulated world of the RL problem and lives in ``policy/sim/``; ``replay://``
reads session logs and lives in ``engine/research/``. Entries are ``"module:factory"`` strings,
imported only when their scheme is opened, so this table imports none of them.
"""

from __future__ import annotations

from sensors.source import HANDLERS

SOURCE_HANDLERS: dict[str, str] = {
    **HANDLERS,
    "sim": "policy.sim.source:open_sim",
    "replay": "engine.research.replay_source:open_replay",
}
