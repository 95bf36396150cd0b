"""The gateway's web API: rooms now, recent events, decisions explained,
overrides, configuration reload, health and Prometheus metrics; and the
pages for people (edge_gateway/web/).

Who may call: a person logged in to the pages (an account, role director,
technician or viewer: edge_gateway/accounts.py, a session cookie, CSRF on
changes), or a machine with a bearer token, neither with a default: the
director's (`PREAU_GATEWAY_TOKEN` or `http.token`) reads and changes; the
viewer's (`PREAU_GATEWAY_VIEWER_TOKEN` or `http.viewer_token`, optional)
only reads. Every route names the roles it admits (`Allow`,
common/web/auth.py), and the audit log names the caller's role and
account id (`director:u-0001`, `director:token-director`), never a name
typed in a form. /healthz is open (systemd and the city's monitoring probe
it); /metrics is open to the machine itself, a role from elsewhere.

Every handler is async and never blocks the event loop, which in
production is the gateway's own (edge_gateway/main.py): the gateway's
changes are awaited, the SQLite reads run in a thread, and the rest (rooms,
explanations, health, metrics) reads the gateway's memory. Every input is
bounded, and a bad one is a 422 that names the field
(edge_gateway/overrides_input.py); the override rules themselves are the
gateway's, whose sentence a refusal carries."""

from __future__ import annotations

import asyncio
import hmac
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from common.queries import refuse_unknown_query
from common.web.auth import Access, Allow, NeedsLogin, PageForbidden, Principal, actor
from common.web.http import BODY_MAX, BodyLimit, SecurityHeaders  # noqa: F401 - BODY_MAX: the tests read it here
from common.web.login import lang_of, login_redirect
from common.web.render import COMMON_STATIC

from .accounts import AccountStore, default_path, ensure_first
from .config import Config, ConfigError
from .gateway import Gateway, OverrideError
from .history import read_audit, read_overrides, read_records
from .overrides_input import OVERRIDE_ID_PATTERN, Moment, OverrideIn, RoomName, Text, to_unix
from .web import pages, radio, room, week
from .web.i18n import t

TOKEN_ENV = "PREAU_GATEWAY_TOKEN"
VIEWER_TOKEN_ENV = "PREAU_GATEWAY_VIEWER_TOKEN"
# "0": session cookies without Secure (and without the __Host- prefix), for a
# gateway reached over plain HTTP on the school LAN; see docs/security.md.
COOKIE_SECURE_ENV = "PREAU_GATEWAY_COOKIE_SECURE"
STATIC_DIR = os.path.join(os.path.dirname(__file__), "web", "static")
LIMIT_MAX = 1000
# The largest request body: an override is a few hundred bytes. uvicorn sets
# no limit, and a handler reads its whole body into memory.



@dataclass(frozen=True)
class ApiSettings:
    token: str  # the director's: read and change
    viewer_token: str | None = None  # read only
    config_path: str | None = None  # what POST /api/config/reload reads again
    accounts_file: str | None = None  # the pages' accounts; default: accounts.json beside the database
    secure_cookies: bool = True

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str], config_path: str | None = None) -> ApiSettings:
        """The service's settings; at the first start (no account yet) the
        first director account is made (edge_gateway/accounts.py)."""
        token = environ.get(TOKEN_ENV) or config.http_token
        if not token:
            raise ConfigError(f"{config.source}: http.token: missing and {TOKEN_ENV} is not set; the API needs a bearer token")
        viewer = environ.get(VIEWER_TOKEN_ENV) or config.http_viewer_token
        if viewer and hmac.compare_digest(viewer.encode(), token.encode()):
            raise ConfigError(f"{config.source}: http.viewer_token: must differ from the director's token")
        secure = environ.get(COOKIE_SECURE_ENV, "1")
        if secure not in ("0", "1"):
            raise ConfigError(f"{COOKIE_SECURE_ENV}: expected 0 or 1, got {secure!r}")
        accounts = default_path(config.db)
        ensure_first(AccountStore(accounts), environ, sys.stderr)
        return cls(token=token, viewer_token=viewer or None, config_path=config_path, accounts_file=accounts,
                   secure_cookies=secure == "1")


# output models -----------------------------------------------------------------------


class RoomOut(BaseModel):
    room: str
    online: bool | None
    boot: int | None
    fw: str | None
    board: str | None
    session: str | None
    ap: bool | None
    last_seen: float | None
    wifi: str
    sessions: bool
    projector: str | None = None  # from the latest telemetry: off, warming, on, cooling, error, unknown
    lamp_h: int | None = None
    air: dict[str, float] | None = None  # the kit's readings: co2 ppm, t degC, rh %, p hPa, lux


