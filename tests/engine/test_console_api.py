"""The console's HTTP and WebSocket API against a real session (simulated clock, real server)."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from engine.console.app import WS_SUBPROTOCOL
from engine.console.server import TOKEN_ENV, make_token
from engine.session.commands import COMMAND_TYPES, CommandError, parse_command
from engine.session.live import ConfigError
from tests.engine.console_support import base_url, live_console, records, step

ROUTES = [("GET", "/api/state"), ("GET", "/api/session"), ("GET", "/api/history"),
          ("GET", "/api/mirror.png"), ("POST", "/api/command"), ("GET", "/openapi.json"),
          ("GET", "/docs/oauth2-redirect"), ("GET", "/nope"), ("POST", "/"), ("DELETE", "/api/state"),
          ("GET", "/static/../api/state"), ("GET", "/static/index.html")]


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def _ws_url(h) -> str:
    return base_url(h).replace("http://", "ws://") + "/ws"


def _warm(s, c, need_bpm=True):
    """Step the session until the sensor gives a heart rate."""
    for _ in range(400):
        step(s, 4)
        if not need_bpm or s.core.snapshot()["bpm"] is not None:
            return
    raise AssertionError("no heart rate after 400 s of simulated session")


# ------------------------------------------------------------------------------ auth
def test_every_route_and_the_websocket_refuse_without_the_token(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        app_paths = {(m, r.path) for r in h._app.routes for m in getattr(r, "methods", None) or ()}
        public = {("GET", "/"), ("GET", "/docs"), ("GET", "/static/{name:path}"), ("HEAD", "/"),
                  ("HEAD", "/docs"), ("HEAD", "/static/{name:path}")}
        routes = set(ROUTES) | {(m, p) for m, p in app_paths - public}
        assert ("GET", "/api/state") in routes and ("POST", "/api/command") in routes
        bad = [None, "", "Bearer", f"Bearer {h.token[:-1]}", f"Bearer {h.token}x",
               f"Basic {h.token}", f"Bearer {h.token.upper()}", h.token]
        with httpx.Client(base_url=base_url(h), timeout=30) as anon:
            for method, path in sorted(routes):
                for auth in bad:
                    headers = {} if auth is None else {"Authorization": auth}
                    r = anon.request(method, path, headers=headers, content=b'{"type": "stop"}')
                    assert r.status_code == 401, (method, path, auth, r.status_code)
                    assert r.headers["www-authenticate"].startswith("Bearer")
                    assert s.id not in r.text and h.token not in r.text
            # the public shell: the same bytes for every session, no data, no token
            for path in ("/", "/docs", "/static/console.js", "/static/console.css", "/static/docs.js"):
                r = anon.get(path)
                assert r.status_code == 200, path
                assert s.id not in r.text and h.token not in r.text and "P017" not in r.text
                assert r.headers["cache-control"] == "no-store"
            assert "frame-ancestors 'none'" in anon.get("/").headers["content-security-policy"]
        # nothing reached the core
        step(s)
        assert s.core.counts["commands"] == 0
        # the WebSocket: no token, a wrong token, a token in the wrong place
        for protos in ([WS_SUBPROTOCOL], [WS_SUBPROTOCOL, "bearer." + h.token[:-1]],
                       [WS_SUBPROTOCOL, h.token], ["bearer.x" + h.token]):
            with pytest.raises(InvalidStatus) as e:
                ws_connect(_ws_url(h), subprotocols=protos, open_timeout=30)
            assert e.value.response.status_code == 401
        assert s.core.snapshot()["mode"] == "auto"


def test_websocket_checks_origin_and_pushes_state(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        _warm(s, c)
        good = ["bearer." + h.token, WS_SUBPROTOCOL]
        for origin in ("http://evil.example", f"http://localhost.evil.example:{h.port}",
                       f"https://127.0.0.1:{h.port}", "null", f"http://127.0.0.1:{h.port + 1}"):
            with pytest.raises(InvalidStatus) as e:
                ws_connect(_ws_url(h), subprotocols=good, origin=origin, open_timeout=30)
            assert e.value.response.status_code == 403, origin
        snap = s.core.snapshot()
        with ws_connect(_ws_url(h), subprotocols=good, origin=f"http://127.0.0.1:{h.port}",
                        open_timeout=30) as ws:
            assert ws.subprotocol == WS_SUBPROTOCOL
            hello = json.loads(ws.recv(30))
            assert hello["type"] == "hello"
            assert hello["session"]["id"] == s.id and hello["session"]["patient"] == "P017"
            assert [lv[0] for lv in hello["session"]["levels"]] == [lv.name for lv in s.hierarchy.levels]
            msg = json.loads(ws.recv(30))
            assert msg["type"] == "state"
            assert msg["state"]["t"] == pytest.approx(snap["t"])
            assert msg["state"]["bpm"] == pytest.approx(snap["bpm"])
            # a tick later the feed follows
            step(s, 8)
            t_new = s.core.snapshot()["t"]
            for _ in range(50):
                m = json.loads(ws.recv(30))
                if m["type"] == "state" and m["state"]["t"] == pytest.approx(t_new):
                    break
            else:
                raise AssertionError("the WebSocket did not push the new state")
        # a non-browser client (no Origin) with the token in the Authorization header
        with ws_connect(_ws_url(h), additional_headers={"Authorization": f"Bearer {h.token}"},
                        open_timeout=30) as ws:
            assert json.loads(ws.recv(30))["type"] == "hello"


def test_post_from_another_site_is_refused(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        r = c.post("/api/command", json={"type": "pause"}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = c.post("/api/command", json={"type": "pause"}, headers={"Origin": f"http://localhost:{h.port}"})
        assert r.status_code == 202
        step(s)
        assert [x["type"] for x in records_now(s, "commands")] == ["pause"]


def records_now(s, kind):
    s.writer.flush()
    return records(s.path, kind)


# ------------------------------------------------------------------------------ state and commands
def test_state_matches_the_session_core(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        _warm(s, c)
        step(s, 40)
        st_ = c.get("/api/state").json()
        snap = s.core.snapshot()
        for k in ("t", "bpm", "baseline", "rmssd", "intensity", "target", "level", "quality"):
            assert st_[k] == pytest.approx(snap[k]), k
        assert st_["mode"] == "auto" and st_["level_name"] == s.hierarchy.levels[snap["level"]].name
        assert st_["lost"] is bool(snap["lost"]) and st_["paused"] is False
        assert 40 <= st_["bpm"] <= 160
        info = c.get("/api/session").json()
        assert info["id"] == s.id and info["controller"] == "ladder" and info["scene"] == "heights"
        hist = c.get("/api/history").json()
        assert hist["fields"][0] == "t"
        assert r_mirror(c) == (204, b"")
        s.mirror_png = b"\x89PNG\r\n\x1a\nfake-but-bytes"
        assert r_mirror(c) == (200, s.mirror_png)
        assert c.get("/api/state").json()["mirror"] is True


def r_mirror(c):
    r = c.get("/api/mirror.png")
    return r.status_code, r.content


def test_each_command_reaches_the_core_at_the_next_tick_with_its_origin(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        _warm(s, c)
        plan = [({"type": "manual"}, "manual"), ({"type": "set_level", "level": 4}, "manual"),
                ({"type": "hold"}, "hold"), ({"type": "pause"}, "paused"), ({"type": "resume"}, "hold"),
                ({"type": "auto"}, "auto"), ({"type": "set_intensity", "intensity": 0.25}, "manual"),
                ({"type": "ask_suds"}, "manual"), ({"type": "suds", "value": 40}, "manual"),
                ({"type": "event", "kind": "gust"}, "manual"), ({"type": "annotate", "text": "calm"}, "manual"),
                ({"type": "stop"}, "stopped")]
        applied = []
        for body, mode in plan:
            t_before = s.core.t
            r = c.post("/api/command", json=body)
            assert r.status_code == 202, r.text
            assert r.json()["command"] == body and r.json()["origin"] == "therapist"
            assert s.core.t == t_before  # queued, not applied by the request itself
            step(s)
            assert s.core.snapshot()["mode"] == mode, body
            applied.append((s.core.t, body["type"]))
            if body["type"] == "set_level":
                assert s.core.target == pytest.approx(s.hierarchy.levels[4].intensity)
            if body["type"] == "suds":
                assert s.core.snapshot()["suds"][-1]["value"] == 40
                assert s.core.snapshot()["suds"][-1]["origin"] == "therapist"
        r = c.post("/api/command", json={"type": "pause"})
        assert r.status_code == 409 and "stopped" in r.json()["detail"]
        s.close("test over")
        rows = records(s.path, "commands")
        assert [x["type"] for x in rows] == [typ for _, typ in applied]
        assert [x["t"] for x in rows] == pytest.approx([t for t, _ in applied])
        assert all(x["origin"] == "therapist" and x["accepted"] == 1 for x in rows)
        assert json.loads(rows[1]["payload"]) == {"type": "set_level", "level": 4}
        notes = [e for e in records(s.path, "events") if e["kind"] == "annotation"]
        assert json.loads(notes[0]["detail"]) == {"text": "calm", "by": "therapist"}


BAD = [
    (b"", 400), (b"{", 400), (b"nan", 400), (b"\xff\xfe", 400), (b"[" * 100000, 413),
    (b"[]", 422), (b"null", 422), (b'"stop"', 422), (b"{}", 422), (b'{"type": "launch"}', 422),
    (b'{"type": "stop", "level": 1}', 422), (b'{"type": "set_level"}', 422),
    (b'{"type": "set_level", "level": 11}', 422), (b'{"type": "set_level", "level": 2.5}', 422),
    (b'{"type": "set_level", "level": true}', 422), (b'{"type": "set_intensity", "intensity": 1.01}', 422),
    (b'{"type": "set_intensity", "intensity": NaN}', 422), (b'{"type": "set_intensity", "intensity": "0.5"}', 422),
    (b'{"type": "suds", "value": -1}', 422), (b'{"type": "suds", "value": 1e999}', 422),
    (b'{"type": "event", "kind": "fire"}', 422), (b'{"type": "annotate", "text": "   "}', 422),
    (b'{"type": "annotate", "text": "' + b"x" * 2001 + b'"}', 422), (b'{"type": "pause", "origin": "patient"}', 422),
]


def test_malformed_commands_get_a_clear_4xx_are_counted_and_never_reach_the_core(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        step(s)
        n422 = 0
        for body, status in BAD:
            r = c.post("/api/command", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == status, (body[:60], r.status_code, r.text)
            detail = r.json()["detail"]
            assert isinstance(detail, str) and detail and "\n" not in detail and len(detail) < 300
            n422 += status == 422
        step(s, 2)
        snap = c.get("/api/state").json()
        assert snap["rejected_commands"] == n422
        assert snap["console"]["bad_requests"] == len(BAD) - n422
        assert snap["mode"] == "auto" and s.core.counts["commands"] == 0
        assert records_now(s, "commands") == []


def test_a_flood_of_notes_gets_429_but_safety_commands_are_never_refused_and_apply_at_the_next_tick(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        step(s)
        codes = [c.post("/api/command", json={"type": "annotate", "text": f"n{i}"}).status_code
                 for i in range(400)]
        assert codes.count(202) == 256 and codes.count(429) == 144
        assert codes[:256] == [202] * 256
        # the note lane is full; safety commands have their own lane
        for body in ({"type": "pause"}, {"type": "resume"}, {"type": "hold"}, {"type": "manual"}, {"type": "pause"}):
            assert c.post("/api/command", json=body).status_code == 202, body
        assert c.post("/api/command", json={"type": "annotate", "text": "more"}).status_code == 429
        t0 = s.core.t
        step(s)  # one tick applies everything queued: bounded work, the session goes on
        assert s.core.t > t0 and s.core.counts["commands"] == 256 + 5
        assert s.core.snapshot()["mode"] == "paused"
        assert c.get("/api/state").json()["console"]["flood_refused"] == 145
        rows = records_now(s, "commands")
        assert len(rows) == 261 and all(r["accepted"] == 1 for r in rows)
        assert [r["type"] for r in rows[256:]] == ["pause", "resume", "hold", "manual", "pause"]


def test_every_202_is_applied_or_logged_as_refused_and_a_stop_gets_409_at_once(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        step(s)
        ok = []
        for i in range(40):
            r = c.post("/api/command", json={"type": "annotate", "text": f"before {i}"})
            assert r.status_code == 202
            ok.append(f"before {i}")
        assert c.post("/api/command", json={"type": "stop"}).status_code == 202
        # the stop is not applied yet (no tick), but nothing after it is accepted
        assert s.core.snapshot()["mode"] != "stopped"
        for body in ({"type": "annotate", "text": "after"}, {"type": "pause"}, {"type": "stop"}):
            r = c.post("/api/command", json=body)
            assert r.status_code == 409 and r.json()["detail"] == "the session has stopped"
        step(s)
        assert s.core.snapshot()["mode"] == "stopped"
        s.close("test over")
        rows = records(s.path, "commands")
        assert [json.loads(r["payload"]).get("text") for r in rows[:-1]] == ok
        assert rows[-1]["type"] == "stop" and all(r["accepted"] == 1 for r in rows)
        notes = [json.loads(e["detail"])["text"] for e in records(s.path, "events") if e["kind"] == "annotation"]
        assert notes == ok


def test_commands_queued_when_the_session_ends_are_logged_as_refused_not_dropped(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        step(s)
        for i in range(5):
            assert c.post("/api/command", json={"type": "annotate", "text": f"late {i}"}).status_code == 202
        s.close("test over")  # no tick after the notes
        from engine.session.commands import SessionStopped

        with pytest.raises(SessionStopped):  # the console is down; the core refuses too
            s.core.push_command({"type": "pause"})
        rows = records(s.path, "commands")
        assert [r["accepted"] for r in rows] == [0] * 5
        assert all(r["error"] == "the session ended before it could be applied" for r in rows)


def test_stop_brings_intensity_and_level_to_the_calm_start(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        _warm(s, c)
        assert c.post("/api/command", json={"type": "set_level", "level": 3}).status_code == 202
        step(s, 200)  # ramp up to level 3
        assert s.core.level == 3
        assert c.post("/api/command", json={"type": "stop"}).status_code == 202
        step(s)
        snap = c.get("/api/state").json()
        assert (snap["intensity"], snap["level"], snap["mode"]) == (0.0, 0, "stopped")
        s.close("test over")
        last = records(s.path, "scene")[-1]
        assert (last["intensity"], last["level"], last["mode"]) == (0.0, 0, "stopped")


LONE = b'{"type": "annotate", "text": "before \\ud800 after"}'


def test_a_note_with_a_lone_surrogate_is_refused_before_anything_is_applied(tmp_path):
    with live_console(tmp_path) as (s, h, c), ws_connect(_ws_url(h), subprotocols=[WS_SUBPROTOCOL, f"bearer.{h.token}"],
                                                         open_timeout=10) as w:
        assert json.loads(w.recv(timeout=10))["type"] == "hello"
        step(s)
        assert json.loads(LONE)["text"] == "before \ud800 after"  # what JSON.stringify sends
        for _ in range(3):
            r = c.post("/api/command", content=LONE, headers={"Content-Type": "application/json"})
            assert r.status_code == 422 and "surrogate" in r.json()["detail"]
        r = c.post("/api/command", json={"type": "annotate", "text": "fine \u00e9\u4e2d"})
        assert r.status_code == 202
        step(s)
        assert c.get("/api/state").status_code == 200
        for _ in range(20):  # the feed keeps going
            msg = json.loads(w.recv(timeout=10))
            if msg["type"] == "state" and msg["state"]["commands_recent"]:
                break
        assert msg["state"]["commands_recent"][-1]["payload"]["text"] == "fine \u00e9\u4e2d"
        assert s.core.counts["commands"] == 1 and s.core.rejected_commands == 3
        s.close("test over")
        notes = [json.loads(e["detail"])["text"] for e in records(s.path, "events") if e["kind"] == "annotation"]
        assert notes == ["fine \u00e9\u4e2d"]


# ------------------------------------------------------------------------------ refusals, errors, docs
def test_refused_websocket_handshakes_are_counted_and_logged_once_in_a_while(tmp_path):
    import logging

    records_seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records_seen.append(record)

    keep = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn", "engine.console.app")]
    for lg in loggers:
        lg.addHandler(keep)
    try:
        with live_console(tmp_path) as (s, h, c):
            for i in range(30):
                sub = [] if i % 2 else [f"bearer.{h.token}x"]
                with pytest.raises(InvalidStatus) as e:
                    ws_connect(_ws_url(h), subprotocols=sub or None, open_timeout=10)
                assert e.value.response.status_code == 401
                assert e.value.response.headers["cache-control"] == "no-store"
            with pytest.raises(InvalidStatus):
                ws_connect(_ws_url(h), subprotocols=[f"bearer.{h.token}"], origin="http://evil.example",
                           open_timeout=10)
            assert c.get("/api/state").json()["console"]["ws_refused"] == 31
    finally:
        for lg in loggers:
            lg.removeHandler(keep)
    errors = [r for r in records_seen if r.levelno >= logging.ERROR]
    assert errors == []
    warnings = [r.getMessage() for r in records_seen if r.levelno == logging.WARNING and "refused" in r.getMessage()]
    assert len(warnings) == 1 and "1 in all" in warnings[0]  # the first; the rest wait for the next minute


def test_a_refusal_log_reports_counts_at_most_once_per_period():
    from engine.console.app import RefusalLog

    now = [0.0]
    rl = RefusalLog(every_s=60, clock=lambda: now[0])
    logged = []
    import logging

    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    lg = logging.getLogger("engine.console.app")
    k = Keep()
    lg.addHandler(k)
    try:
        for i in range(1000):
            now[0] = i * 0.5  # 500 s of refusals, two a second
            rl.refused("401 missing or wrong token")
    finally:
        lg.removeHandler(k)
    assert rl.total == 1000
    assert len(logged) == 9  # t = 0, 60, 120, ... 480
    assert logged[1].startswith("console: 120 WebSocket")


def test_error_responses_carry_the_security_headers(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        step(s)

        def boom():
            raise RuntimeError("mirror broke")

        h._app.state.mirror = boom
        answers = [c.get("/nope"), c.delete("/api/state"), c.post("/api/command", content=b"{"),
                   c.post("/api/command", json={"type": "launch"}), c.post("/api/command", content=b"x" * 20000),
                   httpx.get(base_url(h) + "/api/state"), c.post("/api/command", json={"type": "pause"},
                                                                 headers={"Origin": "http://evil.example"}),
                   c.get("/api/mirror.png"), c.get("/static/none.js")]
        assert [r.status_code for r in answers] == [404, 405, 400, 422, 413, 401, 403, 500, 404]
        for r in answers:
            assert r.headers["cache-control"] == "no-store", r
            assert r.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"
        assert answers[7].json() == {"detail": "internal error of the console (logged)"}
        assert c.get("/api/state").json()["console"]["server_errors"] == 1


def test_the_api_page_loads_nothing_from_another_host(tmp_path):
    import re

    with live_console(tmp_path) as (s, h, c):
        r = c.get("/docs")
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "http" not in csp and "script-src 'self'" in csp
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert refs and all(x.startswith("/") or x.startswith("data:") for x in refs), refs
        with httpx.Client(base_url=base_url(h)) as anon:  # public, as the page needs them before the token
            for ref in refs:
                if ref.startswith("/"):
                    got = anon.get(ref)
                    assert got.status_code == 200 and len(got.content) > 1000, ref
        assert b"SwaggerUIBundle" in anon_get(h, "/static/swagger/swagger-ui-bundle.js")


def anon_get(h, path):
    return httpx.get(base_url(h) + path).content


# ------------------------------------------------------------------------------ fuzzing
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20),
                    lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch, max_size=4),
                    max_leaves=12)
FIELDS = st.sampled_from(["level", "intensity", "value", "kind", "text", "type", "origin", "x"])
COMMANDS = st.builds(lambda t, extra: {"type": t, **extra}, st.sampled_from(COMMAND_TYPES + ("", "STOP", "stop ")),
                     st.dictionaries(FIELDS, JSON | st.integers(-2, 12) | st.floats(-0.5, 1.5)
                                     | st.sampled_from(["gust", "surge", "noise", "note"]), max_size=2))

VALID = st.one_of(
    st.sampled_from(["pause", "resume", "hold", "auto", "manual", "ask_suds"]).map(lambda t: {"type": t}),
    st.integers(0, 10).map(lambda v: {"type": "set_level", "level": v}),
    st.floats(0, 1).map(lambda v: {"type": "set_intensity", "intensity": v}),
    st.floats(0, 100).map(lambda v: {"type": "suds", "value": v}),
    st.sampled_from(["gust", "surge", "noise"]).map(lambda k: {"type": "event", "kind": k}),
    st.text(min_size=1, max_size=50).filter(str.strip).map(lambda x: {"type": "annotate", "text": x}))


def test_fuzzed_commands_never_break_the_server_and_only_valid_ones_are_queued(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        step(s)
        n_levels = len(s.hierarchy.levels)
        tally = {"valid": 0, "invalid": 0}

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(body=VALID | COMMANDS | JSON)
        def check(body):
            try:
                parse_command(body, "therapist", n_levels=n_levels)
                valid = True
            except CommandError:
                valid = False
            body = _no_stop(body)
            r = c.post("/api/command", content=json.dumps(body), headers={"Content-Type": "application/json"})
            assert r.status_code < 500
            if valid:
                assert r.status_code in (202, 429), (body, r.text)
            else:
                assert r.status_code == 422, (body, r.text)
                assert "\n" not in r.json()["detail"]
            tally["valid" if valid else "invalid"] += 1
            if tally["valid"] % 50 == 49:
                step(s)

        check()
        step(s)
        assert tally["valid"] > 20 and tally["invalid"] > 20
        assert s.core.rejected_commands >= tally["invalid"]
        # every command that reached the log parses as a valid command
        for row in records_now(s, "commands"):
            parse_command(json.loads(row["payload"]), n_levels=n_levels)


def _no_stop(body):
    # keep the session alive across examples: a fuzzed stop is swapped for a pause (both valid)
    if isinstance(body, dict) and body.get("type") == "stop" and set(body) == {"type"}:
        return {"type": "pause"}
    return body


@settings(max_examples=200, deadline=None, database=None)
@given(raw=st.binary(max_size=64))
def test_arbitrary_bytes_as_a_body_get_400_or_422(raw, tmp_path_factory):
    # one server for all examples (module-level cache), built on first use
    s, h, c = _shared(tmp_path_factory)
    r = c.post("/api/command", content=raw, headers={"Content-Type": "application/json"})
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        assert r.status_code == 400
        return
    try:
        parse_command(data, n_levels=len(s.hierarchy.levels))
        assert r.status_code in (202, 429, 409)
    except CommandError:
        assert r.status_code == 422


_SHARED: dict = {}


def _shared(tmp_path_factory):
    if "ctx" not in _SHARED:
        ctx = live_console(tmp_path_factory.mktemp("console"))
        _SHARED["ctx"] = ctx
        _SHARED["v"] = ctx.__enter__()
    return _SHARED["v"]


@pytest.fixture(scope="module", autouse=True)
def _close_shared():
    yield
    ctx = _SHARED.pop("ctx", None)
    if ctx is not None:
        ctx.__exit__(None, None, None)
    _SHARED.clear()


# ------------------------------------------------------------------------------ OpenAPI
def test_the_openapi_document_describes_every_command_and_its_examples_are_accepted(tmp_path):
    with live_console(tmp_path) as (s, h, c):
        doc = c.get("/openapi.json").json()
        assert {"/api/state", "/api/session", "/api/history", "/api/mirror.png", "/api/command"} <= set(doc["paths"])
        post = doc["paths"]["/api/command"]["post"]
        variants = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
        assert sorted(v["title"] for v in variants) == sorted(COMMAND_TYPES)
        assert {"401", "422", "429", "202"} <= set(post["responses"])
        assert any("HTTPBearer" in sec for sec in post.get("security", []))
        step(s)
        examples = {"level": 3, "intensity": 0.5, "value": 30, "kind": "noise", "text": "a note"}
        for v in variants:
            if v["title"] == "stop":
                continue
            body = {"type": v["title"], **{k: examples[k] for k in v["required"] if k != "type"}}
            r = c.post("/api/command", json=body)
            assert r.status_code == 202, (body, r.text)
            assert set(body) <= set(v["properties"])


# ------------------------------------------------------------------------------ token
def test_token_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "clinic-room-3-token-2026")
    with live_console(tmp_path) as (s, h, c):
        assert h.token == "clinic-room-3-token-2026"
        assert h.url.endswith("/#token=clinic-room-3-token-2026") and h.url.startswith("http://127.0.0.1:")
        assert c.get("/api/state").status_code == 200
        assert "clinic" not in repr(h)


@given(st.text(max_size=300))
def test_make_token_accepts_only_safe_tokens(text):
    import re

    if text == "":
        tok = make_token({TOKEN_ENV: text})
        assert len(tok) >= 43 and tok != make_token({})
        return
    if re.fullmatch(r"[A-Za-z0-9_\-.~]{16,256}", text):
        assert make_token({TOKEN_ENV: text}) == text
    else:
        with pytest.raises(ConfigError) as e:
            make_token({TOKEN_ENV: text})
        assert TOKEN_ENV in str(e.value) and "\n" not in str(e.value)


def test_clean_makes_numpy_values_plain_json():
    import numpy as np

    from engine.console.app import clean

    out = clean({"a": np.bool_(True), "b": np.float64(np.nan), "c": np.int64(3), "d": [np.float32(0.5), math.inf],
                 "e": (1, "x", None), 4: False})
    assert out == {"a": True, "b": None, "c": 3, "d": [0.5, None], "e": [1, "x", None], "4": False}
    assert out["a"] is True and type(out["c"]) is int
    json.dumps(out, allow_nan=False)


def test_random_tokens_differ_per_session():
    toks = {make_token({}) for _ in range(50)}
    assert len(toks) == 50 and all(len(t) >= 43 for t in toks)
    assert all(math.log2(64) * len(t) >= 256 for t in toks)
