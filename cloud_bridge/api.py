"""The city's supervision API: schools and rooms now, the stored records,
rooms' telemetry series and latest readings, each school's gateway audit
log, where each shared kit is, health and metrics. Reads only; every route under
/api needs the operator's bearer token.

Bad query values, and unknown query parameters, answer 422 with the field
and the rule; a database that
cannot be read answers 503; no stored value, however old or odd, makes a
route answer 500 (store.readable_body)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from protocol.citylink import Kind
from protocol.codec import MAX_TIME, NAME_PATTERN

from .deps import MetricsDep, StoreDep, loopback_or_operator, refuse_unknown_query, require_operator
from .metrics import Metrics
from .settings import CitySettings
from .store import CityStore, StoreReadError

MAX_RECORDS = 1000
MAX_READINGS = 5000


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
    epoch: str | None = None  # the newest gateway database's ("" before epochs)
    dropped: int = 0  # records its gateways said they will never send
    gaps: int = 0  # gateway databases with records missing below stored ones
    rooms: list[RoomOut]


class StatusOut(BaseModel):
    schools: list[SchoolOut]
    records: int


class RecordOut(BaseModel):
    school: str
    epoch: str = ""  # the gateway database's ("" before epochs)
    seq: int
    room: str
    kind: str
    at: float
    body: dict
    received_at: float


class TelemetryOut(BaseModel):
    school: str
    room: str
    at: float
    interval_s: float | None
    n: int | None
    # Each reading: {"min", "mean", "max"} over the interval, or its latest value.
    readings: dict


class AuditOut(BaseModel):
    school: str
    epoch: str
    seq: int
    room: str
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


class Problem(BaseModel):
    detail: str


SchoolQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, description="a school code, a-z 0-9 -")]
RoomQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, description="a room, a-z 0-9 -")]
SchoolPath = Annotated[str, Path(pattern=NAME_PATTERN, description="a school code, a-z 0-9 -")]
RoomPath = Annotated[str, Path(pattern=NAME_PATTERN, description="a room, a-z 0-9 -")]
TimeQuery = Annotated[float | None, Query(ge=0, le=MAX_TIME, description="Unix seconds")]
ANSWERS: dict[int | str, dict] = {
    401: {"model": Problem, "description": "no valid bearer token"},
    503: {"model": Problem, "description": "the database cannot be read now"},
}

status_router = APIRouter(tags=["status"], responses=ANSWERS)
records_router = APIRouter(tags=["records"], responses=ANSWERS)
kits_router = APIRouter(tags=["kits"], responses=ANSWERS)
telemetry_router = APIRouter(tags=["telemetry"], responses=ANSWERS)
audit_router = APIRouter(tags=["audit"], responses=ANSWERS)
ops_router = APIRouter(tags=["operations"],
                       dependencies=[Depends(loopback_or_operator), Depends(refuse_unknown_query)],
                       responses={401: ANSWERS[401]})


@status_router.get("/status", response_model=StatusOut)
def get_status(store: StoreDep) -> dict:
    return store.status()


@records_router.get("/records", response_model=list[RecordOut])
def get_records(
    store: StoreDep,
    school: SchoolQuery = None,
    room: RoomQuery = None,
    kind: Annotated[Kind | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS)] = 100,
) -> list[dict]:
    return store.records(school=school, room=room, kind=kind, limit=limit)


@kits_router.get("/kits", response_model=list[KitOut])
def get_kits(
    store: StoreDep,
    school: SchoolQuery = None,
    kind: Annotated[str | None, Query(alias="type", pattern=NAME_PATTERN, description="a kit type (air-co2)")] = None,
) -> list[dict]:
    return store.kits(school=school, kind=kind)


@telemetry_router.get("/schools/{school}/rooms/{room}/telemetry", response_model=list[TelemetryOut])
def get_room_telemetry(
    store: StoreDep,
    school: SchoolPath,
    room: RoomPath,
    since: TimeQuery = None,
    until: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READINGS)] = 1000,
) -> list[dict]:
    """A room's readings in [since, until), oldest first (the newest `limit` of them)."""
    return store.telemetry(school, room, since=since, until=until, limit=limit)


@telemetry_router.get("/telemetry/latest", response_model=list[TelemetryOut])
def get_latest_telemetry(store: StoreDep, school: SchoolQuery = None) -> list[dict]:
    """Each room's latest reading, by school and room."""
    return store.latest_telemetry(school)


@audit_router.get("/schools/{school}/audit", response_model=list[AuditOut])
def get_audit(
    store: StoreDep,
    school: SchoolPath,
    since: TimeQuery = None,
    until: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS)] = 100,
) -> list[dict]:
    """The school gateway's audit entries (overrides set and cleared, commands), newest first."""
    return store.audit(school, limit=limit, since=since, until=until)


@ops_router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def healthz(store: StoreDep, metrics: MetricsDep) -> JSONResponse:
    try:
        store.ping()
        database = True
    except StoreReadError:
        database = False
    # Unhealthy only when the database is gone: a broker outage is the
    # normal life of a city link and the ingest reconnects by itself.
    body = HealthOut(ok=database, database=database, broker=metrics.broker_up)
    return JSONResponse(body.model_dump(), status_code=200 if database else 503)


@ops_router.get("/metrics", response_class=Response,
                responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def get_metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


class Background(Protocol):
    """What the app's lifespan runs beside the API: the ingest."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_app(store: CityStore, settings: CitySettings, metrics: Metrics | None = None, *,
               ingest: Background | None = None) -> FastAPI:
    """The API over `store`; its lifespan starts and stops `ingest` (none for
    an API alone, as in tests). Refuses to build without a token
    (CitySettingsError)."""
    settings.check()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ingest is not None:
            await ingest.start()
        try:
            yield
        finally:
            if ingest is not None:
                await ingest.stop()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, unauthenticated.
    app = FastAPI(title="Préau city supervision", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.store = store
    app.state.settings = settings
    app.state.metrics = metrics or Metrics()
    app.add_exception_handler(StoreReadError, _database_unavailable)
    for router in (status_router, records_router, kits_router, telemetry_router, audit_router):
        app.include_router(router, prefix="/api",
                           dependencies=[Depends(require_operator), Depends(refuse_unknown_query)])
    app.include_router(ops_router)
    return app
