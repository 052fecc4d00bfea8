"""Where the console of a running ``exposure run`` is, read from its standard output."""

from __future__ import annotations


def console_address(lines) -> tuple[str, str]:
    """(url, token) from the lines ``exposure run`` prints at start (``console:`` then ``console token:``)."""
    url = None
    for line in lines:
        if line.startswith("console:"):
            url = line.split(None, 1)[1].strip()
        if line.startswith("console token:"):
            return url, line.split(None, 2)[2].strip()
    raise RuntimeError("the session printed no console address")
