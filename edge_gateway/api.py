"""The gateway's web API: rooms now, recent events, health and Prometheus
metrics. `/api/*` needs the bearer token (`PREAU_GATEWAY_TOKEN` or
`http.token`); there is no default token, on purpose."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Mapping

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from .config import Config, ConfigError
from .service import Gateway
from .store import read_records

TOKEN_ENV = "PREAU_GATEWAY_TOKEN"


@dataclass(frozen=True)
class ApiSettings:
    token: str

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str]) -> "ApiSettings":
        token = environ.get(TOKEN_ENV) or config.http_token
        if not token:
            raise ConfigError(f"{config.source}: http.token: missing and {TOKEN_ENV} is not set; the API needs a bearer token")
        return cls(token=token)


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


def _authorized(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected: str = request.app.state.settings.token
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="bearer token required", headers={"WWW-Authenticate": "Bearer"})


GatewayDep = Annotated[Gateway, Depends(_gateway)]
Authorized = Depends(_authorized)


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
    app.include_router(ops_router)
    return app
