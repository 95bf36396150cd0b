"""The gateway's web API: rooms now, recent events, decisions explained,
overrides, configuration reload, health and Prometheus metrics.

Two roles, each a bearer token, neither with a default: the director's
(`PREAU_GATEWAY_TOKEN` or `http.token`) reads and changes; the viewer's
(`PREAU_GATEWAY_VIEWER_TOKEN` or `http.viewer_token`, optional) only reads.
/healthz is open (systemd and the city's monitoring probe it); /metrics is
open to the machine itself, a token from elsewhere.

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from common.auth import BearerRoles
from common.queries import refuse_unknown_query

from .config import Config, ConfigError
from .gateway import Gateway, OverrideError
from .history import read_audit, read_overrides, read_records
from .overrides_input import OVERRIDE_ID_PATTERN, Moment, OverrideIn, RoomName, Text, to_unix

TOKEN_ENV = "PREAU_GATEWAY_TOKEN"
VIEWER_TOKEN_ENV = "PREAU_GATEWAY_VIEWER_TOKEN"
LIMIT_MAX = 1000
# The largest request body: an override is a few hundred bytes. uvicorn sets
# no limit, and a handler reads its whole body into memory.
BODY_MAX = 16 * 1024


@dataclass(frozen=True)
class ApiSettings:
    token: str  # the director's: read and change
    viewer_token: str | None = None  # read only
    config_path: str | None = None  # what POST /api/config/reload reads again

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str], config_path: str | None = None) -> ApiSettings:
        token = environ.get(TOKEN_ENV) or config.http_token
        if not token:
            raise ConfigError(f"{config.source}: http.token: missing and {TOKEN_ENV} is not set; the API needs a bearer token")
        viewer = environ.get(VIEWER_TOKEN_ENV) or config.http_viewer_token
        if viewer and hmac.compare_digest(viewer.encode(), token.encode()):
            raise ConfigError(f"{config.source}: http.viewer_token: must differ from the director's token")
        return cls(token=token, viewer_token=viewer or None, config_path=config_path)


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

    who: Text = Field(default="technicien", description='a role ("technicien", "direction"), not a name',
                      examples=["technicien"])
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


def _tokens(request: Request) -> dict[str, str | None]:
    settings = _settings(request)
    return {"director": settings.token, "viewer": settings.viewer_token}


roles = BearerRoles(_tokens)
_role = roles.dependency()


_director = roles.require("director", why="this needs the director's token; the viewer's only reads")


GatewayDep = Annotated[Gateway, Depends(_gateway)]
SettingsDep = Annotated[ApiSettings, Depends(_settings)]
Reader = Depends(_role)
DirectorOnly = Depends(_director)
LocalOrReader = Depends(roles.loopback_or("director", "viewer"))
# After the role: a query parameter the route does not know (`?al=true`) is
# refused (422), since a filter with a typo would answer with everything.
Strict = Depends(refuse_unknown_query)

RoomQuery = Annotated[RoomName, Query(examples=["cm2-b"])]
RoomPath = Annotated[RoomName, Path(examples=["cm2-b"])]
Limit = Annotated[int, Query(ge=1, le=LIMIT_MAX)]
Who = Annotated[Text, Query(description='a role ("direction", "mairie"), not a name',
                            examples=["direction"])]


def _known_room(gateway: Gateway, room: str) -> None:
    if room not in gateway.config.rooms:
        raise HTTPException(status_code=404, detail=f"no room {room!r} in this school")


# routers --------------------------------------------------------------------------------

rooms_router = APIRouter(prefix="/api/rooms", tags=["rooms"], dependencies=[Reader, Strict])


@rooms_router.get("", response_model=list[RoomOut])
async def list_rooms(gateway: GatewayDep) -> list[dict]:
    return list(gateway.rooms().values())


board_router = APIRouter(prefix="/api/rooms", tags=["boards"], dependencies=[DirectorOnly, Strict])
BoardAction = Annotated[Literal["identify", "end", "reboot"], Path(examples=["identify"])]
CommandId = Annotated[str, Path(max_length=32, pattern=r"^b-[0-9]{1,8}-[0-9]{1,12}$", examples=["b-95300000-1"])]


@board_router.post("/{room}/board/{action}", response_model=BoardCommandOut, status_code=202)
async def board_command(gateway: GatewayDep, room: RoomPath, action: BoardAction,
                        body: BoardCommandIn | None = None) -> dict:
    """For the technician in the corridor: make the room's board blink its
    LED (`identify`), end its session (`end`) or restart (`reboot`). Sent at
    once (kept by the broker for a board offline) and audited; follow its
    ack with `GET .../board/commands/{id}`."""
    _known_room(gateway, room)
    body = body or BoardCommandIn()
    return await gateway.board_command(room, action, body.who, body.seconds)


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


@overrides_router.post("", status_code=201, response_model=OverrideOut, dependencies=[DirectorOnly, Strict])
async def add_override(gateway: GatewayDep, body: OverrideIn) -> dict:
    """A temporary allow or deny; 422 with the gateway's reason when refused."""
    timezone = gateway.config.policy.timezone
    starts = None if body.starts is None else to_unix(body.starts, timezone)
    if body.expires is not None:
        expires = to_unix(body.expires, timezone)
    else:
        assert body.minutes is not None  # one of the two, checked above
        expires = (gateway.clock() if starts is None else starts) + 60 * body.minutes
    try:
        return await gateway.add_override(scope=body.scope, room=body.room, effect=body.effect, ap=body.ap,
                                          ap_only=body.ap_only, starts=starts, expires=expires, who=body.who,
                                          why=body.why)
    except OverrideError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


