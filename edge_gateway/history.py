"""The gateway's history in SQLite, which is also the durable outbox to the
city: a record's `seq` is its per-gateway sequence number, handed out in
memory by the gateway in arrival order and written by the journal
(edge_gateway/journal.py) in that order, so the committed records are always
1..N without a gap. Records with `seq > city_acked` are the outbox;
delivered ones stay as local history.

This module owns the schema (numbered migration steps, common/migrate.py),
what the gateway reads once at start (`load_state`), and the read-only
queries of the web API and the city link, each on its own connection: WAL
lets them read while the journal writes."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from common.migrate import Step, migrate, schema_version  # noqa: F401 - re-exported
from protocol.codec import event_digest

# Step 1 is the schema as the first release wrote it (user_version 1):
# a database from then is upgraded in place by the steps after it.
STEPS = (
    Step(1, "records, rooms, meta, overrides, audit", """
CREATE TABLE IF NOT EXISTS records (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- per-gateway sequence sent to the city
    room    TEXT NOT NULL,                      -- room, or 'gateway'
    kind    TEXT NOT NULL CHECK (kind IN ('state', 'evt', 'ack', 'decision')),
    at      REAL NOT NULL,                      -- gateway Unix time when stored
    boot    INTEGER,                            -- board boot (for a decision: the request's)
    evt_seq INTEGER,                            -- board per-boot seq (evt) or req (decision)
    body    TEXT NOT NULL                       -- JSON as received; a decision: the cmd sent
);
CREATE UNIQUE INDEX IF NOT EXISTS records_evt ON records (room, boot, evt_seq) WHERE kind = 'evt';
CREATE UNIQUE INDEX IF NOT EXISTS records_decision ON records (room, boot, evt_seq) WHERE kind = 'decision';
CREATE INDEX IF NOT EXISTS records_room ON records (room, seq);
CREATE TABLE IF NOT EXISTS rooms (
    room      TEXT PRIMARY KEY,
    online    INTEGER,
    boot      INTEGER,
    fw        TEXT,
    board     TEXT,
    session   TEXT,
    ap        INTEGER,
    last_seen REAL,
    evt_seq   INTEGER,
    state     TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS overrides (
    id        TEXT PRIMARY KEY,
    scope     TEXT NOT NULL CHECK (scope IN ('room', 'school')),
    room      TEXT,
    effect    TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
    ap        INTEGER NOT NULL,
    ap_only   INTEGER NOT NULL,
    starts    REAL NOT NULL,
    expires   REAL NOT NULL,
    who       TEXT NOT NULL,
    why       TEXT NOT NULL,
    created   REAL NOT NULL,
    cancelled REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    who    TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""),
    # A duplicate is the same (room, boot, seq) with the same content: a
    # record with the same numbers and another content is kept beside the
    # first (counted as a conflict), so a forged or stray record sent ahead
    # of a board can never make the board's own record look like a repeat.
    # An event's digest is stored with it, so that the gateway's start reads
    # the dedup window without parsing a body.
    Step(2, "events and decisions keyed, not unique, by (room, boot, seq); events carry their digest",
         lambda conn: _step2(conn)),
    # The city link's second stage (docs/protocol.md, "City link"): records
    # of kind telemetry (a room's readings per interval) and audit (the
    # gateway's audit log, for the city's supervision), and the database's
    # epoch, drawn once.
    Step(3, "telemetry and audit records; the database's epoch", lambda conn: _step3(conn)),
)


def _step2(conn: sqlite3.Connection) -> None:
    conn.execute("DROP INDEX IF EXISTS records_evt")
    conn.execute("DROP INDEX IF EXISTS records_decision")
    conn.execute("CREATE INDEX IF NOT EXISTS records_key ON records (room, boot, evt_seq) WHERE kind IN ('evt', 'decision')")
    conn.execute("ALTER TABLE records ADD COLUMN digest BLOB")  # an event's digest(); NULL for other kinds
    rows = conn.execute("SELECT seq, body FROM records WHERE kind = 'evt'").fetchall()
    conn.executemany("UPDATE records SET digest = ? WHERE seq = ?", ((stored_digest(body), seq) for seq, body in rows))


def _step3(conn: sqlite3.Connection) -> None:
    # SQLite cannot change a CHECK: the table is rebuilt (its documented
    # twelve steps, in the migration's transaction). sqlite_sequence goes
    # with the old table and is put back, so a seq is never reused.
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    last_seq = int(row[0]) if row else 0
    conn.execute("""
CREATE TABLE records_new (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    room    TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('state', 'evt', 'ack', 'decision', 'telemetry', 'audit')),
    at      REAL NOT NULL,
    boot    INTEGER,
    evt_seq INTEGER,
    body    TEXT NOT NULL,
    digest  BLOB
)""")
    conn.execute("INSERT INTO records_new (seq, room, kind, at, boot, evt_seq, body, digest) "
                 "SELECT seq, room, kind, at, boot, evt_seq, body, digest FROM records")
    conn.execute("DROP TABLE records")
    conn.execute("ALTER TABLE records_new RENAME TO records")
    conn.execute("DELETE FROM sqlite_sequence WHERE name IN ('records', 'records_new')")
    if last_seq:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (last_seq,))
    conn.execute("CREATE INDEX records_room ON records (room, seq)")
    conn.execute("CREATE INDEX records_key ON records (room, boot, evt_seq) WHERE kind IN ('evt', 'decision')")
    # The oldest telemetry waiting for the city goes first when its space runs out.
    conn.execute("CREATE INDEX records_telemetry ON records (seq) WHERE kind = 'telemetry'")
    conn.execute("CREATE TABLE identity (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # A database that already sent records keeps the empty epoch under which
    # the city holds them (a new epoch would start its history again at a
    # seq it never saw from 1); a fresh one, a new SD card, draws its own.
    conn.execute("INSERT INTO identity (key, value) VALUES ('epoch', ?)", ("" if last_seq else new_epoch(),))


def new_epoch() -> str:
    """16 hex characters: two gateways' databases never draw the same."""
    return secrets.token_hex(8)


ROOM_COLUMNS = ("room", "online", "boot", "fw", "board", "session", "ap", "last_seen", "evt_seq", "state")
OVERRIDE_COLUMNS = ("id", "scope", "room", "effect", "ap", "ap_only", "starts", "expires", "who", "why", "created",
                    "cancelled")
# How many recent events and decisions the gateway keeps in memory to tell a
# repeat from a new message without reading the disk (docs/gateway.md).
DEDUP_WINDOW = 100_000


def open_db(path: str) -> sqlite3.Connection:
    """The journal's connection, the schema brought up to date."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a board's QoS 1 message is acknowledged to the broker only once
    # its record is committed, so the record must be on the card by then.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    migrate(conn, STEPS, name=path)
    return conn


def reader(path: str) -> sqlite3.Connection:
    """A read-only connection to the history (WAL: it reads while the
    journal writes), waiting up to 5 s on a lock: the web pages' and the
    city link's reads, each in its own thread."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def digest(obj: dict) -> bytes:
    """What makes two events the same event (protocol.codec.event_digest); a
    body stored before today's bounds that the codec cannot digest: b""."""
    try:
        return event_digest(obj)
    except (ValueError, TypeError, RecursionError):
        return b""


def stored_digest(body: str) -> bytes:
    """digest() of a stored body; b"" for one too damaged to compare."""
    obj = loads_safe(body)
    return digest(obj) if isinstance(obj, dict) and "unreadable" not in obj else b""


def loads_safe(body: str) -> Any:
    """A stored body for a reader; a body no JSON parser takes back (written
    before the codec bounded nesting) never makes a read fail."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return {"unreadable": body[:200]}


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    room: str
    kind: str
    at: float
    body: str

    def as_dict(self) -> dict:
        return {"seq": self.seq, "room": self.room, "kind": self.kind, "at": self.at, "body": loads_safe(self.body)}


@dataclass
class StartState:
    """What the gateway reads once at start, before it answers anything."""

    rooms: list[dict] = field(default_factory=list)
    overrides: list[dict] = field(default_factory=list)
    override_count: int = 0
    last_seq: int = 0
    acked: int = 0
    events: dict[tuple[str, int, int], list[bytes]] = field(default_factory=dict)  # (room, boot, seq) -> digests
    decisions: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (room, boot, req) -> cmd sent
    epoch: str = ""
    city_version: int = 1  # the batch version the city's last ack let us send
    telemetry_unacked: list[int] = field(default_factory=list)  # seqs of the telemetry the city has not acknowledged


def load_state(conn: sqlite3.Connection, now: float) -> StartState:
    s = StartState()
    s.rooms = [dict(zip(ROOM_COLUMNS, r, strict=True)) for r in conn.execute("SELECT %s FROM rooms" % ", ".join(ROOM_COLUMNS))]
    s.overrides = [_override_row(r) for r in conn.execute(
        "SELECT %s FROM overrides WHERE cancelled IS NULL AND expires > ? ORDER BY created" % ", ".join(OVERRIDE_COLUMNS),
        (now,))]
    s.override_count = int(conn.execute("SELECT COUNT(*) FROM overrides").fetchone()[0])
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    s.last_seq = int(row[0]) if row else 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'city_acked'").fetchone()
    s.acked = int(row[0]) if row else 0
    identity = dict(conn.execute("SELECT key, value FROM identity"))
    s.epoch = identity.get("epoch", "")
    s.city_version = int(identity.get("city_version", "1"))
    s.telemetry_unacked = [seq for (seq,) in conn.execute(
        "SELECT seq FROM records WHERE kind = 'telemetry' AND seq > ? ORDER BY seq", (s.acked,))]
    # The newest DEDUP_WINDOW of each, oldest first (the windows drop their oldest).
    for kind in ("evt", "decision"):
        rows = conn.execute("SELECT room, boot, evt_seq, digest, body FROM records WHERE kind = ? ORDER BY seq DESC LIMIT ?",
                            (kind, DEDUP_WINDOW)).fetchall()
        for room, boot, number, mark, body in reversed(rows):
            if kind == "evt":
                s.events.setdefault((room, boot, number), []).append(mark if mark is not None else stored_digest(body))
            else:
                s.decisions[(room, boot, number)] = body
    return s


def _override_row(row) -> dict:
    out = dict(zip(OVERRIDE_COLUMNS, row, strict=True))
    out["ap"], out["ap_only"] = bool(out["ap"]), bool(out["ap_only"])
    return out


# the journal's statements (edge_gateway/journal.py) -----------------------------

INSERT_RECORD = ("INSERT INTO records (seq, room, kind, at, boot, evt_seq, body, digest)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
UPSERT_ROOM = "INSERT OR REPLACE INTO rooms (%s) VALUES (%s)" % (", ".join(ROOM_COLUMNS), ", ".join("?" * len(ROOM_COLUMNS)))
INSERT_OVERRIDE = "INSERT INTO overrides (%s) VALUES (%s)" % (", ".join(OVERRIDE_COLUMNS[:-1]),
                                                              ", ".join("?" * (len(OVERRIDE_COLUMNS) - 1)))
CANCEL_OVERRIDE = "UPDATE overrides SET cancelled = ? WHERE id = ? AND cancelled IS NULL"
INSERT_AUDIT = "INSERT INTO audit (at, who, action, detail) VALUES (?, ?, ?, ?)"
SET_ACKED = ("INSERT INTO meta (key, value) VALUES ('city_acked', ?) "
             "ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)")
# One chunk of a prune (see prunable): (after seq, up to seq, stored before).
PRUNE_RECORDS = "DELETE FROM records WHERE seq > ? AND seq <= ? AND at < ?"
# Telemetry evicted when its space runs out: (first seq, last seq); only
# telemetry goes, the events between stay.
EVICT_TELEMETRY = "DELETE FROM records WHERE kind = 'telemetry' AND seq >= ? AND seq <= ?"
# One chunk of the telemetry's prune (see prunable_telemetry): (after seq, up to seq, stored before).
PRUNE_TELEMETRY = "DELETE FROM records WHERE kind = 'telemetry' AND seq > ? AND seq <= ? AND at < ?"
# Acknowledged telemetry stays at the school this long: the city keeps the
# series; a year of 30 rooms at 5 minutes would be some 3 million records
# on the SD card.
TELEMETRY_KEEP_DAYS = 7
SET_IDENTITY = "INSERT OR REPLACE INTO identity (key, value) VALUES (?, ?)"


# readers (any thread; the web API calls them through asyncio.to_thread) ----------


def unacked(path: str, after: int, upto: int, limit: int) -> list[StoredRecord]:
    """Committed records after `after`, at most up to `upto`, for the city
    link, in seq order. A seq missing between them was evicted (telemetry)
    or pruned: the city link lists it as dropped."""
    with closing(reader(path)) as conn:
        rows = conn.execute("SELECT seq, room, kind, at, body FROM records WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                            (after, upto, limit)).fetchall()
    return [StoredRecord(*r) for r in rows]


def newest(path: str, after: int, upto: int, limit: int) -> list[StoredRecord]:
    """The newest `limit` committed records in (after, upto], in seq order:
    the city link's live lane."""
    with closing(reader(path)) as conn:
        rows = conn.execute("SELECT seq, room, kind, at, body FROM records WHERE seq > ? AND seq <= ? "
                            "ORDER BY seq DESC LIMIT ?", (after, upto, limit)).fetchall()
    return [StoredRecord(*r) for r in reversed(rows)]


def read_overrides(path: str, include_past: bool = False, now: float | None = None, limit: int = 200) -> list[dict]:
    """Overrides, newest first."""
    with closing(reader(path)) as conn:
        sql = "SELECT %s FROM overrides" % ", ".join(OVERRIDE_COLUMNS)
        args: list = []
        if not include_past:
            sql += " WHERE cancelled IS NULL AND expires > ?"
            args.append(now)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        return [_override_row(r) for r in conn.execute(sql, args)]


def read_audit(path: str, limit: int = 100) -> list[dict]:
    with closing(reader(path)) as conn:
        rows = conn.execute("SELECT id, at, who, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [{"id": i, "at": at, "who": who, "action": action, "detail": loads_safe(detail)}
                for i, at, who, action, detail in rows]


def read_records(path: str, room: str | None = None, kinds: tuple[str, ...] = ("evt",), limit: int = 100) -> list[StoredRecord]:
    """Newest first."""
    with closing(reader(path)) as conn:
        sql = "SELECT seq, room, kind, at, body FROM records WHERE kind IN (%s)" % ", ".join("?" * len(kinds))
        args: list = list(kinds)
        if room is not None:
            sql += " AND room = ?"
            args.append(room)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        return [StoredRecord(*r) for r in conn.execute(sql, args)]


def prunable(path: str, acked: int, before: float) -> tuple[int, int, int]:
    """(lowest seq, highest seq, count) of the records that may be deleted:
    acknowledged by the city (seq <= acked), stored before `before`, and
    older than the newest DEDUP_WINDOW events and decisions, which the next
    start reads to tell a repeat from a new message and never to answer a
    request twice. Nothing else the start reads lives in `records`: the last
    seq is sqlite_sequence's, which a DELETE never lowers (so seqs are never
    reused), the ack is in `meta`, the rooms in `rooms`; and the outbox is
    what lies above the ack, untouched."""
    with closing(reader(path)) as conn:
        upto = acked
        for kind in ("evt", "decision"):
            oldest_needed = conn.execute(
                "SELECT MIN(seq) FROM (SELECT seq FROM records WHERE kind = ? ORDER BY seq DESC LIMIT ?)",
                (kind, DEDUP_WINDOW)).fetchone()[0]
            if oldest_needed is not None:
                upto = min(upto, oldest_needed - 1)
        lo, hi, count = conn.execute("SELECT MIN(seq), MAX(seq), COUNT(*) FROM records WHERE seq <= ? AND at < ?",
                                     (upto, before)).fetchone()
    return int(lo or 0), int(hi or 0), int(count)


def prunable_telemetry(path: str, acked: int, before: float) -> tuple[int, int, int]:
    """(lowest seq, highest seq, count) of the telemetry records that may be
    deleted: acknowledged by the city and stored before `before`. The
    dedup windows hold no telemetry."""
    with closing(reader(path)) as conn:
        lo, hi, count = conn.execute("SELECT MIN(seq), MAX(seq), COUNT(*) FROM records WHERE kind = 'telemetry' "
                                     "AND seq <= ? AND at < ?", (acked, before)).fetchone()
    return int(lo or 0), int(hi or 0), int(count)


def records_of(path: str) -> Iterator[StoredRecord]:
    """Every record in seq order (tests, exports)."""
    with closing(reader(path)) as conn:
        for r in conn.execute("SELECT seq, room, kind, at, body FROM records ORDER BY seq"):
            yield StoredRecord(*r)
