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

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.session.commands import COMMAND_TYPES, EVENT_KINDS, CommandError, CommandFlood, SessionStopped, json_schema
from sensors.features import finite_or_none

log = logging.getLogger(__name__)

WS_SUBPROTOCOL = "exposure-console.v1"
WS_TOKEN_PREFIX = "bearer."
MAX_BODY = 16 * 1024
PUSH_S = 0.25  # WebSocket push period (wall seconds)
HISTORY_S = 0.5  # history sampling period (wall seconds)
HISTORY_MAX = 20000
STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8",
          "docs.js": "text/javascript; charset=utf-8",
          "swagger/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
          "swagger/swagger-ui.css": "text/css; charset=utf-8"}
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
# Swagger UI (served from static/swagger/, nothing from a CDN) sets inline styles on its elements
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
#: every other response (JSON, errors, scripts): it loads nothing and may not be framed
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


# ------------------------------------------------------------------------------ state
def clean(x):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (int, float, str)):
        x = x.item()  # numpy scalar → Python
    if isinstance(x, str):
        # never let text that cannot be encoded (a lone surrogate) break the state or the feed
        return x if x.isascii() or _utf8_ok(x) else x.encode("utf-8", "replace").decode("utf-8")
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, float):
        return finite_or_none(x)
    if isinstance(x, int):
        return int(x)
    return str(x)


def _utf8_ok(x: str) -> bool:
    try:
        x.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
                      "commands_accepted": 0, "commands_refused": 0, "flood_refused": 0,
                      "stopped_refused": 0, "ws_refused": 0, "server_errors": 0}
        self._last_t = -math.inf
        self._last_change = None
        self.ended = False
        self.guard = None  # the server's ConnectionGuard, for its counts

    def state(self) -> dict:
        s = dict(self.core.snapshot())
        s["session_id"] = self.session.id
        s["mirror"] = self.session.mirror_png is not None
        s["console"] = dict(self.stats)
        guard = self.guard
        if guard is not None:
            s["console"].update({f"connections_{k}": v for k, v in guard.stats.items()})
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


class _UnfinishedHandshake(logging.Filter):
    """Drops uvicorn's "ASGI callable returned without completing handshake." ERROR after a
    handshake *we* refused with an HTTP response (uvicorn's websockets-sansio protocol does not
    count that response as finishing the handshake, so it logs every refusal as an error: any web
    page the therapist visits could fill the session terminal). Only as many records are dropped
    as refusals were sent; any other such error still shows."""

    MESSAGE = "ASGI callable returned without completing handshake."

    def __init__(self):
        super().__init__()
        self.pending = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.pending > 0 and record.getMessage() == self.MESSAGE:
            self.pending -= 1
            return False
        return True


UNFINISHED_HANDSHAKE = _UnfinishedHandshake()


