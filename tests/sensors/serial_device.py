"""A serial HR device emulator on a pseudo-terminal, published at a stable symlink.

``unplug()`` closes the pty (the reader sees the device vanish: EIO / "returned no data") and
removes the link; ``plug()`` makes a new pty at the same link path, as a USB device re-enumerating
under a udev symlink would.
"""

from __future__ import annotations

import os
import time
import tty
from pathlib import Path


class PtyDevice:
    def __init__(self, link: Path):
        self.link = Path(link)
        self.master: int | None = None
        self.slave: int | None = None
        self.plugs = 0

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self) -> None:
        if self.plugged:
            return
        m, s = os.openpty()
        tty.setraw(s)
        os.set_blocking(m, False)
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(os.ttyname(s), tmp)
        os.replace(tmp, self.link)
        self.master, self.slave = m, s
        self.plugs += 1

    def unplug(self) -> None:
        if not self.plugged:
            return
        if self.link.is_symlink():
            self.link.unlink()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master = self.slave = None

    def write(self, data: bytes, timeout: float = 10.0) -> None:
        """Write all of ``data``, waiting while the tty buffer is full; OSError once unplugged."""
        view = memoryview(data)
        end = time.monotonic() + timeout
        while view:
            fd = self.master
            if fd is None:
                raise OSError("device unplugged")
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                if time.monotonic() > end:
                    raise OSError("nobody is reading the device") from None
                time.sleep(0.002)
                continue
            view = view[n:]

    def line(self, text: str) -> None:
        self.write(text.encode() + b"\r\n")

    def close(self) -> None:
        self.unplug()