class RecordOut(BaseModel):
    seq: int
    room: str
    kind: str
    at: float
    body: dict[str, Any]  # as the board sent it; {"unreadable": ...} if the stored text is damaged


class DecisionOut(BaseModel):
    room: str
    at: float
    grant: bool
    until: str | None
    duration_s: int
    projector: bool
    ap: bool
    reason: str
    text_fr: str
    text_en: str
    period: str | None
    warnings: list[str]


class OverrideOut(BaseModel):
    id: str
    scope: str
    room: str | None
    effect: str
    ap: bool
    ap_only: bool
    starts: float
    expires: float
    who: str
    why: str
    created: float
    cancelled: float | None


class CancelledOut(BaseModel):
    id: str
    cancelled: bool


class AuditOut(BaseModel):
    id: int
    at: float
    who: str
    action: str
    detail: dict[str, Any]


class ReloadOut(BaseModel):
    ok: bool
    rooms: list[str]


class BoardCommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    who: Text | None = Field(default=None, deprecated=True,
                             description="ignored: the audit log names the caller's role and account")
    seconds: int = Field(default=10, ge=1, le=60, description="identify: how long the LED blinks")


class BoardCommandOut(BaseModel):
    room: str
    cmd: str
    id: str
    online: bool


class BoardResultOut(BaseModel):
    room: str
    id: str
    acked: bool
    ok: bool | None = None
    result: str | None = None


class HealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
    school_broker: bool
    city_broker: bool | None
    outbox: int
    calendar_covered_until: str | None
    database: str  # "ok", or what is wrong
    clock_synced: bool  # false: every lesson is refused until NTP or the RTC vouches for the clock
    clock: str  # what vouches for it, or why nothing does


# dependencies (one place) ---------------------------------------------------------------


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings


# Who may call what (common/web/auth.py): every route has one of these.
READERS = Allow("director", "technician", "viewer")
DIRECTORS = Allow("director")
TECHNICIANS = Allow("director", "technician")

GatewayDep = Annotated[Gateway, Depends(_gateway)]
SettingsDep = Annotated[ApiSettings, Depends(_settings)]
ActorDep = Annotated[Principal, Depends(actor)]
Reader = Depends(READERS)
DirectorOnly = Depends(DIRECTORS)
TechnicianOrDirector = Depends(TECHNICIANS)
LocalOrReader = Depends(Allow("director", "technician", "viewer", loopback=True))
# After the role: a query parameter the route does not know (`?al=true`) is
# refused (422), since a filter with a typo would answer with everything.
Strict = Depends(refuse_unknown_query)

RoomQuery = Annotated[RoomName, Query(examples=["cm2-b"])]
RoomPath = Annotated[RoomName, Path(examples=["cm2-b"])]
Limit = Annotated[int, Query(ge=1, le=LIMIT_MAX)]
# Before accounts, callers typed who they were; what is audited now is the
# caller's role and account. Still accepted (and bounded) for older clients.
Who = Annotated[Text | None, Query(description="ignored: the audit log names the caller's role and account",
                                   deprecated=True)]


def _known_room(gateway: Gateway, room: str) -> None:
    if room not in gateway.config.rooms:
        raise HTTPException(status_code=404, detail=f"no room {room!r} in this school")


# routers --------------------------------------------------------------------------------

rooms_router = APIRouter(prefix="/api/rooms", tags=["rooms"], dependencies=[Reader, Strict])


@rooms_router.get("", response_model=list[RoomOut])
async def list_rooms(gateway: GatewayDep) -> list[dict]:
    return list(gateway.rooms().values())


board_router = APIRouter(prefix="/api/rooms", tags=["boards"], dependencies=[TechnicianOrDirector, Strict])
BoardAction = Annotated[Literal["identify", "end", "reboot"], Path(examples=["identify"])]
CommandId = Annotated[str, Path(max_length=32, pattern=r"^b-[0-9]{1,8}-[0-9]{1,12}$", examples=["b-95300000-1"])]


@board_router.post("/{room}/board/{action}", response_model=BoardCommandOut, status_code=202)
async def board_command(gateway: GatewayDep, who: ActorDep, room: RoomPath, action: BoardAction,
                        body: BoardCommandIn | None = None) -> dict:
    """For the technician in the corridor: make the room's board blink its
    LED (`identify`), end its session (`end`) or restart (`reboot`). Sent at
    once (kept by the broker for a board offline) and audited; follow its
    ack with `GET .../board/commands/{id}`."""
    _known_room(gateway, room)
    body = body or BoardCommandIn()
    return await gateway.board_command(room, action, who.actor, body.seconds)