class RefusalLog:
    """Refused WebSocket handshakes: counted always, logged once per ``every_s`` with the count."""

    def __init__(self, every_s: float = 60.0, clock=time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self.unlogged = 0
        self.total = 0
        self._last = -math.inf

    def refused(self, why: str) -> None:
        self.total += 1
        self.unlogged += 1
        now = self.clock()
        if now - self._last >= self.every_s:
            log.warning("console: %d WebSocket connection(s) refused since the last report (latest: %s); "
                        "%d in all", self.unlogged, why, self.total)
            self.unlogged = 0
            self._last = now


class TokenGate:
    """ASGI middleware: the only door. Checks the token (and Origin) before any route runs."""

    def __init__(self, app, token: str, state: ConsoleState, origins: set[str], refusals: RefusalLog | None = None,
                 guard=None):
        self.app = app
        self.guard = guard
        self._token = token.encode()
        self.state = state
        self.origins = origins
        self.refusals = refusals or RefusalLog()

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
        started = False

        async def send_secure(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                headers = [*msg.get("headers", []), *SECURITY_HEADERS]
                if not any(k == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", API_CSP.encode()))
                msg = {**msg, "headers": headers}
            await send(msg)

        try:
            await self._http_gated(scope, receive, send_secure)
        except Exception:
            # A defect of ours: count it, log it, answer 500 with the same headers as the rest
            # (Starlette's own error page would carry none of them).
            self.state.stats["server_errors"] += 1
            log.exception("console: error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _json(send_secure, 500, {"detail": "internal error of the console (logged)"})

    async def _http_gated(self, scope, receive, send_secure):

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
        if self.guard is not None:
            self.guard.trust(scope.get("client"))
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
            if self.guard is not None:
                self.guard.trust(scope.get("client"))
            replayed = False

            async def receive_again():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return msg
                return await receive()

            await self.app(scope, receive_again, send)
            return
        self.state.stats["ws_refused"] += 1
        self.refusals.refused(f"{status} {detail.decode().split(':')[0]}")
        if "websocket.http.response" in scope.get("extensions", {}):
            UNFINISHED_HANDSHAKE.pending += 1
            await send({"type": "websocket.http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS,
                                    (b"content-security-policy", API_CSP.encode())]})
            await send({"type": "websocket.http.response.body", "body": detail})
        else:
            await send({"type": "websocket.close", "code": 1008})


async def _json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


# ------------------------------------------------------------------------------ the routes
ERR = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "detail": {"type": "string"}}}}}}


def console_state(request: Request) -> ConsoleState:
    return request.app.state.console


#: the pages: public (no data), see PUBLIC
pages = APIRouter(include_in_schema=False)


@pages.get("/")
async def page():
    return HTMLResponse(_read("index.html"), headers={"content-security-policy": PAGE_CSP})


@pages.get("/static/{name:path}")
async def static(name: str):
    if name not in STATIC:
        return JSONResponse({"detail": "not found"}, 404)
    return Response(_read(name), media_type=STATIC[name])


@pages.get("/docs")
async def docs():
    return HTMLResponse(_read("docs.html"), headers={"content-security-policy": DOCS_CSP})


#: what the session is and how it goes (read only)
state_routes = APIRouter(tags=["state"])


@state_routes.get("/state", summary="The session's current state",
                  description="bpm, baseline, rmssd (HRV, ms), quality (0..1), lost, connection, intensity "
                              "(0..1), target, level, level_name, mode (auto|manual|hold|paused|stopped), "
                              "last_decision (who: policy|baseline|shield|therapist, reason), suds history, "
                              "shield counts and recent interventions, rejected_commands, t (session s).")
async def get_state(st: ConsoleState = Depends(console_state)) -> dict:
    return st.state()


@state_routes.get("/session", summary="What this session is: id, pseudonymous patient, scene, levels, controller")
async def get_session(st: ConsoleState = Depends(console_state)) -> dict:
    return st.info


@state_routes.get("/history", summary="The state sampled over the session so far, for the charts",
                  description=f"fields: {', '.join(HISTORY_FIELDS)}; points: one row per sample, oldest first.")
async def get_history(st: ConsoleState = Depends(console_state)) -> dict:
    return {"fields": HISTORY_FIELDS, "points": list(st.history), "changes": list(st.changes)}


@state_routes.get("/mirror.png", response_class=Response,
                  responses={200: {"content": {"image/png": {}}}, 204: {"description": "no scene is rendered"}},
                  summary="The latest small image of the patient's view")
async def get_mirror(request: Request):
    png = request.app.state.mirror()
    if png is None:
        return Response(status_code=204)
    return Response(png, media_type="image/png")


#: therapist commands (write)
command_routes = APIRouter(tags=["commands"])


