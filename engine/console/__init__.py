"""The therapist console: a web page served by the running session (FastAPI + WebSocket).

``start_console(session, host, port)`` serves it on the session's background I/O loop and
returns a :class:`~engine.console.server.ConsoleHandle` (``.url``, ``.token``, ``.stop()``).
Nothing is imported until it is called: the web stack is loaded only when a console runs.

Security model (see the manual, docs/console.md):

* one random token per session (``secrets.token_urlsafe(32)``) or ``EXPOSURE_CONSOLE_TOKEN``;
* every API route, the OpenAPI document and the WebSocket need it (``Authorization: Bearer``;
  browsers offer it on the WebSocket as the subprotocol ``bearer.TOKEN``), compared in
  constant time; without it: 401;
* public, because a browser must load them before it can send a header: the page shell and its
  script and style sheet (``/``, ``/static/console.js``, ``/static/console.css``) and the API
  page shell (``/docs``) — the same files for every session, holding no data. The printed URL
  carries the token in its fragment (``#token=…``), which browsers never send to the server;
* the WebSocket and every state-changing request check ``Origin``: a page from another site
  gets 403 even with the token;
* loopback only unless ``--console HOST:PORT`` says otherwise.
"""

from __future__ import annotations


def start_console(session, host: str = "127.0.0.1", port: int = 8765):
    """Serve the console for ``session`` on its I/O loop; returns a handle (url, token, stop())."""
    from engine.console.server import start_console as _start

    return _start(session, host, port)


__all__ = ["start_console"]