@board_router.get("/{room}/board/commands/{command_id}", response_model=BoardResultOut)
async def board_result(gateway: GatewayDep, room: RoomPath, command_id: CommandId) -> dict:
    """Whether the board acknowledged the command, and its answer."""
    _known_room(gateway, room)
    result = gateway.board_result(room, command_id)
    if result is None:
        raise HTTPException(status_code=404, detail=f"no recent command {command_id!r} for room {room!r}")
    return result


events_router = APIRouter(prefix="/api/events", tags=["events"], dependencies=[Reader, Strict])


@events_router.get("", response_model=list[RecordOut])
async def list_events(gateway: GatewayDep, room: RoomQuery | None = None, limit: Limit = 100) -> list[dict]:
    """Newest first; 404 for a room not configured."""
    if room is not None:
        _known_room(gateway, room)
    records = await asyncio.to_thread(read_records, gateway.config.db, room=room, kinds=("evt",), limit=limit)
    return [r.as_dict() for r in records]


policy_router = APIRouter(prefix="/api/policy", tags=["policy"], dependencies=[Reader, Strict])


@policy_router.get("/explain", response_model=DecisionOut)
async def explain(
    gateway: GatewayDep,
    room: RoomQuery,
    at: Annotated[Moment | None, Query(description="now when absent", examples=["2026-12-14T10:30"])] = None,
) -> dict:
    """The answer a request in `room` gets at `at`, and why, in French and English."""
    _known_room(gateway, room)
    when = gateway.clock() if at is None else to_unix(at, gateway.config.policy.timezone)
    d = gateway.explain(room, None if at is None else when)  # now: refused while the clock is unsynchronised
    return {"room": room, "at": when, "grant": d.grant, "until": d.until.isoformat() if d.until else None,
            "duration_s": d.duration_s, "projector": d.projector, "ap": d.ap, "reason": d.reason,
            "text_fr": d.text_fr, "text_en": d.text_en, "period": d.period, "warnings": list(d.warnings)}


@policy_router.get("/offline/{room}", response_model=dict[str, Any])
async def offline(gateway: GatewayDep, room: RoomPath) -> dict:
    """The retained offline policy the board holds now (docs/protocol.md)."""
    _known_room(gateway, room)
    return gateway.policy.offline_policy(room, gateway.clock())


overrides_router = APIRouter(prefix="/api/overrides", tags=["overrides"])


@overrides_router.get("", response_model=list[OverrideOut], dependencies=[Reader, Strict])
async def list_overrides(
    gateway: GatewayDep,
    include_past: Annotated[bool, Query(alias="all", description="cancelled and expired ones too")] = False,
    limit: Limit = 200,
) -> list[dict]:
    """Newest first: those in force, or all of them."""
    return await asyncio.to_thread(read_overrides, gateway.config.db, include_past=include_past,
                                   now=gateway.clock(), limit=limit)


class OverrideBody(OverrideIn):
    who: Text | None = Field(default=None, deprecated=True,  # type: ignore[assignment]
                             description="ignored: the audit log names the caller's role and account")


@overrides_router.post("", status_code=201, response_model=OverrideOut, dependencies=[DirectorOnly, Strict])
async def add_override(gateway: GatewayDep, who: ActorDep, body: OverrideBody) -> dict:
    """A temporary allow or deny; 422 with the gateway's reason when refused.
    Its `who` is the caller's role and account (`director:u-0001`)."""
    timezone = gateway.config.policy.timezone
    starts = None if body.starts is None else to_unix(body.starts, timezone)
    if body.expires is not None:
        expires = to_unix(body.expires, timezone)
    else:
        assert body.minutes is not None  # one of the two, checked above
        expires = (gateway.clock() if starts is None else starts) + 60 * body.minutes
    try:
        return await gateway.add_override(scope=body.scope, room=body.room, effect=body.effect, ap=body.ap,
                                          ap_only=body.ap_only, starts=starts, expires=expires, who=who.actor,
                                          why=body.why)
    except OverrideError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


@overrides_router.delete("/{override_id}", response_model=CancelledOut, dependencies=[DirectorOnly, Strict])
async def cancel_override(
    gateway: GatewayDep,
    override_id: Annotated[str, Path(pattern=OVERRIDE_ID_PATTERN, examples=["o-000001"])],
    caller: ActorDep,
    who: Who = None,
) -> dict:
    if not await gateway.cancel_override(override_id, caller.actor):
        raise HTTPException(status_code=404, detail=f"no override {override_id!r} in force")
    return {"id": override_id, "cancelled": True}


admin_router = APIRouter(prefix="/api", tags=["administration"], dependencies=[DirectorOnly, Strict])


