"""The city's database: every record each school sent, once, and the live
view of schools and rooms derived from them.

One code path on SQLAlchemy Core for SQLite (the default: a file, WAL,
synchronous=FULL) and PostgreSQL (a city or a region: `database_url`,
`postgresql+psycopg://...`). The schema is upgraded in place at start by
Alembic (cloud_bridge/migrations: one revision per schema version, never
edited once released); a SQLite database written before Alembic (its
`PRAGMA user_version` 0 to 3) is recognised and carried on from its version.

Records are keyed by (school, epoch, seq): a gateway database draws an
epoch when it is made, so a fresh gateway (a new SD card), whose seqs start
again at 1, is stored beside the old one, never mixed with it. The ack is
per (school, epoch). Epochs are ordered by when the city first saw them
(`epochs.n`): a newer epoch's records are newer than any of an older one.

A batch is one transaction and few statements: its records in one
multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING seq`, the rooms it
touches read once and written once, telemetry rows in one statement, the
ack from one scan. If anything goes wrong with one record (a value the
database cannot bind, a bug), the batch is done again record by record,
each under its own savepoint, so that record alone is refused and the rest
commits: one bad record costs only itself.

One writer connection, used under a lock (in the service, only by the
ingest's writer thread). Reads use their own connections, so the web API
reads while the writer writes (SQLite WAL, PostgreSQL MVCC).

Several workers may write one PostgreSQL database at once (MQTT shared
subscriptions split the batches, not the schools): a batch first upserts
its school's row, which locks it until the commit, so one school's batches
are applied one after the other whatever the worker; the live view takes a
record only if it is newer than the one that set it (by boot, board uptime,
then epoch and seq), so a batch applied late never moves a room back. Kits
move between schools: their rows are read FOR UPDATE.

One bad record costs only itself: a value that the database, the JSON
encoder or the API's serializer cannot take (a number beyond 2^53, NaN, a
lone surrogate, a body nested deeper than the contract's MAX_DEPTH: the
rule of protocol.codec, the same as the gateway's) refuses that record
alone, and the record is set aside like any other refused record. Reads
never trust what is stored either: a body stored before these bounds that
the API could not serialize is answered as `{"unreadable": why}`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from hardware.kits import kit_type
from protocol.citylink import GATEWAY_ROOM, Batch, Record, truncate
from protocol.codec import (
    MAX_DEPTH,
    ProtocolError,
    check_evt,
    check_state,
    session_after,
    valid_name,
    value_fault,
)

from .errors import CityError

log = logging.getLogger(__name__)

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# Alembic revisions, in order; the schema version is the position (1-based).
REVISIONS = ("r0001", "r0002", "r0003", "r0004", "r0005")
SCHEMA_VERSION = len(REVISIONS)

_ROOM_COLUMNS = ("online", "boot", "last_seen", "session", "ap", "fw", "board", "live_seq", "live_uptime",
                 "live_gen")
_KIT_COLUMNS = ("school", "room", "attached", "sensors", "since", "last_seen", "boot")
_KIT_EVENTS = ("kit.attached", "kit.detached")
_LIVE_KINDS = ("state", "evt", "ack")
UNKNOWN_KIT = "unknown"
_MAX_SENSORS = 16
_ACK_SCAN = 1000
MAX_GAP_RANGES = 64
# SQLite's INTEGER (and PostgreSQL's BIGINT) range: every integer the city stores fits.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
# A board's clock comes from its gateway: an event "happening" more than a day
# after the gateway stored it is a broken clock, and would pin its kit there
# for ever (nothing newer could ever move it).
MAX_CLOCK_AHEAD_S = 86400.0
REJECTED_TEXT_CHARS = 4000
# The reason a refused record is set aside under when the city's own code
# failed on it (counted as internal_errors, not as a rejection).
INTERNAL_ERROR = "internal_error"
# Telemetry fields that describe the aggregate, not a reading.
_TELEMETRY_META = ("v", "interval_s", "n")
# The records' order for reading and paging, newest first: a unique key of
# the table (school, epoch, seq are), so a page boundary is never ambiguous.
RECORD_ORDER = ("at", "school", "epoch", "seq")
_RECORDS = sa.table("records", *(sa.column(name) for name in (
    "school", "epoch", "seq", "room", "kind", "at", "body", "received_at")))


@dataclass(frozen=True)
class RecordKey:
    """Where a page of records ends (RECORD_ORDER): the next starts after it."""

    at: float
    school: str
    epoch: str
    seq: int

class StoreError(CityError):
    """The database cannot be opened: the service cannot run."""


class StoreWriteError(RuntimeError):
    """One write failed (disk full, database locked too long): the batch is
    not acked and its gateway sends it again."""


class StoreReadError(RuntimeError):
    """A read failed (disk error, database locked too long): the API answers 503."""


class Unstorable(ValueError):
    """A value the database, the JSON encoder or the API could not take back."""


@dataclass(frozen=True)
class Refused:
    """A record refused on its own, at parsing (protocol.citylink) or at
    storage. `new` is False for a resend of a record already set aside or
    stored (counted as a duplicate, not again as a refusal)."""

    seq: int | None
    reason: str
    message: str
    raw: object
    new: bool = True


@dataclass(frozen=True)
class Conflict:
    """A record whose seq is stored already with another content. `new` is
    False when this very content was kept before (a resend)."""

    seq: int
    new: bool


@dataclass(frozen=True)
class Stored:
    """What one batch did: new records, repeats, records set aside, records
    in conflict with a stored one, and the ack to send: the highest seq from
    1 with no gap that the school may now forget (see _advance_ack), for the
    batch's epoch. `dropped`: records the batch newly said it will never
    send (counted once)."""

    stored: int
    duplicates: int
    set_aside: int
    acked: int
    unusable_bodies: int = 0
    refused: tuple[Refused, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    epoch: str = ""
    dropped: int = 0
    telemetry: int = 0


@dataclass(frozen=True)
class GapRequest:
    """Seq ranges of one (school, epoch) missing for longer than asked."""

    school: str
    epoch: str
    ranges: list[tuple[int, int]]


# One encoder for every body (json.dumps would build one per call).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _json(value: object) -> str:
    return _encode(value)


def _canonical(room: str, kind: str, at: float, body: object) -> str:
    """A record's content, keys sorted: two copies of a record are the same
    record when these are equal (true and 1, 1.0 and 1 differ)."""
    return json.dumps([room, kind, float(at), body], separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def body_fault(value: object) -> str | None:
    """Why the database, the JSON encoder or the API could not take `value`
    back, or None: the contract's own rule (protocol.codec.value_fault, the
    record body counted as one level), decided once for gateway and city.
    Iterative: a body nested 40,000 deep costs no stack."""
    if not isinstance(value, dict):
        return "not a JSON object"
    return value_fault(value, MAX_DEPTH)


def body_text(body: dict) -> str:
    """The body as stored; Unstorable when it could not come back out."""
    fault = body_fault(body)
    if fault is not None:
        raise Unstorable(fault)
    return _json(body)


def readable_body(text: str) -> dict:
    """A stored body as the API shows it. A body stored before the city
    bounded them (NaN, nested hundreds deep, not an object) would make the
    API fail: it is shown as {"unreadable": why}, the row stays as it is."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError, TypeError) as e:
        return {"unreadable": f"not JSON the city can read ({type(e).__name__})"}
    fault = body_fault(body) if isinstance(body, dict) else "not a JSON object"
    return body if fault is None else {"unreadable": fault}


def _sensors(text: str) -> list[str]:
    try:
        sensors = json.loads(text)
    except (ValueError, RecursionError):
        return []
    return [s for s in sensors if isinstance(s, str)] if isinstance(sensors, list) else []


def printable(raw: object, limit: int = 200) -> str:
    """A payload or record made safe and short for a log line or a TEXT
    column, whatever it holds."""
    if isinstance(raw, Record):
        raw = {"seq": raw.seq, "room": raw.room, "kind": raw.kind, "at": raw.at, "body": raw.body}
    try:
        text = truncate(raw, limit)
    except (RecursionError, ValueError) as e:  # ValueError: an integer too long to print
        text = f"(not printable: {type(e).__name__})"
    return text.encode("utf-8", "replace").decode("utf-8")


def _gateway_id(gateway: str | None) -> str | None:
    # Shown, never used as a key: made storable rather than refused.
    return None if gateway is None else printable(gateway, 64)


def readings(body: dict) -> dict:
    """A telemetry body's readings, generically: a list of three numbers is
    (min, mean, max) over the interval, anything else the latest value."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in _TELEMETRY_META:
            continue
        if (isinstance(value, list) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            out[name] = {"min": value[0], "mean": value[1], "max": value[2]}
        else:
            out[name] = value
    return out


def redacted(url: str) -> str:
    """A database URL for a log line: never its password."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "(a database URL that cannot be read)"


def _record_fault(error: BaseException) -> bool:
    """Whether a database error is one record's fault (a value the database
    refused: PostgreSQL's class 22, data exception), not the database's."""
    orig = getattr(error, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or ""
    return isinstance(error, exc.DataError) or sqlstate.startswith("22")


_NAMED = re.compile(r"(?<![:\w]):(\w+)")
_DRIVER_SQL: dict[tuple[str, str], str] = {}


def driver_sql(sql: str, dialect: str) -> str:
    """`sql` with `:name` parameters in the driver's own style (sqlite3
    takes `:name`, psycopg `%(name)s`): run as it is, without SQLAlchemy
    compiling and processing each statement's parameters (a batch's fixed
    statements, at every batch)."""
    key = (sql, dialect)
    found = _DRIVER_SQL.get(key)
    if found is None:
        found = sql if dialect == "sqlite" else _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))
        if len(_DRIVER_SQL) < 1024:
            _DRIVER_SQL[key] = found
    return found


_by_seq = operator.attrgetter("seq")


class _Redo(Exception):
    """A record of the batch failed: do the batch again, record by record."""


class _Work:
    """One batch under way: its school and epoch, and the rows it moves,
    read once and written once at the end (rooms, telemetry)."""

    __slots__ = ("conn", "dialect", "school", "epoch", "gen", "received_at", "gateway", "rooms", "dirty",
                 "telemetry")

    def __init__(self, conn: Connection, school: str, epoch: str, gen: int, received_at: float,
                 gateway: str | None) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.school = school
        self.epoch = epoch
        self.gen = gen
        self.received_at = received_at
        self.gateway = gateway
        self.rooms: dict[str, dict[str, Any] | None] = {}
        self.dirty: set[str] = set()
        self.telemetry: list[tuple] = []

    def execute(self, sql: str, params: dict | None = None) -> sa.CursorResult:
        return self.conn.exec_driver_sql(driver_sql(sql, self.dialect), params or {})


class CityStore:
    def __init__(self, path: str | None = None, url: str | None = None):
        if url is None:
            if not path or path == ":memory:":
                # Each reader opens its own connection; an in-memory database
                # would be a different, empty one for each.
                raise StoreError("the city store needs a file path, not :memory:")
            self.path = str(path)
            url = "sqlite:///" + os.path.abspath(self.path)
        else:
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]  # psycopg 3, the one installed
            self.path = "" if url.startswith("postgresql") else sa.engine.make_url(url).database or ""
        self.url = url
        self.shown = redacted(url) if not self.path else self.path
        self._lock = threading.Lock()
        try:
            self._engine = self._writer_engine(url)
            self._reader_engine = self._readers(url)
            self.dialect = self._engine.dialect.name
            self._conn = self._engine.connect()
        except (exc.SQLAlchemyError, ImportError, ValueError) as e:
            raise StoreError(f"cannot open the city database {self.shown}: {_why(e)}") from e
        try:
            self.schema_version = self._migrate()
        except (exc.SQLAlchemyError, StoreError, OSError) as e:
            self._conn.close()
            self._engine.dispose()
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"cannot open the city database {self.shown}: {_why(e)}") from e
        self._statements()

    # ------------------------------------------------------------ engines

    @staticmethod
    def _writer_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                      poolclass=NullPool)

            @event.listens_for(engine, "connect")
            def _connect(dbapi, record) -> None:
                dbapi.isolation_level = None  # we say BEGIN ourselves (below)
                dbapi.execute("PRAGMA journal_mode=WAL")
                # FULL, not NORMAL: an ack tells the gateway to delete its copy,
                # so what we acked must survive a power cut here.
                dbapi.execute("PRAGMA synchronous=FULL")

            @event.listens_for(engine, "begin")
            def _begin(conn) -> None:
                # The write lock at once: no reader-to-writer upgrade to fail later.
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        engine = sa.create_engine(url, pool_size=1, max_overflow=2, pool_pre_ping=True)

        @event.listens_for(engine, "connect")
        def _incoming(dbapi, record) -> None:
            # Where a batch's records are copied (COPY) before one INSERT ...
            # SELECT: a temporary table lives as long as its connection.
            dbapi.execute("CREATE TEMPORARY TABLE IF NOT EXISTS incoming_records (school TEXT, epoch TEXT, "
                          "seq BIGINT, room TEXT, kind TEXT, at DOUBLE PRECISION, body TEXT, "
                          "received_at DOUBLE PRECISION)")
            dbapi.commit()

        return engine

    @staticmethod
    def _readers(url: str) -> Engine:
        if url.startswith("sqlite"):
            # A connection per read, as before SQLAlchemy: a file replaced or
            # removed under the service is seen at once, never a stale handle.
            engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                      poolclass=NullPool)

            @event.listens_for(engine, "connect")
            def _connect(dbapi, record) -> None:
                dbapi.isolation_level = None
                dbapi.execute("PRAGMA query_only = ON")
                # Whatever another program wrote in a TEXT column, a read never fails on it.
                dbapi.text_factory = lambda raw: raw.decode("utf-8", "replace")

            @event.listens_for(engine, "begin")
            def _begin(conn) -> None:
                conn.exec_driver_sql("BEGIN")

            return engine
        # One snapshot per read (status reads several tables).
        return sa.create_engine(url, pool_size=4, max_overflow=8, pool_pre_ping=True,
                                isolation_level="REPEATABLE READ")

    def _migrate(self) -> int:
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        conn = self._conn
        legacy = 0
        if self.dialect == "sqlite":
            legacy = conn.exec_driver_sql("PRAGMA user_version").scalar() or 0
            if legacy > SCHEMA_VERSION:
                raise StoreError(f"cannot open the city database {self.shown}: schema version {legacy} was written "
                                 f"by a newer Préau (this one knows up to {SCHEMA_VERSION}); upgrade this program, "
                                 "or restore a backup made by this version")
        conn.commit()
        current = MigrationContext.configure(conn).get_current_revision()
        conn.commit()
        if current is not None and current not in REVISIONS:
            raise StoreError(f"cannot open the city database {self.shown}: schema revision {current} was written by "
                             "a newer Préau; upgrade this program, or restore a backup made by this version")
        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        config.attributes["connection"] = conn
        if current is None and legacy:
            # Written before Alembic, by common.migrate's numbered steps: step
            # N is revision N (the same SQL, carried over).
            command.stamp(config, REVISIONS[legacy - 1])
            conn.commit()
        command.upgrade(config, "head")
        conn.commit()
        if self.dialect == "sqlite":
            # Kept for the cities before Alembic: one of them refuses this
            # database ("newer") rather than write into it.
            conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
        return SCHEMA_VERSION

    def _statements(self) -> None:
        self._mark = "?" if self.dialect == "sqlite" else "%s"
        self._for_update = " FOR UPDATE" if self.dialect == "postgresql" else ""
        self._upsert_epoch = driver_sql(
            "INSERT INTO epochs (school, epoch, n, gateway, acked, first_seen, last_seen) VALUES (:school, :epoch, "
            "(SELECT COALESCE(MAX(n), 0) + 1 FROM epochs WHERE school = :school), :gateway, 0, :now, :now) "
            "ON CONFLICT (school, epoch) DO UPDATE SET last_seen = excluded.last_seen, gateway = excluded.gateway "
            "RETURNING n, acked, dropped, first_seen, gap_since", self.dialect)
        row = "(" + ", ".join([self._mark] * len(_ROOM_COLUMNS + ("school", "room"))) + ")"
        self._upsert_room = (
            "INSERT INTO rooms (school, room, " + ", ".join(_ROOM_COLUMNS) + ") VALUES " + row
            + " ON CONFLICT (school, room) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in _ROOM_COLUMNS))
        row = "(" + ", ".join([self._mark] * 7) + ")"
        self._insert_telemetry = (
            "INSERT INTO telemetry (school, epoch, seq, room, at, interval_s, body) VALUES " + row
            + " ON CONFLICT (school, epoch, seq) DO NOTHING")
        self._insert_records: dict[int, str] = {}

    def _records_insert(self, rows: int) -> str:
        """One statement for a batch's records: a multi-row INSERT whose
        RETURNING names the seqs stored now (a repeat returns nothing).
        Written for the driver (its parameter marks), once per row count:
        the statement cache of SQLite and psycopg's prepared statements
        find it again."""
        sql = self._insert_records.get(rows)
        if sql is None:
            row = "(" + ", ".join([self._mark] * 8) + ")"
            sql = ("INSERT INTO records (school, epoch, seq, room, kind, at, body, received_at) VALUES "
                   + ", ".join([row] * rows) + " ON CONFLICT (school, epoch, seq) DO NOTHING RETURNING seq")
            if len(self._insert_records) < 256:
                self._insert_records[rows] = sql
        return sql

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._engine.dispose()
            self._reader_engine.dispose()

    @contextmanager
    def connect(self, *, write: bool) -> Iterator[Connection]:
        """One transaction on a connection of its own, for the city's tables
        beside the schools' (the alerts, cloud_bridge/alerts.py), never the
        ingest's writer connection nor its lock. `write`: SQLite takes its
        write lock at once (BEGIN IMMEDIATE), PostgreSQL reads committed
        rows; else a read, one snapshot. StoreWriteError, StoreReadError."""
        engine = self._engine if write else self._reader_engine
        try:
            with engine.connect() as conn, conn.begin():
                yield conn
        except exc.SQLAlchemyError as e:
            if write:
                raise StoreWriteError(f"the city database cannot be written now: {_why(e)}") from e
            raise StoreReadError(f"the city database cannot be read now: {_why(e)}") from e

    # ---------------------------------------------------------------- writes

    @contextmanager
    def _writing(self, what: str) -> Iterator[Connection]:
        with self._lock:
            try:
                if self._conn.invalidated or self._conn.closed:
                    self._conn.close()
                    self._conn = self._engine.connect()
                with self._conn.begin():
                    yield self._conn
            except exc.SQLAlchemyError as e:
                raise StoreWriteError(f"{what}: {_why(e)}") from e

    def store_batch(self, batch: Batch, received_at: float, checked: bool = False) -> Stored:
        """Store a batch in one transaction; idempotent per (school, epoch, seq).
        `checked`: its records come from protocol.citylink.parse_batch, which
        already checked every body against the contract's bounds."""
        try:
            with self._writing(f"school {batch.school}") as conn:
                return self._store_batch(conn, batch, received_at, checked, careful=False)
        except _Redo:
            pass  # rolled back whole: once more, each record on its own
        with self._writing(f"school {batch.school}") as conn:
            return self._store_batch(conn, batch, received_at, checked, careful=True)

    def store_batches(self, batches: Sequence[Batch], received_at: float,
                      checked: bool = False) -> list[Stored | Exception]:
        """Store several batches in one transaction: a group commit, for a
        backlog. A commit (an fsync) is the largest cost of a batch of 200
        records once the rest is lean; the ingest's writer groups the
        batches already waiting in its queue, so a drain pays it once per
        group, and a lone batch, as before, once. The acks wait for the
        group's commit: nothing is acknowledged before it is durable.

        The batches are taken in school order (each school's in its own
        order, the sort is stable): two workers on PostgreSQL then lock the
        schools' rows in one order and never deadlock. If any batch needs
        its records stored one by one (a bad record), or the transaction
        fails, the group is rolled back and each batch stored on its own
        (store_batch), so one batch's trouble costs the others nothing but
        time. Results in the order given: a Stored, or the exception that
        kept that batch from being stored (a StoreWriteError: the
        database's trouble; anything else: a bug)."""
        if len(batches) == 1:
            return [self._one_of_many(batches[0], received_at, checked)]
        results: dict[int, Stored] = {}
        try:
            with self._writing("a group of %d batches" % len(batches)) as conn:
                for i in sorted(range(len(batches)), key=lambda i: batches[i].school):
                    results[i] = self._store_batch(conn, batches[i], received_at, checked, careful=False)
            return [results[i] for i in range(len(batches))]
        except Exception:  # rolled back whole: each batch on its own says what was wrong
            pass
        return [self._one_of_many(batch, received_at, checked) for batch in batches]

    def _one_of_many(self, batch: Batch, received_at: float, checked: bool) -> Stored | Exception:
        try:
            return self.store_batch(batch, received_at, checked)
        except Exception as e:  # handed back: the caller logs it with its batch
            return e

    def _store_batch(self, conn: Connection, batch: Batch, received_at: float, checked: bool,
                     careful: bool) -> Stored:
        school, epoch = batch.school, batch.epoch
        gateway = _gateway_id(batch.gateway)
        # First: this school's row, locked until the commit on PostgreSQL, so
        # two workers apply one school's batches one after the other.
        conn.exec_driver_sql(driver_sql(
            "INSERT INTO schools (school, gateway, last_seen) VALUES (:school, :gateway, :now) "
            "ON CONFLICT (school) DO UPDATE SET gateway = excluded.gateway, "
            "last_seen = CASE WHEN schools.last_seen IS NULL OR excluded.last_seen > schools.last_seen "
            "THEN excluded.last_seen ELSE schools.last_seen END", self.dialect),
            {"school": school, "gateway": gateway, "now": received_at})
        gen, acked, any_dropped, gap_open = self._epoch_row(conn, school, epoch, gateway, received_at)
        work = _Work(conn, school, epoch, gen, received_at, batch.gateway)
        refused = [Refused(b.seq, b.reason, b.message, b.raw) for b in batch.bad]
        items: list[tuple[Record, str]] = []
        # In seq order, so the live room view moves forward within a batch.
        for record in sorted(batch.records, key=_by_seq):
            if record.seq > MAX_INT:
                refused.append(Refused(None, "record_seq", f"record {str(record.seq)[:24]}: seq beyond {MAX_INT}",
                                       record))
                continue
            try:
                raw = getattr(record, "raw", None)
                if checked:
                    text = raw if raw is not None else _json(record.body)
                else:
                    text = body_text(record.body)
            except (Unstorable, ValueError, TypeError) as e:
                refused.append(Refused(record.seq, "record_body", f"record {record.seq}: body: {e}", record))
                continue
            items.append((record, text))
        if careful:
            outcomes = [self._store_one(work, record, text) for record, text in items]
        else:
            try:
                outcomes = self._store_records(work, items)
            except Exception as e:
                if isinstance(e, exc.SQLAlchemyError) and not _record_fault(e):
                    raise  # the database's trouble, not a record's: not acked, comes again
                # One record could not be stored or applied: the transaction is
                # rolled back, and the batch done again, each record under its
                # own savepoint (no savepoint costs the batches that need none).
                raise _Redo from e
        self._flush(work)
        stored = duplicates = unusable = telemetry = 0
        conflicts: list[Conflict] = []
        for (record, _), outcome in zip(items, outcomes, strict=True):
            if outcome is True:  # the common case first: stored and applied
                stored += 1
                telemetry += record.kind == "telemetry"
            elif isinstance(outcome, Refused):
                refused.append(outcome)
            elif isinstance(outcome, Conflict):
                conflicts.append(outcome)
                duplicates += not outcome.new
            elif outcome is None:
                duplicates += 1
            else:
                stored += 1
                unusable += not outcome
                telemetry += record.kind == "telemetry"
        set_aside, refused = self._set_aside(work, refused)
        duplicates += sum(not r.new for r in refused)
        dropped = self._record_dropped(work, batch.dropped)
        # Every seq of the batch is now stored or set aside (those too large
        # for a seq excepted): the ack passes them without reading them back.
        present = sorted({r.seq for r, _ in items} | {r.seq for r in refused if r.seq is not None and r.seq <= MAX_INT})
        acked = self._advance_ack(work, acked, any_dropped or bool(dropped), present, gap_open)
        if conflicts:
            acked = self._conflict_ack(acked, batch)
        return Stored(stored, duplicates, set_aside, acked, unusable, tuple(refused), tuple(conflicts), epoch,
                      dropped, telemetry)

    def _epoch_row(self, conn: Connection, school: str, epoch: str, gateway: str | None,
                   now: float) -> tuple[int, int, bool, bool]:
        """(n, acked, any dropped, a gap open) of the batch's epoch; a new epoch comes
        after the school's others. One statement (the school's row is
        locked already, so `n` cannot be taken twice)."""
        n, acked, dropped, first_seen, gap_since = conn.exec_driver_sql(self._upsert_epoch, {
            "school": school, "epoch": epoch, "gateway": gateway, "now": now}).one()
        if first_seen == now and n > 1:
            log.warning("school %s: a new gateway database (epoch %r, after %d before it): its records are kept "
                        "apart from the older ones", school, epoch, n - 1)
        return n, acked, bool(dropped), gap_since is not None

    def _store_records(self, work: _Work, items: Sequence[tuple[Record, str]]) -> list:
        """Every record at once: one INSERT for all, the repeats compared in
        one read, then each new record applied (to the cached rooms)."""
        if not items:
            return []
        unread = {r.room for r, _ in items if r.kind in _LIVE_KINDS and r.room not in work.rooms}
        if unread:
            # Every room of the batch in one read.
            work.rooms.update(dict.fromkeys(unread))
            names = {f"r{i}": room for i, room in enumerate(sorted(unread))}
            select = ("SELECT room, " + ", ".join(_ROOM_COLUMNS) + " FROM rooms WHERE school = :school AND room IN ("
                      + ", ".join(":" + key for key in names) + ")")
            for row in work.execute(select, {"school": work.school, **names}):
                work.rooms[row[0]] = dict(zip(_ROOM_COLUMNS, row[1:], strict=True))
        new = self._insert_new(work, items)
        # A seq twice in one batch: its first copy is new, the second a repeat of it.
        stored_copies = self._stored_copies(work, [r.seq for r, _ in items]) if len(new) != len(items) else {}
        outcomes: list = []
        apply_to_room, telemetry, school = self._apply_to_room, work.telemetry, work.school
        for record, text in items:
            seq = record.seq
            if seq not in new:
                outcomes.append(self._repeat_or_conflict(work, record, text, stored_copies.get(seq)))
                continue
            new.discard(seq)
            kind = record.kind
            if kind == "telemetry":
                interval = record.body.get("interval_s")
                if not isinstance(interval, (int, float)) or isinstance(interval, bool):
                    interval = None
                telemetry.append((school, work.epoch, seq, record.room, record.at, interval, text))
                outcomes.append(True)
            elif kind in _LIVE_KINDS and record.room != GATEWAY_ROOM:
                outcomes.append(apply_to_room(work, school, record))
            else:
                outcomes.append(True)  # kept as it came: a decision, an audit entry, a gateway's record
        return outcomes

    def _insert_new(self, work: _Work, items: Sequence[tuple[Record, str]]) -> set[int]:
        """Insert the records; the seqs stored now (not repeats)."""
        school, epoch, now = work.school, work.epoch, work.received_at
        if self.dialect == "postgresql" and len(items) > 1:
            # COPY into a temporary table, then one INSERT ... SELECT: no
            # statement of 1,600 parameters for psycopg to parse at each batch.
            with _driver_cursor(work) as cursor:
                with cursor.copy("COPY incoming_records FROM STDIN") as copy:
                    for r, text in items:
                        copy.write_row((school, epoch, r.seq, r.room, r.kind, r.at, text, now))
                cursor.execute(
                    "INSERT INTO records (school, epoch, seq, room, kind, at, body, received_at) "
                    "SELECT school, epoch, seq, room, kind, at, body, received_at FROM incoming_records "
                    "ORDER BY seq ON CONFLICT (school, epoch, seq) DO NOTHING RETURNING seq")
                new = {row[0] for row in cursor.fetchall()}
                # TRUNCATE, not DELETE: autovacuum never visits a temporary
                # table, so deleted rows would linger in it; and it is faster
                # (COPY then INSERT: 0.84x the rows of a raw executemany, 0.72x with DELETE).
                cursor.execute("TRUNCATE incoming_records")
                return new
        values: list = []
        for r, text in items:
            values += (school, epoch, r.seq, r.room, r.kind, r.at, text, now)
        with _driver_cursor(work) as cursor:
            cursor.execute(self._records_insert(len(items)), values)
            return {row[0] for row in cursor.fetchall()}

    def _store_one(self, work: _Work, record: Record, text: str) -> bool | None | Refused | Conflict:
        """One record under its own savepoint: stored and applied, or
        nothing of it left (its room row back as it was)."""
        row = work.rooms.get(record.room)
        before = (dict(row) if row else row,
                  record.room in work.dirty, len(work.telemetry), record.room in work.rooms)
        try:
            with work.conn.begin_nested():
                return self._store_records(work, [(record, text)])[0]
        except exc.SQLAlchemyError as e:
            if not _record_fault(e):
                raise  # the database's trouble: the batch is not acked, and comes again
            self._restore(work, record.room, before)
            return Refused(record.seq, "record_body", f"record {record.seq}: {_why(e)}", record)
        except (OverflowError, RecursionError, ValueError) as e:
            # A value the database cannot bind (a boot or uptime beyond 64 bits...).
            self._restore(work, record.room, before)
            return Refused(record.seq, "record_body", f"record {record.seq}: {type(e).__name__}: {e}", record)
        except Exception as e:
            # A bug of ours. Set aside all the same: holding the school's ack
            # back would make its gateway resend its whole outbox for ever.
            self._restore(work, record.room, before)
            log.exception("school %s record %d: not stored (a bug), set aside", work.school, record.seq)
            return Refused(record.seq, INTERNAL_ERROR, f"record {record.seq}: {type(e).__name__}: {e}", record)

    @staticmethod
    def _restore(work: _Work, room: str, before: tuple) -> None:
        row, dirty, telemetry, known = before
        if known:
            work.rooms[room] = row
        else:
            work.rooms.pop(room, None)
        if not dirty:
            work.dirty.discard(room)
        del work.telemetry[telemetry:]

    def _stored_copies(self, work: _Work, seqs: list[int]) -> dict[int, tuple]:
        rows = work.conn.execute(
            sa.text("SELECT seq, room, kind, at, body FROM records WHERE school = :school AND epoch = :epoch "
                    "AND seq IN :seqs").bindparams(sa.bindparam("seqs", expanding=True)),
            {"school": work.school, "epoch": work.epoch, "seqs": seqs})
        return {row[0]: tuple(row[1:]) for row in rows}

    def _flush(self, work: _Work) -> None:
        if work.telemetry:
            work.conn.exec_driver_sql(self._insert_telemetry, work.telemetry)
        if work.dirty:
            rows = []
            for room in sorted(work.dirty):
                row = work.rooms[room]
                assert row is not None  # a room is dirty once it has a row
                rows.append((work.school, room, *(row[name] for name in _ROOM_COLUMNS)))
            work.conn.exec_driver_sql(self._upsert_room, rows)

    @staticmethod
    def _conflict_ack(acked: int, batch: Batch) -> int:
        """The ack for a batch that met stored records of another content.

        The ack says "every seq up to N is stored", so the gateway deletes its
        copies; but here some of those seqs hold another sender's records.
        Their true copies are kept (conflicting_records), so acking them
        loses nothing; acking beyond this batch could. A forged batch that
        burnt seqs ahead of the real gateway makes the contiguous count run
        ahead of what that gateway ever sent: it ignores such an ack
        (edge_gateway/city_link.py), and would resend for ever. So a batch in
        conflict is acked up to its own last seq at most: the sender of a
        batch has sent that far, and its link goes on."""
        seqs = [r.seq for r in batch.records] + [b.seq for b in batch.bad if b.seq is not None]
        return min(acked, max(seqs))

    def _repeat_or_conflict(self, work: _Work, record: Record, body: str, stored: tuple | None) -> Conflict | None:
        """None when the stored record is this one (a resend); otherwise this
        other content is kept in conflicting_records (once) and never
        applied: the first copy may be the forgery, and the city cannot tell.
        Compared by meaning (keys in any order), not by bytes."""
        if stored is None:  # unreachable: the insert met this very row
            return None
        mine = _canonical(record.room, record.kind, record.at, record.body)
        try:
            theirs = _canonical(stored[0], stored[1], stored[2], json.loads(stored[3]))
        except (ValueError, RecursionError, TypeError):
            theirs = None  # a body stored before the city bounded them
        if mine == theirs:
            return None
        digest = hashlib.sha256(mine.encode()).hexdigest()
        cur = work.execute(
            "INSERT INTO conflicting_records (school, epoch, seq, digest, gateway, room, kind, at, body, received_at) "
            "VALUES (:school, :epoch, :seq, :digest, :gateway, :room, :kind, :at, :body, :now) "
            "ON CONFLICT (school, epoch, seq, digest) DO NOTHING",
            {"school": work.school, "epoch": work.epoch, "seq": record.seq, "digest": digest,
             "gateway": _gateway_id(work.gateway), "room": record.room, "kind": record.kind, "at": record.at,
             "body": body, "now": work.received_at},
        )
        return Conflict(record.seq, cur.rowcount == 1)

    def _set_aside(self, work: _Work, refused: list[Refused]) -> tuple[int, list[Refused]]:
        # A refused record whose seq we could read is kept here with its
        # reason. It counts as received for the ack, otherwise one bad record
        # would hold the school's ack back for ever and its gateway would
        # resend its whole outbox every 10 s. An operator can read it here.
        # A record already set aside, or already stored whole, is a repeat.
        count = 0
        out = []
        for item in refused:
            if item.seq is None or not 1 <= item.seq <= MAX_INT:
                out.append(item)
                continue
            cur = work.execute(
                "INSERT INTO rejected_records (school, epoch, seq, reason, record, received_at) "
                "SELECT :school, :epoch, :seq, :reason, :record, :now WHERE NOT EXISTS "
                "(SELECT 1 FROM records WHERE school = :school AND epoch = :epoch AND seq = :seq) "
                "ON CONFLICT (school, epoch, seq) DO NOTHING",
                {"school": work.school, "epoch": work.epoch, "seq": item.seq, "reason": item.reason,
                 "record": printable(item.raw, REJECTED_TEXT_CHARS), "now": work.received_at},
            )
            count += cur.rowcount
            out.append(item if cur.rowcount == 1 else Refused(item.seq, item.reason, item.message, item.raw, False))
        return count, out

    def _record_dropped(self, work: _Work, ranges: Sequence[tuple[int, int]]) -> int:
        """The seq ranges the gateway says it will never send: kept (once),
        counted, and passed by the ack."""
        count = 0
        for first, last in ranges:
            if last > MAX_INT:
                continue
            cur = work.execute(
                "INSERT INTO dropped_ranges (school, epoch, first, last, received_at) "
                "VALUES (:school, :epoch, :first, :last, :now) ON CONFLICT (school, epoch, first, last) DO NOTHING",
                {"school": work.school, "epoch": work.epoch, "first": first, "last": last, "now": work.received_at})
            if cur.rowcount == 1:
                count += last - first + 1
        if count:
            work.execute("UPDATE epochs SET dropped = dropped + :n WHERE school = :school AND epoch = :epoch",
                         {"n": count, "school": work.school, "epoch": work.epoch})
        return count

    def _advance_ack(self, work: _Work, acked: int, any_dropped: bool, present: Sequence[int] = (),
                     gap_open: bool = True) -> int:
        # Contiguous from 1, not from the lowest seq seen: if a later batch
        # arrives before an earlier one was ever received, acking from the
        # lowest seen would tell the gateway to delete records the city
        # never got. A gateway's outbox starts at 1 (docs/protocol.md). Seqs
        # the gateway said it dropped count as received.
        key = {"school": work.school, "epoch": work.epoch}
        dropped = [tuple(r) for r in work.execute(
            "SELECT first, last FROM dropped_ranges WHERE school = :school AND epoch = :epoch AND last > :acked "
            "ORDER BY first", {**key, "acked": acked})] if any_dropped else []
        beyond = False
        while True:
            for first, last in dropped:
                if first <= acked + 1 <= last:
                    acked = last
            for seq in present:  # the batch's own seqs, in order
                if seq == acked + 1:
                    acked = seq
                elif seq > acked + 1:
                    break
            if present and not gap_open and not dropped and acked >= present[-1]:
                # Nothing was stored beyond the ack before this batch (no gap
                # open), and this batch is contiguous from it: nothing to read.
                break
            present = ()
            for first, last in dropped:
                if first <= acked + 1 <= last:
                    acked = last
            rows = work.execute(
                "SELECT seq FROM records WHERE school = :school AND epoch = :epoch AND seq > :acked "
                "UNION SELECT seq FROM rejected_records WHERE school = :school AND epoch = :epoch AND seq > :acked "
                "ORDER BY seq LIMIT :n", {**key, "acked": acked, "n": _ACK_SCAN}).fetchall()
            moved = False
            for (seq,) in rows:
                if seq <= acked:
                    continue
                if seq != acked + 1:
                    if any(first <= acked + 1 <= last for first, last in dropped):
                        moved = True
                        break
                    beyond = True
                    break
                acked = seq
            else:
                if len(rows) == _ACK_SCAN:
                    continue
                if any(first <= acked + 1 <= last for first, last in dropped):
                    continue
                break
            if not moved:
                break
        # A gap (records stored beyond the ack) is timed from when it was
        # first seen: the city asks the gateway for it if it lasts.
        work.execute(
            "UPDATE epochs SET acked = :acked, "
            "gap_since = CASE WHEN :gap THEN COALESCE(gap_since, :now) ELSE NULL END, "
            "gap_asked = CASE WHEN :gap THEN gap_asked ELSE NULL END "
            "WHERE school = :school AND epoch = :epoch",
            {**key, "acked": acked, "gap": beyond, "now": work.received_at})
        return acked

    def _room(self, work: _Work, room: str) -> dict[str, Any] | None:
        """The room's row as this batch sees it: read once per batch (all
        the batch's rooms of the school at once would cost more when few)."""
        if room not in work.rooms:
            found = work.execute(
                "SELECT " + ", ".join(_ROOM_COLUMNS) + " FROM rooms WHERE school = :school AND room = :room",
                {"school": work.school, "room": room}).first()
            work.rooms[room] = dict(zip(_ROOM_COLUMNS, found, strict=True)) if found else None
        return work.rooms[room]

    def _apply_to_room(self, work: _Work, school: str, record: Record) -> bool:
        """Move the live room row forward; False when the body is unusable."""
        kind, room, body = record.kind, record.room, record.body
        if room == GATEWAY_ROOM or kind not in _LIVE_KINDS:
            return True
        try:
            if kind == "evt":
                check_evt(body)
            elif kind == "state":
                check_state(body)
        except ProtocolError as e:
            log.warning("school %s record %d: body kept but not applied to room %s: %s",
                        school, record.seq, room, e)
            return False
        found = work.rooms[room] if room in work.rooms else self._room(work, room)
        row: dict[str, Any] = found if found else {**dict.fromkeys(_ROOM_COLUMNS), "live_seq": 0, "live_gen": 0}
        new = dict(row)
        new["last_seen"] = record.at if row["last_seen"] is None else max(row["last_seen"], record.at)
        boot = body.get("boot")
        live = self._is_live(record, row, work.gen)
        if live and row["boot"] is not None and boot > row["boot"]:
            # The board restarted: at boot it announces again the kit it
            # finds plugged in, so a kit attached under an older boot is no
            # longer known to be there.
            work.execute(
                "UPDATE kits SET attached = 0 WHERE school = :school AND room = :room AND attached = 1 "
                "AND boot < :boot", {"school": school, "room": record.room, "boot": boot})
        if live:
            uptime = body.get("uptime_ms")
            if uptime is not None:
                new["live_uptime"] = uptime  # never older than the room's: _is_live said so
            elif boot != row["boot"]:
                new["live_uptime"] = None  # a newer boot's death: its uptime is unknown
        if live and record.kind == "state":
            new.update(online=int(body["online"]), boot=boot, live_seq=record.seq, live_gen=work.gen)
            if body["online"]:
                new.update(session=body["session"], ap=int(body["ap"]), fw=body["fw"], board=body["board"])
        elif live:
            # An event of the live boot, or of a newer boot whose birth has
            # not reached us yet: either way the board is up.
            new["online"] = 1
            new["boot"] = boot
            new["live_seq"] = record.seq
            new["live_gen"] = work.gen
            event_type = body["type"]
            after = session_after(body)
            if after is not None:
                new["session"] = after
            if event_type == "boot":
                new["ap"] = 0  # the access point is off at every boot
            elif event_type == "ap.changed":
                new["ap"] = int(body["data"]["on"])
            elif event_type in _KIT_EVENTS:
                self._apply_to_kit(work, school, record)
        elif (record.kind == "evt" and body.get("type") in _KIT_EVENTS and not body.get("replay")
              and body.get("time") is not None and row["boot"] is not None and boot == row["boot"]):
            # Kept in the board's flash outbox during an outage: older than
            # its birth, so not the room's present; but the kit did move then,
            # and with the board's own time the kit's ordering can place it.
            self._apply_to_kit(work, school, record)
        if new != row or not found:
            # Every number set here fits a 64-bit column: a boot and an uptime
            # by the contract's bounds (check_state, check_evt, just above), a
            # seq by _store_batch's, the generation and the rest as read.
            work.rooms[record.room] = new
            work.dirty.add(record.room)
        return True

    @staticmethod
    def _is_live(record: Record, row: dict[str, Any], gen: int = 0) -> bool:
        """Whether a checked record of a room moves its live view.

        An ack only says the room was heard. A replayed event is history by
        definition. A record of an older boot than the room's is history;
        one of a newer boot is the present (the board restarted). Within the
        room's boot, the board's own clock orders what it did, as the
        gateway does (edge_gateway/registry.py `_fresh`): a state or event
        with an `uptime_ms` older than the room's `live_uptime` is history,
        such as events kept in the board's flash outbox during an outage and
        sent just after its birth. A birth always moves it, whatever its
        boot (its uptime is the present of its connection), unless a later
        record of the gateway already did. Both within a boot: the gateway's
        order (epoch, then seq), so that a late batch never goes back (a
        death has no uptime).
        """
        body = record.body
        if record.kind == "ack" or body.get("replay"):
            return False
        later = (gen, record.seq) > (row.get("live_gen") or 0, row["live_seq"])
        boot, current = body.get("boot"), row["boot"]
        if current is None or boot > current:
            return True
        if record.kind == "state" and body["online"] and later:
            # A birth is the present, even with a lower boot: a board replaced,
            # or its flash wiped, counts its boots from 1 again (as the gateway does).
            return True
        if boot < current or not later:
            return False
        uptime, mark = body.get("uptime_ms"), row["live_uptime"]
        return uptime is None or mark is None or uptime >= mark

    def _apply_to_kit(self, work: _Work, school: str, record: Record) -> None:
        """Move a kit's row for a live kit.attached / kit.detached of `school`.

        The newest event wins, by when it happened: the event's own `time`
        (Unix seconds from the board) when the board had the time, else the
        record's `at` (the gateway's time). So a late batch from a school the
        kit has left, or events a board kept in its outbox while offline,
        never move it back. On a tie only an event of the kit's current room
        applies (the room's live rule has already ordered those). A detach
        applies only in the room where the kit is recorded: a detach from a
        room it has already left is history.
        """
        body = record.body
        data = body["data"]
        kit = data["kit"]
        if kit == UNKNOWN_KIT:
            return  # no identity to follow: the record stays in the room's history
        if not valid_name(kit):
            log.warning("school %s record %d: kit id %r is not an EEPROM id, kit not tracked", school, record.seq,
                        truncate(str(kit), 64))
            return
        attached = body["type"] == "kit.attached"
        sensors = data.get("sensors")
        if attached and not (
            isinstance(sensors, list)
            and len(sensors) <= _MAX_SENSORS
            and all(isinstance(s, str) and 1 <= len(s) <= 32 for s in sensors)
        ):
            log.warning("school %s record %d: kit %s has an unusable sensor list, kit not moved",
                        school, record.seq, kit)
            return
        time = body.get("time")
        # A time beyond the gateway's `at` plus a day is a broken clock: `at` stands in.
        when = record.at if time is None or time > record.at + MAX_CLOCK_AHEAD_S else float(time)
        # A kit travels between schools: two workers may move it at once.
        select = "SELECT " + ", ".join(_KIT_COLUMNS) + " FROM kits WHERE kit = :kit" + self._for_update
        found = work.execute(select, {"kit": kit}).first()
        if found:
            row = dict(zip(_KIT_COLUMNS, found, strict=True))
            here = (row["school"], row["room"]) == (school, record.room)
            if when < row["since"] or (when == row["since"] and not here):
                return  # older news (or a tie from elsewhere): where it is now stands
            if not attached and not here:
                return  # unplugged from a room it had already left: history
        else:
            row = None
        new = {
            "school": school,
            "room": record.room,
            "attached": int(attached),
            # A detach keeps the sensors the kit was last attached with.
            "sensors": _json(sensors) if attached else (row["sensors"] if row else "[]"),
            "since": when,
            "last_seen": when if row is None else max(row["last_seen"], when),
            "boot": body["boot"],
        }
        work.execute(
            "INSERT INTO kits (kit, " + ", ".join(_KIT_COLUMNS) + ") "
            "VALUES (:kit, " + ", ".join(":" + name for name in _KIT_COLUMNS) + ") "
            "ON CONFLICT (kit) DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in _KIT_COLUMNS),
            {"kit": kit, **new},
        )

    def set_gateway_state(self, school: str, online: bool, gateway: str | None, now: float) -> None:
        with self._writing(f"school {school}") as conn:
            conn.execute(sa.text(
                "INSERT INTO schools (school, gateway, online, last_seen) VALUES (:school, :gateway, :online, :now) "
                "ON CONFLICT (school) DO UPDATE SET gateway = COALESCE(excluded.gateway, schools.gateway), "
                "online = excluded.online, last_seen = excluded.last_seen"),
                {"school": school, "gateway": _gateway_id(gateway), "online": int(online), "now": now})

    def gap_requests(self, now: float, after_s: float, school: str | None = None) -> list[GapRequest]:
        """The (school, epoch) whose records beyond the ack have waited for
        the missing ones longer than `after_s` and were not asked for within
        `after_s`: their missing ranges (at most MAX_GAP_RANGES), each claimed
        (asked now) so another worker does not ask again. Only each school's
        newest epoch: an older gateway database was replaced, nobody answers
        for it."""
        out = []
        with self._writing("gap requests") as conn:
            due = conn.execute(sa.text(
                "SELECT school, epoch, acked FROM epochs WHERE gap_since IS NOT NULL AND gap_since <= :cut "
                "AND (gap_asked IS NULL OR gap_asked <= :cut) "
                # Only the school's newest gateway database: a replaced one is gone.
                "AND NOT EXISTS (SELECT 1 FROM epochs newer WHERE newer.school = epochs.school AND newer.n > epochs.n)"
                + (" AND school = :school" if school else "")
                + " ORDER BY school, n" + self._for_update),
                {"cut": now - after_s, "school": school}).fetchall()
            for school_, epoch, acked in due:
                ranges = self._missing(conn, school_, epoch, acked)
                conn.execute(sa.text("UPDATE epochs SET gap_asked = :now WHERE school = :school AND epoch = :epoch"),
                             {"now": now, "school": school_, "epoch": epoch})
                if ranges:
                    out.append(GapRequest(school_, epoch, ranges))
        return out

    @staticmethod
    def _missing(conn: Connection, school: str, epoch: str, acked: int) -> list[tuple[int, int]]:
        """Ranges of seqs after `acked` that are neither stored, set aside
        nor dropped, below the highest stored."""
        rows = conn.execute(sa.text(
            "SELECT seq, nxt FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt FROM ("
            "SELECT :acked AS seq UNION SELECT seq FROM records WHERE school = :school AND epoch = :epoch "
            "AND seq > :acked UNION SELECT seq FROM rejected_records WHERE school = :school AND epoch = :epoch "
            "AND seq > :acked) s) g WHERE nxt > seq + 1 ORDER BY seq LIMIT :n"),
            {"school": school, "epoch": epoch, "acked": acked, "n": MAX_GAP_RANGES * 2}).fetchall()
        dropped = conn.execute(sa.text(
            "SELECT first, last FROM dropped_ranges WHERE school = :school AND epoch = :epoch AND last > :acked"),
            {"school": school, "epoch": epoch, "acked": acked}).fetchall()
        out: list[tuple[int, int]] = []
        for seq, nxt in rows:
            pieces = [(seq + 1, nxt - 1)]
            for first, last in dropped:
                pieces = [p for a, b in pieces for p in ((a, min(b, first - 1)), (max(a, last + 1), b)) if p[0] <= p[1]]
            out += pieces
        return out[:MAX_GAP_RANGES]

    def prune_telemetry(self, before: float) -> int:
        """Forget telemetry older than `before` (Unix seconds): its series
        rows, and its records once acknowledged (a record beyond the ack is
        kept, or its gap would be asked for again)."""
        with self._writing("telemetry retention") as conn:
            count = conn.execute(sa.text("DELETE FROM telemetry WHERE at < :before"), {"before": before}).rowcount
            conn.execute(sa.text(
                "DELETE FROM records WHERE kind = 'telemetry' AND at < :before AND seq <= "
                "(SELECT e.acked FROM epochs e WHERE e.school = records.school AND e.epoch = records.epoch)"),
                {"before": before})
        return count

    # ----------------------------------------------------------------- reads

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self._reader_engine.connect() as conn, conn.begin():
                yield conn
        except exc.SQLAlchemyError as e:
            raise StoreReadError(f"the city database cannot be read now: {_why(e)}") from e

    def _read(self, sql: str, params: dict | None = None) -> list[dict]:
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params or {}).mappings()]

    def status(self) -> dict:
        """Every school with its rooms, and how many records are stored."""
        with self._reading() as conn:  # one connection: one snapshot
            schools = conn.execute(sa.text(
                "SELECT s.school, s.gateway, s.online, s.last_seen, "
                # The school's ack and epoch: its newest gateway database's.
                "(SELECT e.acked FROM epochs e WHERE e.school = s.school ORDER BY e.n DESC LIMIT 1) AS acked, "
                "(SELECT e.epoch FROM epochs e WHERE e.school = s.school ORDER BY e.n DESC LIMIT 1) AS epoch, "
                "(SELECT COALESCE(SUM(e.dropped), 0) FROM epochs e WHERE e.school = s.school) AS dropped, "
                "(SELECT COUNT(*) FROM epochs e WHERE e.school = s.school AND e.gap_since IS NOT NULL) AS gaps "
                "FROM schools s ORDER BY s.school")).mappings().all()
            rooms = conn.execute(sa.text(
                "SELECT school, room, online, boot, session, ap, last_seen, fw, board FROM rooms ORDER BY school, room"
            )).mappings().all()
            count = conn.execute(sa.text("SELECT COUNT(*) FROM records")).scalar()
        by_school: dict[str, list[dict]] = {}
        for r in rooms:
            by_school.setdefault(r["school"], []).append(
                {
                    "room": r["room"],
                    "online": None if r["online"] is None else bool(r["online"]),
                    "boot": r["boot"],
                    "session": r["session"],
                    "ap": None if r["ap"] is None else bool(r["ap"]),
                    "last_seen": r["last_seen"],
                    "fw": r["fw"],
                    "board": r["board"],
                }
            )
        return {
            "schools": [
                {
                    "school": s["school"],
                    "gateway": s["gateway"],
                    "online": None if s["online"] is None else bool(s["online"]),
                    "last_seen": s["last_seen"],
                    "acked": s["acked"] or 0,
                    "epoch": s["epoch"],
                    "dropped": int(s["dropped"]),
                    "gaps": int(s["gaps"]),
                    "rooms": by_school.get(s["school"], []),
                }
                for s in schools
            ],
            "records": count,
        }

    def kits(self, school: str | None = None, kind: str | None = None) -> list[dict]:
        """Every tracked kit with its type (from its id, "air-co2" for
        "air-co2-03"; None for an id without a number) and where it is (or
        was last seen), by school, room and kit. An attached kit was last
        seen when its room last was. `kind` keeps the kits of one type."""
        sql = (
            "SELECT k.kit, k.school, k.room, k.attached, k.sensors, k.since, k.last_seen, r.last_seen AS room_seen "
            "FROM kits k LEFT JOIN rooms r ON r.school = k.school AND r.room = k.room"
        )
        params: dict = {}
        if school is not None:
            sql += " WHERE k.school = :school"
            params = {"school": school}
        sql += " ORDER BY k.school, k.room, k.kit"
        out = []
        for r in self._read(sql, params):
            if kind is not None and kit_type(r["kit"]) != kind:
                continue
            attached = bool(r["attached"])
            last_seen = r["last_seen"]
            if attached and r["room_seen"] is not None:
                last_seen = max(last_seen, r["room_seen"])
            out.append({
                "kit": r["kit"], "type": kit_type(r["kit"]), "school": r["school"], "room": r["room"],
                "attached": attached, "sensors": _sensors(r["sensors"]), "since": r["since"], "last_seen": last_seen,
            })
        return out

    def records(self, school: str | None = None, room: str | None = None, kind: str | None = None,
                limit: int = 100, epoch: str | None = None, since: float | None = None,
                until: float | None = None) -> list[dict]:
        """Newest first (RECORD_ORDER), within [since, until) of the gateway's time."""
        return self.records_page(school=school, room=room, kind=kind, limit=limit, epoch=epoch, since=since,
                                 until=until)[0]

    def records_page(self, school: str | None = None, room: str | None = None, kind: str | None = None,
                     limit: int = 100, epoch: str | None = None, since: float | None = None,
                     until: float | None = None, after: RecordKey | None = None) -> tuple[list[dict], RecordKey | None]:
        """One page of records, newest first: by the gateway's time, then
        school, epoch and seq, all descending (RECORD_ORDER, a unique key
        of the table), starting after the record `after`. Returns the rows
        and the key of the last one when more follow (else None): the next
        page starts after it. Records never change once stored, so paging
        by key returns each record present at the first page once,
        whatever is stored between pages (a record stored meanwhile shows
        on a later page if its key falls after the position reached)."""
        r = _RECORDS
        query = sa.select(r.c.school, r.c.epoch, r.c.seq, r.c.room, r.c.kind, r.c.at, r.c.body, r.c.received_at)
        for column, value in (("school", school), ("room", room), ("kind", kind), ("epoch", epoch)):
            if value is not None:
                query = query.where(r.c[column] == value)
        if since is not None:
            query = query.where(r.c.at >= since)
        if until is not None:
            query = query.where(r.c.at < until)
        if after is not None:
            # The row value (SQLite >= 3.15, PostgreSQL) is the exact rule;
            # `at <=` beside it lets either planner range-scan records_by_at.
            query = query.where(r.c.at <= after.at,
                                sa.tuple_(r.c.at, r.c.school, r.c.epoch, r.c.seq) < sa.tuple_(
                                    sa.literal(after.at, sa.Float), sa.literal(after.school),
                                    sa.literal(after.epoch), sa.literal(after.seq, sa.BigInteger)))
        query = query.order_by(*(r.c[name].desc() for name in RECORD_ORDER)).limit(limit + 1)
        with self._reading() as conn:
            rows = [dict(row) for row in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        last = RecordKey(rows[-1]["at"], rows[-1]["school"], rows[-1]["epoch"], rows[-1]["seq"]) if more else None
        return [{**row, "body": readable_body(row["body"])} for row in rows], last

    def audit(self, school: str, limit: int = 100, since: float | None = None,
              until: float | None = None) -> list[dict]:
        """The gateway's audit entries of one school (overrides, commands), newest first."""
        return self.records(school=school, kind="audit", limit=limit, since=since, until=until)

    def telemetry(self, school: str, room: str, since: float | None = None, until: float | None = None,
                  limit: int = 1000) -> list[dict]:
        """A room's telemetry series, oldest first, within [since, until)."""
        sql = ("SELECT school, room, epoch, seq, at, interval_s, body FROM telemetry "
               "WHERE school = :school AND room = :room")
        params: dict = {"school": school, "room": room, "limit": limit}
        if since is not None:
            sql += " AND at >= :since"
            params["since"] = since
        if until is not None:
            sql += " AND at < :until"
            params["until"] = until
        # The newest `limit` of the window, given oldest first.
        rows = self._read(sql + " ORDER BY at DESC, seq DESC LIMIT :limit", params)
        return [self._reading_out(r) for r in reversed(rows)]

    def latest_telemetry(self, school: str | None = None) -> list[dict]:
        """Each room's latest telemetry reading, by school and room."""
        sql = ("SELECT t.school, t.room, t.epoch, t.seq, t.at, t.interval_s, t.body FROM telemetry t JOIN "
               "(SELECT school, room, MAX(at) AS at FROM telemetry" + (" WHERE school = :school" if school else "")
               + " GROUP BY school, room) m ON m.school = t.school AND m.room = t.room AND m.at = t.at "
               "ORDER BY t.school, t.room, t.seq")
        latest: dict[tuple[str, str], dict] = {}
        for r in self._read(sql, {"school": school} if school else {}):
            latest[(r["school"], r["room"])] = r  # a tie on `at`: the last seq
        return [self._reading_out(r) for r in latest.values()]

    @staticmethod
    def _reading_out(r: dict) -> dict:
        body = readable_body(r["body"])
        n = body.get("n")
        return {"school": r["school"], "room": r["room"], "at": r["at"], "interval_s": r["interval_s"],
                "n": n if isinstance(n, int) and not isinstance(n, bool) else None,
                "readings": readings(body) if "unreadable" not in body else body}

    def record_count(self, school: str | None = None) -> int:
        if school is None:
            return self._read("SELECT COUNT(*) AS n FROM records")[0]["n"]
        return self._read("SELECT COUNT(*) AS n FROM records WHERE school = :school", {"school": school})[0]["n"]

    def seqs(self, school: str, epoch: str | None = None) -> list[int]:
        if epoch is None:
            rows = self._read("SELECT seq FROM records WHERE school = :school ORDER BY seq", {"school": school})
        else:
            rows = self._read("SELECT seq FROM records WHERE school = :school AND epoch = :epoch ORDER BY seq",
                              {"school": school, "epoch": epoch})
        return [r["seq"] for r in rows]

    def acked(self, school: str, epoch: str | None = None) -> int:
        if epoch is None:  # the school's newest gateway database
            rows = self._read("SELECT acked FROM epochs WHERE school = :school ORDER BY n DESC LIMIT 1",
                              {"school": school})
        else:
            rows = self._read("SELECT acked FROM epochs WHERE school = :school AND epoch = :epoch",
                              {"school": school, "epoch": epoch})
        return rows[0]["acked"] if rows else 0

    def epochs(self, school: str) -> list[dict]:
        """The school's gateway databases, oldest first, with their acks and drops."""
        return self._read("SELECT epoch, n, gateway, acked, dropped, first_seen, last_seen, gap_since, gap_asked "
                          "FROM epochs WHERE school = :school ORDER BY n", {"school": school})

    def dropped(self, school: str) -> list[dict]:
        return self._read("SELECT epoch, first, last, received_at FROM dropped_ranges WHERE school = :school "
                          "ORDER BY epoch, first", {"school": school})

    def rejected(self, school: str) -> list[dict]:
        return self._read(
            "SELECT seq, reason, record, received_at FROM rejected_records WHERE school = :school ORDER BY seq",
            {"school": school})

    def conflicts(self, school: str) -> list[dict]:
        """The other contents received for stored seqs, by seq, with the stored one beside."""
        rows = self._read(
            "SELECT c.seq, c.epoch, c.gateway, c.room, c.kind, c.at, c.body, c.received_at, "
            "r.room AS stored_room, r.kind AS stored_kind, r.at AS stored_at, r.body AS stored_body "
            "FROM conflicting_records c LEFT JOIN records r "
            "ON r.school = c.school AND r.epoch = c.epoch AND r.seq = c.seq "
            "WHERE c.school = :school ORDER BY c.seq, c.received_at", {"school": school})
        for row in rows:
            row["body"] = readable_body(row["body"])
            row["stored_body"] = None if row["stored_body"] is None else readable_body(row["stored_body"])
        return rows

    def ping(self) -> None:
        """StoreReadError unless the city's tables can be read (a file removed
        or replaced under the service is not "healthy")."""
        self._read("SELECT 1 FROM schools LIMIT 1")


@contextmanager
def _driver_cursor(work: _Work) -> Iterator[Any]:
    """The driver's own cursor in the batch's transaction: the returned seqs
    as plain tuples, not one SQLAlchemy row object each (a tenth of the
    store's time), and psycopg's COPY. Its errors raised as SQLAlchemy's own
    statements raise them (exc.DataError...)."""
    dbapi = work.conn.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        yield cursor
    except Exception as e:
        if _is_dbapi(e):
            raise exc.DBAPIError.instance(None, None, e, type(e)) from e
        raise
    finally:
        cursor.close()


def _is_dbapi(error: BaseException) -> bool:
    """An error of a driver's own cursor (sqlite3's, psycopg's)."""
    if isinstance(error, sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite only
        return False
    return isinstance(error, psycopg.Error)


def _why(error: BaseException) -> str:
    """A database error in one line, without the statement and its
    parameters (they may hold a school's records) nor a password."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
