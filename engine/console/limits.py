"""Limits for clients that do not hold the token: header size, header time, connections.

uvicorn gives us part of this: with the h11 protocol, ``h11_max_incomplete_event_size`` bounds
the bytes of an unfinished request head (httptools, uvicorn's default when installed, has no
such bound), and ``timeout_keep_alive`` closes idle connections *between* requests. It has no
bound on the time a client may take to send its first request head (a socket that connects and
says nothing stays open for ever), and ``limit_concurrency`` answers 503 to everyone once the
limit is reached — the therapist's stop included. So this module adds a small guard of its own:

* every connection must finish each request head within ``header_timeout_s`` (else closed);
* at most ``max_untrusted`` connections that have not yet shown the token are kept: a new one
  evicts the oldest of them, so a flood of idle or slow sockets can never lock the therapist
  out (their fresh connection gets through; the flood's old ones are dropped);
* at most ``max_connections`` in all (at most half the file descriptors the process has left when
  the console starts): beyond, a new connection is closed at once instead of exhausting them.

A connection becomes trusted when a request on it shows the token (``TokenGate`` calls
:meth:`ConnectionGuard.trust`); its WebSocket and keep-alive requests are then never evicted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import time
from collections import OrderedDict

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
HEADER_TIMEOUT_S = 10.0
MAX_UNTRUSTED = 32
MAX_CONNECTIONS = 128


def _fd_budget() -> int:
    """Connections the console may hold: at most half the descriptors the process has left."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: assume a quarter is in use
        in_use = soft // 4
    return max(8, min(MAX_CONNECTIONS, (soft - in_use) // 2))


class ConnectionGuard:
    """Bookkeeping of the console's open connections (used on the I/O loop only)."""

    def __init__(self, max_untrusted: int = MAX_UNTRUSTED, max_connections: int | None = None,
                 header_timeout_s: float = HEADER_TIMEOUT_S):
        self.max_untrusted = max_untrusted
        self.max_connections = max_connections or _fd_budget()
        self.header_timeout_s = header_timeout_s
        self._conns: OrderedDict[tuple, list] = OrderedDict()  # peer → [transport, trusted]
        self.stats = {"evicted": 0, "refused": 0, "header_timeouts": 0, "trusted": 0, "malformed": 0}
        self.log_every_s = 60.0
        self._malformed_logged = -math.inf
        self._malformed_unlogged = 0

    def malformed(self) -> None:
        """A request head that is not HTTP (answered 400): counted always, logged once a minute
        with the count, since any program on the machine could otherwise fill the terminal."""
        self.stats["malformed"] += 1
        self._malformed_unlogged += 1
        now = time.monotonic()
        if now - self._malformed_logged >= self.log_every_s:
            log.warning("console: %d malformed HTTP request(s) answered 400 since the last report; %d in all",
                        self._malformed_unlogged, self.stats["malformed"])
            self._malformed_logged = now
            self._malformed_unlogged = 0

    def _prune(self) -> None:
        for k in [k for k, (tr, _) in self._conns.items() if tr.is_closing()]:
            del self._conns[k]

    @property
    def open(self) -> int:
        self._prune()
        return len(self._conns)

    def opened(self, peer: tuple | None, transport: asyncio.BaseTransport) -> bool:
        """A new connection; False if it was closed at once."""
        self._prune()
        untrusted = [k for k, (_, trusted) in self._conns.items() if not trusted]
        if len(untrusted) >= self.max_untrusted:
            self._conns.pop(untrusted[0])[0].abort()  # the oldest that never showed the token
            self.stats["evicted"] += 1
        if len(self._conns) >= self.max_connections or peer is None:
            transport.abort()
            self.stats["refused"] += 1
            return False
        self._conns[peer] = [transport, False]
        return True

    def trust(self, peer) -> None:
        if peer is None:
            return
        entry = self._conns.get(tuple(peer))
        if entry is not None and not entry[1]:
            entry[1] = True
            self.stats["trusted"] += 1

    def closed(self, peer: tuple | None) -> None:
        if peer is not None:
            self._conns.pop(peer, None)


class _CountedMalformed:
    """uvicorn's logger as one protocol uses it, but for its warning per malformed request, which
    goes to the guard's count instead (logged there once in a while)."""

    MESSAGE = "Invalid HTTP request received."

    def __init__(self, logger: logging.Logger, guard: ConnectionGuard):
        self._logger, self._guard = logger, guard

    def warning(self, msg, *args, **kwargs) -> None:
        if msg == self.MESSAGE and not args:
            self._guard.malformed()
        else:
            self._logger.warning(msg, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._logger, name)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the guard's header deadline and connection bookkeeping.

    The guard is found on the uvicorn config (``config.connection_guard``), since uvicorn builds
    protocols from the config alone.
    """

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.guard: ConnectionGuard = config.connection_guard
        self._head_timer: asyncio.TimerHandle | None = None
        self.logger = _CountedMalformed(self.logger, self.guard)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.guard.opened(self._peer(), transport):
            self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()  # a request head is (still) expected: it must be complete in time
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # between requests uvicorn's keep-alive timeout applies; a head that then starts to
        # arrive gets the header deadline again (data_received)

    def connection_lost(self, exc) -> None:
        self._disarm()
        self.guard.closed(self._peer())
        super().connection_lost(exc)

    def _peer(self) -> tuple | None:
        return tuple(self.client) if self.client else None

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.guard.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request head h11 cannot parse (sent before the app sees the
        request): as uvicorn's, with the security headers every other response carries."""
        from engine.console.app import API_CSP, SECURITY_HEADERS

        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"), *SECURITY_HEADERS,
                   (b"content-security-policy", API_CSP.encode())]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=msg.encode("ascii")), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # h11 cannot answer in this state (a response already begun): just close
            pass
        self.transport.close()

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.guard.stats["header_timeouts"] += 1
            self.transport.abort()


class SecureWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, whose own answers to a handshake it refuses (400 to a
    malformed one, 403, 500) carry the security headers every other response carries.

    Those answers are built in several places of uvicorn and of websockets' ``ServerProtocol``;
    all of them go out through ``ServerProtocol.send_response``, which is wrapped here for this
    connection (uvicorn constructs the ServerProtocol itself, so it cannot be given a subclass).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        send_response = self.conn.send_response

        def send_secure_response(response) -> None:
            if response.status_code != 101:
                _secure(response.headers)
            send_response(response)

        self.conn.send_response = send_secure_response


def _secure(headers) -> None:
    from engine.console.app import API_CSP, SECURITY_HEADERS

    for name, value in (*SECURITY_HEADERS, (b"content-security-policy", API_CSP.encode())):
        if name.decode() not in headers:
            headers[name.decode()] = value.decode()
