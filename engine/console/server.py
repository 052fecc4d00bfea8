"""Serving the console: the token, the socket, uvicorn on the session's I/O loop, shutdown."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

from engine.session.live import ConfigError

log = logging.getLogger(__name__)

TOKEN_ENV = "EXPOSURE_CONSOLE_TOKEN"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-.~]{16,256}$")
START_TIMEOUT_S = 10.0


def make_token(env: dict | None = None) -> str:
    """The session's token: ``EXPOSURE_CONSOLE_TOKEN`` if set, else 256 random bits."""
    env = os.environ if env is None else env
    tok = env.get(TOKEN_ENV)
    if tok is None or tok == "":
        return secrets.token_urlsafe(32)
    if not TOKEN_RE.match(tok):
        raise ConfigError(f"{TOKEN_ENV} must be 16-256 characters of A-Z a-z 0-9 _ - . ~ "
                          "(it travels in a URL fragment and a WebSocket subprotocol)")
    return tok


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PORT_TRIES = 20


def bind(host: str, port: int, tries: int = PORT_TRIES) -> socket.socket:
    """Listen on ``host:port``; when that port is taken, on the next free one of the following
    ``tries - 1`` (the URL printed at start is the truth). Port 0 picks any free port."""
    err = None
    for p in ([0] if port == 0 else range(port, min(port + tries, 65536))):
        try:
            sock = _bind(host, p)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise ConfigError(f"--console {host}:{port}: cannot listen there ({e.strerror}); "
                                  "choose another with --console HOST:PORT, or --console off") from None
            err = e
            continue
        if p != port and port != 0:
            log.warning("console port %d is in use; listening on %d instead", port, p)
        return sock
    last = min(port + tries, 65536) - 1
    raise ConfigError(f"--console {host}:{port}: ports {port}-{last} are all in use ({err.strerror if err else ''}); "
                      "choose another with --console HOST:PORT, or --console off")


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"--console {host}:{port}: cannot resolve {host!r} ({e.strerror})") from None
    err: OSError = OSError(errno.EADDRNOTAVAIL, "no address")
    for family, typ, proto, _, addr in infos:
        sock = socket.socket(family, typ, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(64)
            sock.setblocking(False)
            return sock
        except OSError as e:
            sock.close()
            err = e
    raise err


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    if ":" in host:
        return f"[{host}]"
    return host


@dataclass
class ConsoleHandle:
    """A running console: where it is, its token, and how to stop it."""

    host: str
    port: int
    token: str
    _server: object = field(repr=False, default=None)
    _io: object = field(repr=False, default=None)
    _serve: object = field(repr=False, default=None)
    _sampler: object = field(repr=False, default=None)
    _app: object = field(repr=False, default=None)
    _state: object = field(repr=False, default=None)
    _stopped: bool = field(repr=False, default=False)

    @property
    def base_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def url(self) -> str:
        """The page to open; the token rides in the fragment, which browsers never send."""
        return f"{self.base_url}/#token={self.token}"

    def __repr__(self) -> str:  # never print the token by accident
        return f"ConsoleHandle({self.base_url})"

    def stop(self, timeout: float = 5.0) -> None:
        """Tell every open page the session ended, close them, and stop the server."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._io.submit(self._shutdown()).result(timeout)
        except Exception as e:  # noqa: BLE001 — shutting down; report and go on
            log.warning("stopping the console: %s", e)
        try:
            self._serve.result(timeout)
        except Exception as e:  # noqa: BLE001
            log.warning("console server did not stop cleanly: %s", e)

    async def _shutdown(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        st = self._state
        st.sample()
        final = {"type": "end", "state": st.state()}
        for ws in list(self._app.state.clients):
            try:
                await ws.send_json(final)
                await ws.close(1000, "session ended")
            except Exception:  # noqa: BLE001, S112 — a page already gone
                continue
        self._server.should_exit = True


def start_console(session, host: str = "127.0.0.1", port: int = 8765) -> ConsoleHandle:
    """Serve the console for ``session`` on ``session.io`` (the background asyncio loop)."""
    try:
        import uvicorn

        from engine.console.app import ConsoleState, build_app
        from engine.console.limits import MAX_HEAD_BYTES, ConnectionGuard, GuardedH11Protocol, SecureWebSocketProtocol
    except ModuleNotFoundError as e:
        raise ConfigError(f"the therapist console needs {e.name}: pip install fastapi 'uvicorn[standard]' "
                          "(or run with --console off)") from None
    if session.io is None:
        raise ConfigError("the console needs the session's I/O loop: call session.start_io()")
    token = make_token()
    sock = bind(host, port)
    port = sock.getsockname()[1]
    if not is_loopback(host):
        log.warning("the console listens on %s:%d, reachable from the network; only the token protects "
                    "it and traffic is not encrypted (no TLS)", host, port)
    names = {"127.0.0.1", "localhost", "[::1]", _url_host(host)}
    origins = {f"http://{n}:{port}" for n in names}
    state = ConsoleState(session)
    guard = ConnectionGuard()
    state.guard = guard
    app = build_app(state, token, origins, mirror=lambda: session.mirror_png, guard=guard)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws=SecureWebSocketProtocol,
                            access_log=False, timeout_graceful_shutdown=2, server_header=False,
                            http=GuardedH11Protocol, h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                            timeout_keep_alive=5,
                            # asyncio accepts up to `backlog` sockets in one go before any protocol
                            # (and our guard) sees them: a small batch keeps a flood below the budget
                            backlog=64)
    config.connection_guard = guard  # read by GuardedH11Protocol (uvicorn builds protocols from the config)
    server = uvicorn.Server(config)
    handle = ConsoleHandle(host, port, token, _server=server, _io=session.io, _app=app, _state=state)

    async def sample_forever():
        while True:
            try:
                state.sample()
            except Exception as e:  # noqa: BLE001 — the console must never take the session down
                log.warning("console history: %s", e)
            await asyncio.sleep(0.5)

    async def start_sampler():
        return asyncio.ensure_future(sample_forever())

    handle._sampler = session.io.submit(start_sampler()).result(START_TIMEOUT_S)
    handle._serve = session.io.submit(server.serve(sockets=[sock]))
    t0 = time.monotonic()
    problem = None
    while not server.started:
        if handle._serve.done():
            problem = f"the console did not start: {handle._serve.exception()}"
        elif time.monotonic() - t0 > START_TIMEOUT_S:
            problem = f"the console did not start within {START_TIMEOUT_S:g} s"
        if problem:
            handle.stop(timeout=2.0)
            sock.close()
            raise ConfigError(problem)
        time.sleep(0.01)
    return handle