@admin_router.get("/audit", response_model=list[AuditOut])
async def audit(gateway: GatewayDep, limit: Limit = 100) -> list[dict]:
    """Newest first: overrides added and cancelled, configuration reloads and refusals."""
    return await asyncio.to_thread(read_audit, gateway.config.db, limit)


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    who: Text | None = Field(default=None, deprecated=True,
                             description="ignored: the audit log names the caller's role and account")


@admin_router.post("/config/reload", response_model=ReloadOut)
async def reload_config(gateway: GatewayDep, settings: SettingsDep, who: ActorDep,
                        body: ReloadIn | None = None) -> dict:
    """Read the configuration file again; a broken one is refused (422, with
    the file, key and what was expected) and the running one stays."""
    if not settings.config_path:
        raise HTTPException(status_code=409, detail="this gateway was not started from a configuration file")
    try:
        return await gateway.reload(settings.config_path, who=who.actor)
    except ConfigError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


ops_router = APIRouter(tags=["operations"])


@ops_router.get("/healthz", response_model=HealthOut, dependencies=[Strict],
                responses={503: {"model": HealthOut, "description": "the school broker or the database is down, "
                                                                 "or the clock is not synchronised"}})
async def healthz(gateway: GatewayDep) -> JSONResponse:
    health = gateway.health()  # the gateway's memory: no disk, no wait
    return JSONResponse(jsonable_encoder(health), status_code=200 if health["ok"] else 503)


@ops_router.get("/metrics", dependencies=[LocalOrReader, Strict], response_class=Response,
                responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}})
async def metrics(gateway: GatewayDep) -> Response:
    text = generate_latest(gateway.metrics_registry)  # the collector reads counters in memory
    return Response(text, media_type=CONTENT_TYPE_LATEST)


# the OpenAPI description: behind a log-in or a token like the API it
# describes; its reader is the /docs page (edge_gateway/web/pages.py), not
# FastAPI's, which loads its scripts from a CDN the school network may not reach


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


# input errors ---------------------------------------------------------------------------


async def refused_input(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's list of errors, each message led by the field it is about
    (`at: ...`), and always valid JSON: an input echoed back may hold a NaN
    (Python's JSON reader takes one) or an odd key."""
    assert isinstance(exc, RequestValidationError)  # registered for it alone
    detail = []
    for error in _json_safe(jsonable_encoder(exc.errors())):
        field = ".".join(p for p in error.get("loc", [])[1:] if isinstance(p, str))
        if field:
            error["msg"] = f"{field}: {error.get('msg', '')}"
        detail.append(error)
    return JSONResponse({"detail": detail}, status_code=422)


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {_json_safe(str(k)): _json_safe(v) for k, v in value.items()}
    return value


async def needs_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NeedsLogin)
    return login_redirect(exc.next_url)


async def page_forbidden(request: Request, exc: Exception) -> Response:
    lang = lang_of(request)
    from .web.render import layout

    principal = request.app.state.access.principal(request)
    return HTMLResponse(layout(lang, t(lang, "forbidden"), f"<p>{t(lang, 'forbidden_text')}</p>", principal=principal),
                        status_code=403)


def create_app(gateway: Gateway, settings: ApiSettings, access: Access | None = None) -> FastAPI:
    """`access` (accounts, sessions, log-in limiter) is made from `settings`
    when not given: tests give their own, with a cheap hash and a clock."""
    if not settings.token:
        raise ConfigError(f"API token missing: set {TOKEN_ENV} or http.token")
    app = FastAPI(title="Préau school gateway", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway
    app.state.settings = settings
    if access is None:
        access = Access(AccountStore(settings.accounts_file or default_path(gateway.config.db)),
                        lambda: {"director": settings.token, "viewer": settings.viewer_token},
                        secure_cookies=settings.secure_cookies)
    app.state.access = access
    app.include_router(rooms_router)
    app.include_router(board_router)
    app.include_router(events_router)
    app.include_router(policy_router)
    app.include_router(overrides_router)
    app.include_router(admin_router)
    app.include_router(ops_router)
    app.add_api_route("/openapi.json", openapi, include_in_schema=False, dependencies=[Reader, Strict])
    app.include_router(pages.router)
    app.include_router(week.router)
    app.include_router(room.router)
    app.include_router(radio.router)
    # The boards' over-the-air updates: no log-in (a board has no HTTP
    # credentials); what they serve is authenticated end to end, the
    # manifest by the room's board key, each file by its hash (docs/ota.md).
    from .ota import router as ota_router

    app.include_router(ota_router(gateway))
    app.mount("/static/common", StaticFiles(directory=COMMON_STATIC), name="static-common")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(RequestValidationError, refused_input)
    app.add_exception_handler(NeedsLogin, needs_login)
    app.add_exception_handler(PageForbidden, page_forbidden)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    return app