@command_routes.post(
    "/command", status_code=202,
    summary="Send a therapist command; it is applied at the session's next tick",
    description="Safety commands (stop, pause, resume, hold, manual) have their own queue: never refused "
                "for load. Every command answered 202 is applied and logged at the next tick, or logged "
                "there as refused with its reason. Once a stop is queued, every command gets 409.",
    # The body is read by hand (size limit, JSON errors as 400, no recursion limit crash) and
    # validated by engine.session.commands; its schema here comes from the same pydantic models.
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": json_schema()}}}},
    responses={202: {"description": "queued; applied and logged (origin therapist) at the next tick"},
               400: {"description": "the body is not JSON", **ERR},
               403: {"description": "request from another site (Origin)", **ERR},
               409: {"description": "the session has stopped", **ERR},
               413: {"description": "the body is too large", **ERR},
               422: {"description": "not a valid command; the detail says why", **ERR},
               429: {"description": "too many commands queued; slow down (never for safety commands)", **ERR}})
async def post_command(request: Request, st: ConsoleState = Depends(console_state)):
    raw = await _body(request, MAX_BODY)
    if raw is None:
        st.stats["bad_requests"] += 1
        return JSONResponse({"detail": f"the body is larger than {MAX_BODY} bytes"}, 413)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        st.stats["bad_requests"] += 1
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return JSONResponse({"detail": f"the body is not JSON: {msg}"[:200]}, 400)
    core = st.core
    t_before = core.snapshot().get("t")
    try:
        cmd = core.push_command(data, origin="therapist")
    except SessionStopped as e:
        st.stats["stopped_refused"] += 1
        return JSONResponse({"detail": str(e)}, 409)
    except CommandFlood as e:
        st.stats["flood_refused"] += 1
        return JSONResponse({"detail": str(e)}, 429, headers={"retry-after": "1"})
    except CommandError as e:
        st.stats["commands_refused"] += 1
        return JSONResponse({"detail": str(e)}, 422)
    st.stats["commands_accepted"] += 1
    return JSONResponse({"queued": True, "command": clean(cmd.payload()), "origin": cmd.origin,
                         "state_t": clean(t_before)}, 202)


#: the live feed
feed = APIRouter()


@feed.websocket("/ws")
async def ws(websocket: WebSocket):
    st: ConsoleState = websocket.app.state.console
    clients: set = websocket.app.state.clients
    await websocket.accept(subprotocol=WS_SUBPROTOCOL
                           if WS_SUBPROTOCOL in websocket.scope.get("subprotocols", []) else None)
    clients.add(websocket)
    try:
        await websocket.send_json({"type": "hello", "session": st.info, "fields": HISTORY_FIELDS,
                                   "history": list(st.history), "changes": list(st.changes)})
        reader = asyncio.ensure_future(_drain(websocket))
        last = None
        last_sent = 0.0
        while not reader.done():
            s = st.state()
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


# ------------------------------------------------------------------------------ the app
def build_app(state: ConsoleState, token: str, origins: set[str], mirror=lambda: None,
              refusals: RefusalLog | None = None, guard=None) -> FastAPI:
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

    # the token, declared once for every API area
    api = APIRouter(prefix="/api", dependencies=[Depends(auth)],
                    responses={401: {"description": "missing or wrong token", **ERR}})
    api.include_router(state_routes)
    api.include_router(command_routes)
    from engine.console.course import course_router  # the course panel

    api.include_router(course_router(state.session))
    app.include_router(pages)
    app.include_router(api)
    app.include_router(feed)  # the token gate checks the WebSocket handshake (no headers from browsers)
    app.state.console = state
    app.state.mirror = mirror
    app.state.clients = set()
    app.add_middleware(TokenGate, token=token, state=state, origins=origins, refusals=refusals, guard=guard)
    app.state.guard = guard
    uv = logging.getLogger("uvicorn.error")
    if UNFINISHED_HANDSHAKE not in uv.filters:
        uv.addFilter(UNFINISHED_HANDSHAKE)
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
    return resources.files(__package__).joinpath("static", *name.split("/")).read_bytes()
