"""The city's supervision API: schools and rooms now, the stored records,
where each shared kit is, health and metrics. Reads only; every route under /api needs the bearer
token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from protocol.citylink import Kind
from .deps import MetricsDep, StoreDep, loopback_or_token, require_token
from .metrics import Metrics
from .settings import CitySettings
from .store import Store

NAME_PATTERN = r"^[a-z0-9-]{1,32}$"
MAX_RECORDS = 1000


class RoomOut(BaseModel):
    room: str
    online: bool | None
    boot: int | None
    session: str | None
    ap: bool | None
    last_seen: float | None
    fw: str | None
    board: str | None


class SchoolOut(BaseModel):
    school: str
    gateway: str | None
    online: bool | None
    last_seen: float | None
    acked: int
    rooms: list[RoomOut]


class StatusOut(BaseModel):
    schools: list[SchoolOut]
    records: int


class RecordOut(BaseModel):
    school: str
    seq: int
    room: str
    kind: str
    at: float
    body: dict
    received_at: float


class KitOut(BaseModel):
    kit: str
    type: str | None
    school: str
    room: str
    attached: bool
    sensors: list[str]
    since: float
    last_seen: float


class HealthOut(BaseModel):
    ok: bool
    database: bool
    broker: bool


status_router = APIRouter(tags=["status"])
records_router = APIRouter(tags=["records"])
kits_router = APIRouter(tags=["kits"])
ops_router = APIRouter(tags=["operations"], dependencies=[Depends(loopback_or_token)])


@status_router.get("/status", response_model=StatusOut)
def get_status(store: StoreDep) -> dict:
    return store.status()


@records_router.get("/records", response_model=list[RecordOut])
def get_records(
    store: StoreDep,
    school: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    room: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    kind: Annotated[Kind | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS)] = 100,
) -> list[dict]:
    return store.records(school=school, room=room, kind=kind, limit=limit)


@kits_router.get("/kits", response_model=list[KitOut])
def get_kits(
    store: StoreDep,
    school: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    kind: Annotated[str | None, Query(alias="type", pattern=NAME_PATTERN)] = None,
) -> list[dict]:
    return store.kits(school=school, kind=kind)


@ops_router.get("/healthz", response_model=HealthOut)
def healthz(store: StoreDep, metrics: MetricsDep) -> JSONResponse:
    try:
        store.ping()
        database = True
    except Exception:
        database = False
    broker = bool(metrics.snapshot()["broker_connected"])
    # Unhealthy only when the database is gone: a broker outage is the
    # normal life of a city link and the ingest reconnects by itself.
    body = HealthOut(ok=database, database=database, broker=broker)
    return JSONResponse(body.model_dump(), status_code=200 if database else 503)


@ops_router.get("/metrics", response_class=PlainTextResponse)
def get_metrics(metrics: MetricsDep) -> PlainTextResponse:
    return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")


def create_app(store: Store, settings: CitySettings, metrics: Metrics | None = None) -> FastAPI:
    """The API over `store`. Refuses to build without a token (ConfigError)."""
    settings.check()
    app = FastAPI(title="Préau city supervision", version="1")
    app.state.store = store
    app.state.settings = settings
    app.state.metrics = metrics or Metrics()
    app.include_router(status_router, prefix="/api", dependencies=[Depends(require_token)])
    app.include_router(records_router, prefix="/api", dependencies=[Depends(require_token)])
    app.include_router(kits_router, prefix="/api", dependencies=[Depends(require_token)])
    app.include_router(ops_router)
    return app
