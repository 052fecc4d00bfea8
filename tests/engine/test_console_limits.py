"""Limits for clients without the token, against the real server on loopback: header size,
header time, idle and half-sent connections; the therapist's stop stays reachable."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
import textwrap

import pytest

from engine.console.limits import MAX_HEAD_BYTES, ConnectionGuard
from engine.console.server import TOKEN_ENV
from tests.engine.console_support import live_console, step


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


class Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def logs():
    k = Keep()
    names = ("asyncio", "uvicorn.error", "engine.console.app", "engine.console.limits")
    for n in names:
        logging.getLogger(n).addHandler(k)
    yield k
    for n in names:
        logging.getLogger(n).removeHandler(k)


def _connect(h) -> socket.socket:
    return socket.create_connection(("127.0.0.1", h.port), timeout=10)


def _send_until_closed(sock: socket.socket, chunk: bytes, limit: int) -> int:
    """Send ``chunk`` repeatedly until the server closes the connection; returns bytes sent."""
    sent = 0
    try:
        while sent < limit:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return sent
    return sent


def test_an_endless_request_head_is_cut_off_after_the_size_limit(tmp_path, logs):
    with live_console(tmp_path) as (s, h, c):
        sent = []
        socks = []
        for _ in range(4):
            sk = _connect(h)
            socks.append(sk)
            sk.sendall(b"GET /api/state HTTP/1.1\r\nHost: x\r\n")
            sent.append(_send_until_closed(sk, b"X-Pad: " + b"a" * 1000 + b"\r\n", 50 * 1024 * 1024))
        # each was refused (400 and closed) after about MAX_HEAD_BYTES, not 50 MiB later
        assert all(n < 4 * 1024 * 1024 for n in sent), sent
        for sk in socks:
            sk.close()
        assert c.get("/api/state").status_code == 200
    assert MAX_HEAD_BYTES == 16 * 1024


def test_a_silent_or_half_sent_connection_is_closed_after_the_header_time(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        guard: ConnectionGuard = h._app.state.guard
        guard.header_timeout_s = 0.3
        silent, half = _connect(h), _connect(h)
        half.sendall(b"GET /api/state HTTP/1.1\r\nHost: x\r\n")
        for sk in (silent, half):
            sk.settimeout(30)
            assert sk.recv(100) == b""  # closed by the server, with nothing sent
            sk.close()
        assert guard.stats["header_timeouts"] == 2
        # a client that shows the token is not affected: keep-alive requests go on
        assert c.get("/api/state").status_code == 200


def test_hundreds_of_half_sent_requests_cannot_lock_out_the_therapist(tmp_path, logs):
    with live_console(tmp_path) as (s, h, c):
        step(s)
        assert c.get("/api/state").status_code == 200  # the console tab's connection, trusted
        guard: ConnectionGuard = h._app.state.guard
        socks = []
        for _ in range(300):
            sk = _connect(h)
            sk.sendall(b"POST /api/command HTTP/1.1\r\nHost: x\r\nContent-Len")
            socks.append(sk)
        c.get("/api/state")  # let the server catch up with the connects
        assert guard.open <= guard.max_untrusted + 2
        assert guard.stats["evicted"] >= 300 - guard.max_untrusted
        # the already open tab and a fresh connection both reach the stop
        assert c.post("/api/command", json={"type": "pause"}).status_code == 202
        import httpx

        with httpx.Client(base_url=c.base_url, headers=dict(c.headers)) as fresh:
            assert fresh.post("/api/command", json={"type": "stop"}).status_code == 202
        step(s)
        assert s.core.snapshot()["mode"] == "stopped"
        for sk in socks:
            sk.close()
    assert [r for r in logs.records if r.levelno >= logging.ERROR] == []


HOLDER = textwrap.dedent("""
    import resource, socket, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port, n = int(sys.argv[1]), int(sys.argv[2])
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        except OSError:
            break
    print(len(socks), flush=True)
    sys.stdin.read()
""")


def test_more_idle_sockets_than_file_descriptors_leave_the_stop_reachable(tmp_path, logs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        with live_console(tmp_path) as (s, h, c):
            step(s)
            guard: ConnectionGuard = h._app.state.guard
            in_use = len(os.listdir("/proc/self/fd"))
            assert guard.max_connections <= (1024 - in_use) // 2 + 8  # half of what is left at most
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(h.port), "1100"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            try:
                opened = int(holder.stdout.readline())
                assert opened == 1100
                assert c.post("/api/command", json={"type": "stop"}, timeout=30).status_code == 202
                step(s)
                assert s.core.snapshot()["mode"] == "stopped"
                assert guard.open <= guard.max_connections
            finally:
                holder.stdin.close()
                holder.wait(30)
                holder.stdout.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [r for r in logs.records if r.levelno >= logging.ERROR] == []


def _raw_response(h, request: bytes) -> tuple[int, dict[str, str]]:
    """Send raw bytes and read the answer until the server closes: status and headers."""
    sk = _connect(h)
    sk.sendall(request)
    data = b""
    while chunk := sk.recv(65536):
        data += chunk
    sk.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = (headers.get(k.strip().lower(), "") + " " + v.strip()).strip()
    return int(head[0].split()[1]), headers


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
                                     b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
                                     b"POST /api/command HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"],
                         ids=["tls-hello", "bad-header-line", "bad-content-length"])
def test_the_servers_own_400_to_malformed_http_carries_the_security_headers(tmp_path, garbage, logs):
    with live_console(tmp_path) as (s, h, c):
        guard: ConnectionGuard = h._app.state.guard
        answers = [_raw_response(h, garbage) for _ in range(20)]
        assert all(a == answers[0] for a in answers)
        status, headers = answers[0]
        assert status == 400
        assert headers.get("cache-control") == "no-store"
        assert "frame-ancestors 'none'" in headers.get("content-security-policy", "")
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers.get("x-frame-options") == "DENY" and headers.get("x-content-type-options") == "nosniff"
        assert c.get("/api/state").status_code == 200  # the console goes on
        # counted, and said once (with the count), not once per request
        assert guard.stats["malformed"] == 20
    said = [r.getMessage() for r in logs.records if "malformed" in r.getMessage() or "Invalid HTTP" in r.getMessage()]
    assert said == ["console: 1 malformed HTTP request(s) answered 400 since the last report; 1 in all"]


WS_HEAD = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\n")


@pytest.mark.parametrize("handshake,status", [
    (WS_HEAD + b"Sec-WebSocket-Key: not-a-key\r\n\r\n", 400),  # answered by uvicorn/websockets
    (WS_HEAD + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example\r\n\r\n", 401),  # by us
], ids=["malformed", "foreign-origin"])
def test_a_refused_websocket_handshake_carries_the_security_headers(tmp_path, handshake, status):
    with live_console(tmp_path) as (s, h, c):
        got, headers = _raw_response(h, handshake)
        assert got == status
        assert headers.get("cache-control") == "no-store" and headers.get("x-frame-options") == "DENY"
        assert headers.get("content-security-policy", "").startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert c.get("/api/state").status_code == 200
