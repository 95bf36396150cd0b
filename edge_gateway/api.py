"""The gateway's web API: rooms now, recent events, decisions explained,
overrides, configuration reload, health and Prometheus metrics.

Two roles, each a bearer token, neither with a default: the director's
(`PREAU_GATEWAY_TOKEN` or `http.token`) reads and changes; the viewer's
(`PREAU_GATEWAY_VIEWER_TOKEN` or `http.viewer_token`, optional) only reads."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from .config import Config, ConfigError
from .service import Gateway, OverrideError
from .store import read_audit, read_overrides, read_records

TOKEN_ENV = "PREAU_GATEWAY_TOKEN"
VIEWER_TOKEN_ENV = "PREAU_GATEWAY_VIEWER_TOKEN"


@dataclass(frozen=True)
class ApiSettings:
    token: str  # the director's: read and change
    viewer_token: str | None = None  # read only
    config_path: str | None = None  # what POST /api/config/reload reads again

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str], config_path: str | None = None) -> "ApiSettings":
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
    body: dict[str, Any]


# dependencies (one place) ---------------------------------------------------------------


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


_bearer = HTTPBearer(auto_error=False)


def _role(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    settings: ApiSettings = request.app.state.settings
    given = b"" if credentials is None else credentials.credentials.encode()
    if credentials is not None and hmac.compare_digest(given, settings.token.encode()):
        return "director"
    if credentials is not None and settings.viewer_token and hmac.compare_digest(given, settings.viewer_token.encode()):
        return "viewer"
    raise HTTPException(status_code=401, detail="bearer token required", headers={"WWW-Authenticate": "Bearer"})


def _director(role: Annotated[str, Depends(_role)]) -> str:
    if role != "director":
        raise HTTPException(status_code=403, detail="this needs the director's token; the viewer's only reads")
    return role


GatewayDep = Annotated[Gateway, Depends(_gateway)]
Authorized = Depends(_role)
DirectorOnly = Depends(_director)


# routers --------------------------------------------------------------------------------

rooms_router = APIRouter(prefix="/api/rooms", tags=["rooms"], dependencies=[Authorized])


@rooms_router.get("", response_model=list[RoomOut])
def list_rooms(gateway: GatewayDep) -> list[dict]:
    return list(gateway.rooms().values())


events_router = APIRouter(prefix="/api/events", tags=["events"], dependencies=[Authorized])


@events_router.get("", response_model=list[RecordOut])
def list_events(
    gateway: GatewayDep,
    room: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    if room is not None and room not in gateway.config.rooms:
        raise HTTPException(status_code=404, detail=f"no room {room!r} in this school")
    return [r.as_dict() for r in read_records(gateway.config.db, room=room, kinds=("evt",), limit=limit)]


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


policy_router = APIRouter(prefix="/api/policy", tags=["policy"], dependencies=[Authorized])


def _known_room(gateway: Gateway, room: str) -> None:
    if room not in gateway.config.rooms:
        raise HTTPException(status_code=404, detail=f"no room {room!r} in this school")


@policy_router.get("/explain", response_model=DecisionOut)
def explain(
    gateway: GatewayDep,
    room: Annotated[str, Query(max_length=32)],
    at: Annotated[float | None, Query(description="Unix time; now when absent")] = None,
) -> dict:
    """The answer a request in `room` gets at `at`, and why, in French and English."""
    _known_room(gateway, room)
    when = gateway.clock() if at is None else at
    d = gateway.explain(room, when)
    return {"room": room, "at": when, "grant": d.grant, "until": d.until.isoformat() if d.until else None,
            "duration_s": d.duration_s, "projector": d.projector, "ap": d.ap, "reason": d.reason,
            "text_fr": d.text_fr, "text_en": d.text_en, "period": d.period, "warnings": list(d.warnings)}


@policy_router.get("/offline/{room}")
def offline(gateway: GatewayDep, room: str) -> dict:
    """The retained offline policy the board holds now (docs/protocol.md)."""
    _known_room(gateway, room)
    return gateway.policy.offline_policy(room, gateway.clock())


class OverrideIn(BaseModel):
    scope: Literal["room", "school"]
    room: str | None = Field(default=None, max_length=32)
    effect: Literal["allow", "deny"]
    ap: bool = False
    ap_only: bool = False
    minutes: int | None = Field(default=None, ge=1, le=14 * 24 * 60, description="from now; or give expires")
    starts: float | None = Field(default=None, description="Unix time; now when absent")
    expires: float | None = Field(default=None, description="Unix time")
    who: str = Field(min_length=1, max_length=40, description='a role ("direction", "mairie"), not a name')
    why: str = Field(min_length=1, max_length=200)


overrides_router = APIRouter(prefix="/api/overrides", tags=["overrides"])


@overrides_router.get("", dependencies=[Authorized])
def list_overrides(gateway: GatewayDep, all: bool = False) -> list[dict]:
    return read_overrides(gateway.config.db, include_past=all, now=gateway.clock())


@overrides_router.post("", status_code=201, dependencies=[DirectorOnly])
def add_override(gateway: GatewayDep, body: OverrideIn) -> dict:
    if (body.minutes is None) == (body.expires is None):
        raise HTTPException(status_code=422, detail="give either minutes or expires")
    start = gateway.clock() if body.starts is None else body.starts
    expires = body.expires if body.expires is not None else start + 60 * body.minutes
    try:
        return gateway.add_override(scope=body.scope, room=body.room, effect=body.effect, ap=body.ap,
                                    ap_only=body.ap_only, starts=body.starts, expires=expires, who=body.who,
                                    why=body.why)
    except OverrideError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


@overrides_router.delete("/{override_id}", dependencies=[DirectorOnly])
def cancel_override(gateway: GatewayDep, override_id: str,
                    who: Annotated[str, Query(min_length=1, max_length=40)]) -> dict:
    if not gateway.cancel_override(override_id, who):
        raise HTTPException(status_code=404, detail=f"no override {override_id!r} in force")
    return {"id": override_id, "cancelled": True}


admin_router = APIRouter(prefix="/api", tags=["administration"], dependencies=[DirectorOnly])


@admin_router.get("/audit")
def audit(gateway: GatewayDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    return read_audit(gateway.config.db, limit)


class ReloadIn(BaseModel):
    who: str = Field(default="direction", min_length=1, max_length=40)


@admin_router.post("/config/reload")
def reload_config(request: Request, gateway: GatewayDep, body: ReloadIn | None = None) -> dict:
    """Read the configuration file again; a broken one is refused (422, with
    the file, key and what was expected) and the running one stays."""
    path = request.app.state.settings.config_path
    if not path:
        raise HTTPException(status_code=409, detail="this gateway was not started from a configuration file")
    try:
        return gateway.reload(path, who=(body or ReloadIn()).who)
    except ConfigError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


ops_router = APIRouter(tags=["operations"])


@ops_router.get("/healthz")
def healthz(gateway: GatewayDep) -> JSONResponse:
    health = gateway.health()
    return JSONResponse(health, status_code=200 if health["ok"] else 503)


@ops_router.get("/metrics", response_class=PlainTextResponse)
def metrics(gateway: GatewayDep) -> PlainTextResponse:
    return PlainTextResponse(prometheus_text(gateway), media_type="text/plain; version=0.0.4")


def prometheus_text(gateway: Gateway) -> str:
    m = gateway.metrics
    h = gateway.health()
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value}")

    family("preau_gateway_messages_accepted_total", "counter", "Board messages that passed validation, by topic leaf.",
           [(f'{{leaf="{k}"}}', v) for k, v in sorted(m["accepted"].items())])
    family("preau_gateway_messages_rejected_total", "counter", "Board messages rejected, by reason.",
           [(f'{{reason="{k}"}}', v) for k, v in sorted(m["rejected"].items())])
    family("preau_gateway_decisions_total", "counter", "Answers to lesson requests, by command.",
           [(f'{{cmd="{k}"}}', v) for k, v in sorted(m["decisions"].items())])
    family("preau_gateway_duplicates_total", "counter", "Repeated messages dropped (QoS 1 redelivery, retained births).",
           [("", m["duplicates"])])
    family("preau_gateway_history_total", "counter", "Messages from an older boot, stored but not applied.",
           [("", m["history"])])
    family("preau_gateway_events_missing_total", "counter", "Board events never received (seq gaps).",
           [("", m["events_missing"])])
    family("preau_gateway_time_sent_total", "counter", "Clock commands sent to booting boards.", [("", m["time_sent"])])
    family("preau_gateway_policies_published_total", "counter", "Offline policies published to boards.",
           [("", m["policies_published"])])
    family("preau_gateway_config_rejected_total", "counter", "Configuration reloads refused.", [("", m["config_rejected"])])
    family("preau_gateway_outbox_records", "gauge", "Records not yet acknowledged by the city.", [("", m["outbox"])])
    family("preau_gateway_last_seq", "gauge", "Sequence number of the last record stored.", [("", m["last_seq"])])
    family("preau_gateway_broker_connected", "gauge", "1 when the link to a broker is up.",
           [('{broker="school"}', int(bool(h["school_broker"])))]
           + ([] if h["city_broker"] is None else [('{broker="city"}', int(bool(h["city_broker"])))]))
    return "\n".join(lines) + "\n"


def create_app(gateway: Gateway, settings: ApiSettings) -> FastAPI:
    if not settings.token:
        raise ConfigError(f"API token missing: set {TOKEN_ENV} or http.token")
    app = FastAPI(title="Préau school gateway", version="1")
    app.state.gateway = gateway
    app.state.settings = settings
    app.include_router(rooms_router)
    app.include_router(events_router)
    app.include_router(policy_router)
    app.include_router(overrides_router)
    app.include_router(admin_router)
    app.include_router(ops_router)
    return app
