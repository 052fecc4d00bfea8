"""The one background asyncio loop (BLE, the console's web server) and the bridge that hands
samples from an async source to the session core.

Threads meet at named boundaries only: :meth:`BackgroundLoop.submit` runs a coroutine on the
loop (``run_coroutine_threadsafe``); samples and events come back through the core's queues.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future

log = logging.getLogger(__name__)


class BackgroundLoop:
    def __init__(self, name: str = "exposure-io"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._tasks: set = set()
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.loop.is_running():
            return

        async def _cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.submit(_cancel_all()).result(timeout)
        except Exception as e:  # noqa: BLE001 — shutting down; report and go on
            log.warning("stopping the I/O loop: %s", e)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()  # an unclosed loop warns (ResourceWarning) whenever it is collected


async def pump(source, core) -> None:
    """Feed every sample and event of an async source into the core until cancelled."""
    for ev in source.drain_events():
        core.push_event(ev.kind, **ev.detail)
    source.on_event = lambda ev: core.push_event(ev.kind, **ev.detail)
    try:
        async for s in source:
            core.push_sample(s)
    finally:
        source.on_event = None
