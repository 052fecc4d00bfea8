"""A real `exposure sensors stream` child process whose stdout and stderr are read as they come."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from tests.conftest import ROOT, cli_env


class StreamChild:
    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env or cli_env())
        self.samples: list[dict] = []
        self.events: list[dict] = []
        self.other: list[str] = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, f, out: bool) -> None:
        for line in f:
            with self._cond:
                if line.startswith("{"):
                    d = json.loads(line)
                    d["_seen"] = time.monotonic()
                    (self.samples if out else self.events).append(d)
                else:
                    self.other.append(line.rstrip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def kinds(self) -> list[str]:
        with self._cond:
            return [e["event"] for e in self.events]

    def count(self, kind: str) -> int:
        return self.kinds().count(kind)

    def wait_for(self, pred, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        with self._cond:
            while not pred():
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise AssertionError(f"child exited ({self.proc.returncode}) before the condition held; "
                                         f"stderr: {self.other[-10:]} events: {self.kinds()[-10:]}")
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; events so far: {self.kinds()}; {len(self.samples)} samples;"
                                         f" stderr: {self.other[-10:]}")
                self._cond.wait(min(left, 0.5))

    def finish(self, timeout: float = 60.0) -> int:
        rc = None
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc
