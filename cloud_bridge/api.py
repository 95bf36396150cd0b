"""The city's supervision API: schools and rooms now, the stored records,
rooms' telemetry series and latest readings, each school's gateway audit
log, where each shared kit is, health and metrics. Reads only; every route under
/api needs the operator's bearer token; the description (/openapi.json) takes
it too, or a person's log-in to the pages (cloud_bridge/web's /docs reads it).
The records come in pages behind an opaque cursor, keyed on a unique order
(store.RECORD_ORDER), so paging while batches arrive never repeats or skips
a record.

Bad query values, and unknown query parameters, answer 422 with the field
and the rule; a database that
cannot be read answers 503; no stored value, however old or odd, makes a
route answer 500 (store.readable_body)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, BeforeValidator, Field

from protocol.citylink import Kind
from protocol.codec import MAX_TIME, NAME_PATTERN

from .deps import (
    MetricsDep,
    StoreDep,
    loopback_or_operator,
    operator_or_person,
    refuse_unknown_query,
    require_operator,
)
from .metrics import Metrics
from .settings import CitySettings
from .store import MAX_INT, MIN_INT, CityStore, RecordKey, StoreReadError

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


class RecordsPage(BaseModel):
    records: list[RecordOut]
    # The next page's `cursor`; null on the last page.
    next: str | None


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


def unix_time(value: object) -> object:
    """A time bound as Unix seconds ("1764748800", as is) or ISO 8601 with
    its offset ("2026-12-03T09:00:00+01:00", "...Z"); a time without an
    offset is refused: the city, its schools and its reader may not share
    one time zone."""
    if not isinstance(value, str):
        return value
    try:
        float(value)
        return value  # a number: pydantic reads it and checks its bounds
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected Unix seconds or an ISO 8601 time with its offset "
                         "(2026-12-03T09:00:00+01:00)") from None
    if moment.tzinfo is None:
        raise ValueError("an ISO 8601 time needs its offset (+01:00, or Z for UTC)")
    return moment.timestamp()


# The bounds on the number itself, so that the schema says them (minimum, maximum).
TimeQuery = Annotated[Annotated[float, Field(ge=0, le=MAX_TIME)] | None, BeforeValidator(unix_time),
                      Query(description="Unix seconds, or ISO 8601 with its offset (2026-12-03T09:00:00+01:00)")]
CursorQuery = Annotated[str | None, Query(max_length=400, pattern=r"^[A-Za-z0-9_-]+$",
                                          description="where the page starts: the `next` of the previous page")]
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


@records_router.get("/records", response_model=RecordsPage)
def get_records(
    store: StoreDep,
    school: SchoolQuery = None,
    room: RoomQuery = None,
    kind: Annotated[Kind | None, Query()] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS)] = 100,
    cursor: CursorQuery = None,
) -> dict:
    """Stored records with `since <= at < until` (the gateway's time), newest
    first, `limit` a page; `next` is the cursor of the following page (null
    on the last). Paging is by key (time, school, epoch, seq), so records
    stored while a client pages never make it see a record twice or skip
    one that was there when it began."""
    query = _query_digest(school, room, kind, since, until)
    after = None if cursor is None else _cursor_key(cursor, query)
    rows, last = store.records_page(school=school, room=room, kind=kind, since=since, until=until, limit=limit,
                                    after=after)
    return {"records": rows, "next": None if last is None else _cursor(last, query)}


def _query_digest(*filters: object) -> str:
    """The filters a cursor was made under: a cursor is refused under others
    (its position would mean nothing there)."""
    return hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:16]


def _cursor(key: RecordKey, query: str) -> str:
    text = json.dumps([1, key.at, key.school, key.epoch, key.seq, query], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor_key(cursor: str, query: str) -> RecordKey:
    def refuse(why: str) -> RequestValidationError:
        return RequestValidationError([{"type": "value_error", "loc": ("query", "cursor"), "msg": why,
                                        "input": cursor}])

    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, at, school, epoch, seq, made_under = json.loads(text)
    except (binascii.Error, ValueError, TypeError):
        raise refuse("not a cursor this API gave") from None
    if not (version == 1 and isinstance(at, (int, float)) and not isinstance(at, bool) and math.isfinite(at)
            and isinstance(school, str) and isinstance(epoch, str) and isinstance(seq, int)
            and not isinstance(seq, bool) and MIN_INT <= seq <= MAX_INT and len(school) <= 64 and len(epoch) <= 64):
        raise refuse("not a cursor this API gave")
    if made_under != query:
        raise refuse("a cursor of other filters: keep school, room, kind, since and until as they were")
    return RecordKey(float(at), school, epoch, seq)


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


async def openapi(request: Request) -> JSONResponse:
    """The API's description, behind the operator's token or a person's
    log-in (the pages' /docs reads it), as the API it describes."""
    return JSONResponse(request.app.openapi())


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

    # No FastAPI /docs or /redoc: their scripts come from a CDN and they need no
    # log-in. The description is ours (below); its reader is cloud_bridge/web's /docs.
    app = FastAPI(title="Préau city supervision", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.store = store
    app.state.settings = settings
    app.state.metrics = metrics or Metrics()
    app.add_exception_handler(StoreReadError, _database_unavailable)
    for router in (status_router, records_router, kits_router, telemetry_router, audit_router):
        app.include_router(router, prefix="/api",
                           dependencies=[Depends(require_operator), Depends(refuse_unknown_query)])
    app.include_router(ops_router)
    app.add_api_route("/openapi.json", openapi, include_in_schema=False,
                      dependencies=[Depends(operator_or_person), Depends(refuse_unknown_query)])
    return app
