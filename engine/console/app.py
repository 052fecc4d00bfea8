"""The console's web application: routes, the token gate, the WebSocket feed.

:func:`build_app` takes a :class:`ConsoleState` (what the app reads: the session core's snapshot,
the session's static facts, the mirror image, a short history) and the token. It never touches
the session core except through ``core.snapshot()`` (read) and ``core.push_command()`` (write),
both thread-safe, so the web server on the I/O loop never blocks the session and vice versa.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import time
from collections import deque
from importlib import resources
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.session.commands import COMMAND_TYPES, EVENT_KINDS, MAX_TEXT, CommandError, CommandFlood
from sensors.features import finite_or_none

log = logging.getLogger(__name__)

WS_SUBPROTOCOL = "exposure-console.v1"
WS_TOKEN_PREFIX = "bearer."
MAX_BODY = 16 * 1024
PUSH_S = 0.25  # WebSocket push period (wall seconds)
HISTORY_S = 0.5  # history sampling period (wall seconds)
HISTORY_MAX = 20000
STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8",
          "docs.js": "text/javascript; charset=utf-8"}
#: served without the token: the same files for every session, holding no data
PUBLIC = {"/", "/docs", *(f"/static/{name}" for name in STATIC)}

#: headers on every response: no caching of data, no framing, no referrer, a strict CSP
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
DOCS_CSP = ("default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; script-src 'self' https://cdn.jsdelivr.net; "
            "frame-ancestors 'none'; base-uri 'none'")


# ------------------------------------------------------------------------------ state
def clean(x):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (int, float, str)):
        x = x.item()  # numpy scalar → Python
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, float):
        return finite_or_none(x)
    if isinstance(x, int):
        return int(x)
    return str(x)


class ConsoleState:
    """What the console shows, gathered from the session without ever blocking it."""

    def __init__(self, session):
        self.session = session
        self.core = session.core
        cfg = session.cfg
        self.info = clean({
            "id": session.id, "patient": cfg.patient, "scene": cfg.scene,
            "hierarchy": session.hierarchy.name, "controller": session.controller.name,
            "sensor": cfg.sensor, "speed": cfg.speed, "display": cfg.display,
            "planned_duration_s": cfg.duration_s,
            "levels": [[lv.name, lv.intensity] for lv in session.hierarchy.levels],
            "event_kinds": list(EVENT_KINDS), "command_types": list(COMMAND_TYPES),
        })
        self.history: deque[list] = deque(maxlen=HISTORY_MAX)
        self.changes: deque[dict] = deque(maxlen=200)
        self.stats = {"unauthorized": 0, "forbidden_origin": 0, "bad_requests": 0,
                      "commands_accepted": 0, "commands_refused": 0, "flood_refused": 0}
        self._last_t = -math.inf
        self._last_change = None
        self.ended = False

    def state(self) -> dict:
        s = dict(self.core.snapshot())
        s["session_id"] = self.session.id
        s["mirror"] = self.session.mirror_png is not None
        s["console"] = dict(self.stats)
        return clean(s)

    def sample(self) -> None:
        """Add the current snapshot to the history (called on the I/O loop every HISTORY_S)."""
        s = self.core.snapshot()
        t = s.get("t", 0.0)
        if t > self._last_t:
            self._last_t = t
            self.history.append(clean([t, s.get("bpm"), s.get("baseline"), s.get("rmssd"),
                                       s.get("intensity"), s.get("target"), s.get("level"),
                                       s.get("mode"), s.get("quality")]))
        d = s.get("last_decision")
        if d is not None and d != self._last_change:
            self._last_change = d
            self.changes.append(clean(d))


HISTORY_FIELDS = ["t", "bpm", "baseline", "rmssd", "intensity", "target", "level", "mode", "quality"]


# ------------------------------------------------------------------------------ the gate
def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


class TokenGate:
    """ASGI middleware: the only door. Checks the token (and Origin) before any route runs."""

    def __init__(self, app, token: str, state: ConsoleState, origins: set[str]):
        self.app = app
        self._token = token.encode()
        self.state = state
        self.origins = origins

    def token_ok(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self._token)

    def origin_ok(self, scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is None:  # not a browser (curl, scripts): the token alone decides
            return True
        if origin in self.origins:
            return True
        # Same origin as the Host the browser addressed, when that is an IP literal (a server
        # bound to 0.0.0.0 is reached by the machine's address); never a DNS name we do not know.
        host = _header(scope, b"host") or ""
        try:
            u = urlsplit(origin)
        except ValueError:
            return False
        if u.scheme != "http" or u.netloc != host:
            return False
        try:
            ipaddress.ip_address((u.hostname or "").strip("[]"))
        except ValueError:
            return False
        return True

    @staticmethod
    def bearer(scope) -> str | None:
        auth = _header(scope, b"authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None

    @staticmethod
    def ws_token(scope) -> str | None:
        for p in scope.get("subprotocols", []) or []:
            if p.startswith(WS_TOKEN_PREFIX):
                return p[len(WS_TOKEN_PREFIX):]
        return None

    async def __call__(self, scope, receive, send):
        typ = scope["type"]
        if typ == "http":
            await self._http(scope, receive, send)
        elif typ == "websocket":
            await self._ws(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope, receive, send):
        async def send_secure(msg):
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": [*msg.get("headers", []), *SECURITY_HEADERS]}
            await send(msg)

        path, method = scope["path"], scope["method"]
        if path in PUBLIC and method in ("GET", "HEAD"):
            await self.app(scope, receive, send_secure)
            return
        if not self.token_ok(self.bearer(scope)):
            self.state.stats["unauthorized"] += 1
            await _json(send_secure, 401, {"detail": "missing or wrong token: send the header "
                                                     "'Authorization: Bearer TOKEN' (the token is printed "
                                                     "when the session starts)"},
                        [(b"www-authenticate", b'Bearer realm="exposure-console"')])
            return
        if method not in ("GET", "HEAD", "OPTIONS") and not self.origin_ok(scope):
            self.state.stats["forbidden_origin"] += 1
            await _json(send_secure, 403, {"detail": "request from another site refused (Origin)"})
            return
        await self.app(scope, receive, send_secure)

    async def _ws(self, scope, receive, send):
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        ok_token = self.token_ok(self.ws_token(scope) or self.bearer(scope))
        status, detail = None, b""
        if not ok_token:
            self.state.stats["unauthorized"] += 1
            status, detail = 401, b"missing or wrong token: offer the subprotocol 'bearer.TOKEN'"
        elif not self.origin_ok(scope):
            self.state.stats["forbidden_origin"] += 1
            status, detail = 403, b"WebSocket from another site refused (Origin)"
        if status is None:
            replayed = False

            async def receive_again():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return msg
                return await receive()

            await self.app(scope, receive_again, send)
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS]})
            await send({"type": "websocket.http.response.body", "body": detail})
        else:
            await send({"type": "websocket.close", "code": 1008})


async def _json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


# ------------------------------------------------------------------------------ OpenAPI
def command_schema() -> dict:
    """The request body of POST /api/command: one object per command type."""
    def obj(typ: str, props: dict | None = None, required: tuple = ()) -> dict:
        return {"type": "object", "title": typ, "additionalProperties": False,
                "required": ["type", *required],
                "properties": {"type": {"type": "string", "enum": [typ]}, **(props or {})}}

    simple = {"stop": "end the session now (intensity to 0)",
              "pause": "fade to the calm scene; the level is kept for resume",
              "resume": "leave pause, back to the mode before it",
              "hold": "keep the intensity where it is", "auto": "let the controller drive",
              "manual": "the therapist drives; the controller is not consulted",
              "ask_suds": "ask the patient for a SUDS rating"}
    variants = [{**obj(t), "description": d} for t, d in simple.items()]
    variants += [
        {**obj("set_level", {"level": {"type": "integer", "minimum": 0}}, ("level",)),
         "description": "go to a hierarchy level (switches to manual)"},
        {**obj("set_intensity", {"intensity": {"type": "number", "minimum": 0, "maximum": 1}}, ("intensity",)),
         "description": "set the intensity 0..1 (switches to manual)"},
        {**obj("suds", {"value": {"type": "number", "minimum": 0, "maximum": 100}}, ("value",)),
         "description": "record a SUDS rating the patient said aloud"},
        {**obj("event", {"kind": {"type": "string", "enum": list(EVENT_KINDS)}}, ("kind",)),
         "description": "inject a scene event"},
        {**obj("annotate", {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}}, ("text",)),
         "description": "write a note into the session log"},
    ]
    if {v["title"] for v in variants} != set(COMMAND_TYPES):
        raise RuntimeError("the console's command schema and engine/commands.py disagree")
    return {"oneOf": variants, "discriminator": {"propertyName": "type"}}


ERR = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "detail": {"type": "string"}}}}}}


# ------------------------------------------------------------------------------ the app
def build_app(state: ConsoleState, token: str, origins: set[str], mirror=lambda: None) -> FastAPI:
    app = FastAPI(
        title="Exposure therapist console", version="1",
        description="Live state and therapist commands of one running exposure session.\n\n"
                    "Every route needs `Authorization: Bearer TOKEN` (the token is printed when the "
                    "session starts). The WebSocket `/ws` takes the token as the subprotocol "
                    f"`{WS_TOKEN_PREFIX}TOKEN` (browsers cannot set headers on a WebSocket); offer "
                    f"`{WS_SUBPROTOCOL}` too, which the server selects.",
        docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    bearer = HTTPBearer(auto_error=False, description="the session's console token")
    gate_token = token.encode()

    def auth(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        # The TokenGate middleware has already checked; this documents the scheme in OpenAPI
        # and checks again, so a route can never be reached without the token.
        if cred is None or not hmac.compare_digest(cred.credentials.encode("utf-8", "replace"), gate_token):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    core = state.core
    secured = [Depends(auth)]
    auth_responses = {401: {"description": "missing or wrong token", **ERR}}

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(_read("index.html"), headers={"content-security-policy": PAGE_CSP})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in STATIC:
            return JSONResponse({"detail": "not found"}, 404)
        return Response(_read(name), media_type=STATIC[name])

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return HTMLResponse(_read("docs.html"), headers={"content-security-policy": DOCS_CSP})

    @app.get("/api/state", dependencies=secured, responses=auth_responses,
             summary="The session's current state",
             description="bpm, baseline, rmssd (HRV, ms), quality (0..1), lost, connection, intensity "
                         "(0..1), target, level, level_name, mode (auto|manual|hold|paused|stopped), "
                         "last_decision (who: policy|baseline|shield|therapist, reason), suds history, "
                         "shield counts and recent interventions, rejected_commands, t (session s).")
    async def get_state() -> dict:
        return state.state()

    @app.get("/api/session", dependencies=secured, responses=auth_responses,
             summary="What this session is: id, pseudonymous patient, scene, levels, controller")
    async def get_session() -> dict:
        return state.info

    @app.get("/api/history", dependencies=secured, responses=auth_responses,
             summary="The state sampled over the session so far, for the charts",
             description=f"fields: {', '.join(HISTORY_FIELDS)}; points: one row per sample, oldest first.")
    async def get_history() -> dict:
        return {"fields": HISTORY_FIELDS, "points": list(state.history), "changes": list(state.changes)}

    @app.get("/api/mirror.png", dependencies=secured,
             responses={**auth_responses, 200: {"content": {"image/png": {}}},
                        204: {"description": "no scene is rendered"}},
             summary="The latest small image of the patient's view", response_class=Response)
    async def get_mirror():
        png = mirror()
        if png is None:
            return Response(status_code=204)
        return Response(png, media_type="image/png")

    @app.post("/api/command", dependencies=secured, status_code=202,
              summary="Send a therapist command; it is applied at the session's next tick",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": command_schema()}}}},
              responses={**auth_responses,
                         202: {"description": "queued; applied and logged (origin therapist) at the next tick"},
                         400: {"description": "the body is not JSON", **ERR},
                         403: {"description": "request from another site (Origin)", **ERR},
                         409: {"description": "the session has stopped", **ERR},
                         413: {"description": "the body is too large", **ERR},
                         422: {"description": "not a valid command; the detail says why", **ERR},
                         429: {"description": "too many commands queued; slow down", **ERR}})
    async def post_command(request: Request):
        raw = await _body(request, MAX_BODY)
        if raw is None:
            state.stats["bad_requests"] += 1
            return JSONResponse({"detail": f"the body is larger than {MAX_BODY} bytes"}, 413)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:
            state.stats["bad_requests"] += 1
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            return JSONResponse({"detail": f"the body is not JSON: {msg}"}, 400)
        if core.snapshot().get("mode") == "stopped":
            state.stats["commands_refused"] += 1
            return JSONResponse({"detail": "the session has stopped"}, 409)
        t_before = core.snapshot().get("t")
        try:
            cmd = core.push_command(data, origin="therapist")
        except CommandFlood as e:
            state.stats["flood_refused"] += 1
            return JSONResponse({"detail": str(e)}, 429, headers={"retry-after": "1"})
        except CommandError as e:
            state.stats["commands_refused"] += 1
            return JSONResponse({"detail": str(e)}, 422)
        state.stats["commands_accepted"] += 1
        return JSONResponse({"queued": True, "command": clean(cmd.payload()), "origin": cmd.origin,
                             "state_t": clean(t_before)}, 202)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept(subprotocol=WS_SUBPROTOCOL
                               if WS_SUBPROTOCOL in websocket.scope.get("subprotocols", []) else None)
        clients.add(websocket)
        try:
            await websocket.send_json({"type": "hello", "session": state.info, "fields": HISTORY_FIELDS,
                                       "history": list(state.history), "changes": list(state.changes)})
            reader = asyncio.ensure_future(_drain(websocket))
            last = None
            last_sent = 0.0
            while not reader.done():
                s = state.state()
                now = time.monotonic()
                key = (s.get("t"), s.get("mode"), s.get("mirror"), s.get("end_reason"))
                if key != last or now - last_sent > 2.0:
                    await websocket.send_json({"type": "state", "state": s})
                    last, last_sent = key, now
                await asyncio.wait({reader}, timeout=PUSH_S)
            reader.cancel()
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            pass
        finally:
            clients.discard(websocket)

    clients: set[WebSocket] = set()
    app.state.clients = clients
    from engine.console.course import course_router  # the course panel's route
    app.include_router(course_router(state.session), dependencies=secured, responses=auth_responses)
    app.add_middleware(TokenGate, token=token, state=state, origins=origins)
    return app


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes away."""
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return


async def _body(request: Request, limit: int) -> bytes | None:
    n = 0
    chunks = []
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()