@overrides_router.delete("/{override_id}", response_model=CancelledOut, dependencies=[DirectorOnly, Strict])
async def cancel_override(
    gateway: GatewayDep,
    override_id: Annotated[str, Path(pattern=OVERRIDE_ID_PATTERN, examples=["o-000001"])],
    who: Who,
) -> dict:
    if not await gateway.cancel_override(override_id, who):
        raise HTTPException(status_code=404, detail=f"no override {override_id!r} in force")
    return {"id": override_id, "cancelled": True}


admin_router = APIRouter(prefix="/api", tags=["administration"], dependencies=[DirectorOnly, Strict])


@admin_router.get("/audit", response_model=list[AuditOut])
async def audit(gateway: GatewayDep, limit: Limit = 100) -> list[dict]:
    """Newest first: overrides added and cancelled, configuration reloads and refusals."""
    return await asyncio.to_thread(read_audit, gateway.config.db, limit)


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    who: Text = Field(default="direction", examples=["direction"])


@admin_router.post("/config/reload", response_model=ReloadOut)
async def reload_config(gateway: GatewayDep, settings: SettingsDep, body: ReloadIn | None = None) -> dict:
    """Read the configuration file again; a broken one is refused (422, with
    the file, key and what was expected) and the running one stays."""
    if not settings.config_path:
        raise HTTPException(status_code=409, detail="this gateway was not started from a configuration file")
    try:
        return await gateway.reload(settings.config_path, who=(body or ReloadIn()).who)
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


# the OpenAPI description: behind a token like the API it describes, and no
# /docs page, which would load its scripts from a CDN the school network
# may not reach


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


class BodyLimit:
    """413 for a request body beyond `limit` bytes, announced or streamed."""

    def __init__(self, app, limit: int = BODY_MAX) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await JSONResponse({"detail": f"request body larger than {self.limit} bytes"}, status_code=413)(
                scope, receive, send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # chunked: FastAPI turns this into the 413 answer
                raise HTTPException(status_code=413, detail=f"request body larger than {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(gateway: Gateway, settings: ApiSettings) -> FastAPI:
    if not settings.token:
        raise ConfigError(f"API token missing: set {TOKEN_ENV} or http.token")
    app = FastAPI(title="Préau school gateway", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway
    app.state.settings = settings
    app.include_router(rooms_router)
    app.include_router(board_router)
    app.include_router(events_router)
    app.include_router(policy_router)
    app.include_router(overrides_router)
    app.include_router(admin_router)
    app.include_router(ops_router)
    app.add_api_route("/openapi.json", openapi, include_in_schema=False, dependencies=[Reader, Strict])
    app.add_exception_handler(RequestValidationError, refused_input)
    app.add_middleware(BodyLimit)
    return app
