"""Fuzzing the console: 100,000 generated commands against a running session's app.

The ASGI app is driven in-process (the same app object the real uvicorn server serves), so the
run takes minutes, not hours; the WebSocket feed is read from the real server meanwhile. A seeded
generator covers every command type, wrong types, lone surrogates, control characters, huge
numbers, deep nesting, unknown fields and bytes that are not JSON. The oracle is the command
schema itself (``parse_command``) and JSON: each answer must be exactly what they say.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from engine.console.app import MAX_BODY, WS_SUBPROTOCOL
from engine.console.server import TOKEN_ENV
from engine.session.commands import COMMAND_TYPES, EVENT_KINDS, CommandError, parse_command
from tests.engine.console_support import base_url, live_console, records, step

N_COMMANDS = 100_000


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


ODD_TEXT = ["\ud800", "a\udfffb", "\x00", "\x07bell", "tab\tok", "line\nok", "\x1b[31mred", "\u202eevil",
            "é中😀", " ", "", "\x7f", "\u2028", "x" * 2000, "x" * 2001]
ODD_VALUES = [None, True, False, "", "3", [], {}, [1], {"a": 1}, -1, 0, 1, 2.5, 1e308, -1e308, 10**30,
              2**63, -(2**63), 0.1 + 0.2, 1e-320, 100, 100.0000001]


def _value(rng: random.Random):
    k = rng.random()
    if k < 0.3:
        return rng.choice(ODD_VALUES)
    if k < 0.5:
        return rng.uniform(-5, 105)
    if k < 0.7:
        return rng.randint(-3, 15)
    if k < 0.85:
        return rng.choice(ODD_TEXT)
    return _nested(rng, rng.randint(1, 60))


def _nested(rng, depth):
    x = rng.choice([1, "x", None])
    for _ in range(depth):
        x = [x] if rng.random() < 0.5 else {"k": x}
    return x


def _valid(rng: random.Random) -> dict:
    t = rng.choice(COMMAND_TYPES)
    if t == "set_level":
        return {"type": t, "level": rng.randint(0, 10)}
    if t == "set_intensity":
        return {"type": t, "intensity": rng.choice([0, 1, 0.0, 1.0, rng.random()])}
    if t == "suds":
        return {"type": t, "value": rng.choice([0, 100, rng.uniform(0, 100), rng.randint(0, 100)])}
    if t == "event":
        return {"type": t, "kind": rng.choice(EVENT_KINDS)}
    if t == "annotate":
        text = "".join(rng.choice("abc éλ中😀 \t\n.,") for _ in range(rng.randint(1, 40)))
        return {"type": t, "text": text if text.strip() else "note"}
    return {"type": t}


def generate(rng: random.Random) -> bytes:
    """One request body."""
    k = rng.random()
    if k < 0.35:
        return json.dumps(_valid(rng)).encode()
    if k < 0.75:  # a valid command with one field changed, added or dropped
        d = _valid(rng)
        op = rng.random()
        if op < 0.5:
            d[rng.choice(["level", "intensity", "value", "kind", "text"])] = _value(rng)
        elif op < 0.7:
            d[rng.choice(["origin", "extra", "Type", "level", ""])] = _value(rng)
        elif op < 0.85:
            d["type"] = rng.choice([*COMMAND_TYPES, "STOP", "stop ", "", None, 1, ["stop"], {"type": "stop"}])
        elif len(d) > 1:
            d.pop(rng.choice([k for k in d if k != "type"]))
        return json.dumps(d).encode()
    if k < 0.85:  # not an object, or not JSON at all
        return rng.choice([b"", b"{", b"nan", b"[]", b"null", b'"stop"', b"1e999", b"\xff\xfe{}", b"{'type':'stop'}",
                           b'{"type": "stop"', b'{"type": "annotate", "text": "\\ud800"}',
                           b'{"type": "suds", "value": 1' + b"0" * 400 + b"}",
                           b'{"type": "suds", "value": NaN}', b'{"type": "suds", "value": Infinity}'])
    if k < 0.93:  # deep nesting, in and out of the size limit
        depth = rng.choice([50, 500, 999, 1001, 5000, 9000])
        return b'{"type": "annotate", "text": ' + b"[" * depth + b"]" * depth + b"}"
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))


def expected(body: bytes, n_levels: int) -> tuple[int, dict | None]:
    """(status, payload logged) that the schema and JSON say this body must get."""
    if len(body) > MAX_BODY:
        return 413, None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return 400, None
    try:
        cmd = parse_command(data, "therapist", n_levels=n_levels)
    except CommandError:
        return 422, None
    return 202, cmd.payload()


class InProcess:
    """Calls the app as uvicorn would, without sockets."""

    def __init__(self, app, token: str, port: int):
        self.app = app
        self.headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", f"127.0.0.1:{port}".encode()),
                        (b"content-type", b"application/json")]

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [*self.headers, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)}
        done = False

        async def receive():
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        out = {"body": b""}

        async def send(m):
            if m["type"] == "http.response.start":
                out["status"], out["headers"] = m["status"], dict(m["headers"])
            elif m["type"] == "http.response.body":
                out["body"] += m.get("body", b"")

        await self.app(scope, receive, send)
        return out["status"], out["headers"], out["body"]


def test_100000_fuzzed_commands_no_5xx_state_and_feed_keep_working_every_202_logged(tmp_path):
    rng = random.Random(20261130)
    with live_console(tmp_path) as (s, h, c), ws_connect(
            base_url(h).replace("http://", "ws://") + "/ws", subprotocols=[WS_SUBPROTOCOL, f"bearer.{h.token}"],
            open_timeout=30, max_size=None) as w:
        assert json.loads(w.recv(timeout=30))["type"] == "hello"
        feed = {"states": 0, "last": None, "stopped": threading.Event()}

        def read_feed():  # as a browser tab does, all along
            try:
                for raw in w:
                    msg = json.loads(raw)
                    if msg["type"] in ("state", "end"):
                        feed["states"] += 1
                        feed["last"] = msg["state"]
                        if msg["state"]["mode"] == "stopped":
                            feed["stopped"].set()
            except ConnectionClosed:
                pass

        reader = threading.Thread(target=read_feed, daemon=True)
        reader.start()
        step(s)
        n_levels = len(s.hierarchy.levels)
        app = InProcess(h._app, h.token, h.port)
        tally: dict[int, int] = {}
        logged: list[dict] = []  # the payload of every 202, in order

        async def run():
            for i in range(N_COMMANDS):
                body = generate(rng)
                want, payload = expected(body, n_levels)
                if payload is not None and payload["type"] == "stop":  # keep the session going
                    body, payload = b'{"type": "pause"}', {"type": "pause"}
                status, headers, out = await app.request("POST", "/api/command", body)
                assert status < 500, (body[:80], status, out[:200])
                if status == 429:  # the note lane is full: a well-formed command that must wait
                    assert want == 202 and payload["type"] not in ("pause", "resume", "hold", "manual")
                else:
                    assert status == want, (body[:80], status, out[:200])
                detail = json.loads(out).get("detail")
                assert detail is None or ("\n" not in detail and len(detail) < 300)
                assert headers[b"cache-control"] == b"no-store"
                tally[status] = tally.get(status, 0) + 1
                if status == 202:
                    logged.append(payload)
                if i % 300 == 299:
                    step(s)
                if i % 2000 == 1999:
                    st, _, got = await app.request("GET", "/api/state")
                    assert st == 200 and json.loads(got)["t"] == s.core.t

        asyncio.run(run())
        states_during_fuzz = feed["states"]
        step(s)
        assert c.post("/api/command", json={"type": "stop"}).status_code == 202
        step(s)
        assert c.post("/api/command", json={"type": "pause"}).status_code == 409
        # the feed kept going all along, and shows the stop
        assert feed["stopped"].wait(60) and feed["last"]["mode"] == "stopped"
        assert states_during_fuzz > 20 and reader.is_alive()
        s.close("fuzz over")
        reader.join(30)
        rows = records(s.path, "commands")
    assert sum(tally.values()) == N_COMMANDS and 500 not in tally
    assert tally[202] > 30_000 and tally[422] > 30_000 and tally[400] > 1000 and tally[413] > 100
    assert len(rows) == len(logged) + 1  # + the final stop
    assert [json.loads(r["payload"]) for r in rows[:-1]] == logged
    assert all(r["accepted"] in (0, 1) for r in rows)
