"""The gateway's history in SQLite, which is also the durable outbox to the
city: a record's `seq` is its per-gateway sequence number (AUTOINCREMENT, so
gap-free as long as nothing is deleted, and never reused even if old history is
pruned later). Records with `seq > city_acked` are the outbox; delivered ones
stay as local history.

One writer: the gateway's worker thread owns this connection. Readers (the
web API) open their own short-lived connections; WAL lets them read while the
worker writes."""

from __future__ import annotations

import contextlib

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from typing import Iterator

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- per-gateway sequence sent to the city
    room    TEXT NOT NULL,                      -- room, or 'gateway'
    kind    TEXT NOT NULL CHECK (kind IN ('state', 'evt', 'ack', 'decision')),
    at      REAL NOT NULL,                      -- gateway Unix time when stored
    boot    INTEGER,                            -- board boot (for a decision: the request's)
    evt_seq INTEGER,                            -- board per-boot seq (evt) or req (decision)
    body    TEXT NOT NULL                       -- JSON as received; a decision: the cmd sent
);
-- A (room, boot, seq) event is stored once: QoS 1 redeliveries are dropped.
CREATE UNIQUE INDEX IF NOT EXISTS records_evt ON records (room, boot, evt_seq) WHERE kind = 'evt';
-- A request is answered at most once, even across restarts.
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
    evt_seq   INTEGER,   -- highest event seq seen in this boot (gap detection)
    state     TEXT       -- last state payload applied (skip identical retained births)
);

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Temporary allow/deny decisions of the director or the city, kept for ever
-- (cancelled ones too): they are the school's answer to "why was Wi-Fi on?".
CREATE TABLE IF NOT EXISTS overrides (
    id        TEXT PRIMARY KEY,
    scope     TEXT NOT NULL CHECK (scope IN ('room', 'school')),
    room      TEXT,
    effect    TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
    ap        INTEGER NOT NULL,
    ap_only   INTEGER NOT NULL,
    starts    REAL NOT NULL,
    expires   REAL NOT NULL,
    who       TEXT NOT NULL,   -- a role ("direction", "mairie"), never a person's name
    why       TEXT NOT NULL,
    created   REAL NOT NULL,
    cancelled REAL
);

-- Append-only: every change to the rules a session depends on.
CREATE TABLE IF NOT EXISTS audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    who    TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL   -- JSON
);
"""


@dataclass(frozen=True)
class Record:
    seq: int
    room: str
    kind: str
    at: float
    body: str

    def as_dict(self) -> dict:
        return {"seq": self.seq, "room": self.room, "kind": self.kind, "at": self.at, "body": json.loads(self.body)}


ROOM_COLUMNS = ("room", "online", "boot", "fw", "board", "session", "ap", "last_seen", "evt_seq", "state")


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self._depth = 0
        # check_same_thread=False: opened by the starting thread, then used by the worker alone.
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the school link acknowledges a board's QoS 1 message only after its
        # commit, so the record must be on the card by then. The worker commits a
        # whole batch of queued messages at once (one fsync), and answers lesson
        # requests before the commit, so the fsync is never on a teacher's path.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"{path}: schema version {version}, this gateway knows {SCHEMA_VERSION}")
        self.conn.executescript(SCHEMA)
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    # overrides and audit (worker thread) -----------------------------------

    def add_override(self, o: dict, created: float) -> None:
        self.conn.execute(
            "INSERT INTO overrides (id, scope, room, effect, ap, ap_only, starts, expires, who, why, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (o["id"], o["scope"], o["room"], o["effect"], int(o["ap"]), int(o["ap_only"]), o["starts"],
             o["expires"], o["who"], o["why"], created),
        )

    def cancel_override(self, override_id: str, at: float) -> bool:
        cur = self.conn.execute("UPDATE overrides SET cancelled = ? WHERE id = ? AND cancelled IS NULL", (at, override_id))
        return cur.rowcount == 1

    def active_overrides(self, now: float) -> list[dict]:
        rows = self.conn.execute(
            "SELECT id, scope, room, effect, ap, ap_only, starts, expires, who, why, created, cancelled FROM overrides"
            " WHERE cancelled IS NULL AND expires > ? ORDER BY created", (now,))
        return [_override_row(r) for r in rows]

    def next_override_id(self) -> str:
        row = self.conn.execute("SELECT COUNT(*) FROM overrides").fetchone()
        return "o-%06d" % (int(row[0]) + 1)

    def audit(self, at: float, who: str, action: str, detail: dict) -> None:
        self.conn.execute("INSERT INTO audit (at, who, action, detail) VALUES (?, ?, ?, ?)",
                          (at, who, action, json.dumps(detail, separators=(",", ":"), sort_keys=True)))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`with store.transaction():` commits on success, rolls back on error.
        Nested inside another, it is a SAVEPOINT: the worker wraps a whole
        batch of messages in one transaction (one fsync), and each message's
        own block still rolls back alone if it fails."""
        if self._depth == 0:
            self._depth = 1
            try:
                with self.conn:  # COMMIT, or ROLLBACK on an exception
                    if not self.conn.in_transaction:
                        self.conn.execute("BEGIN")
                    yield self.conn
            finally:
                self._depth = 0
            return
        name = "sp%d" % self._depth
        self._depth += 1
        self.conn.execute("SAVEPOINT " + name)
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK TO " + name)
            self.conn.execute("RELEASE " + name)
            raise
        else:
            self.conn.execute("RELEASE " + name)
        finally:
            self._depth -= 1

    # records -------------------------------------------------------------

    def add(self, room: str, kind: str, at: float, body: str, boot: int | None = None, evt_seq: int | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO records (room, kind, at, boot, evt_seq, body) VALUES (?, ?, ?, ?, ?, ?)",
            (room, kind, at, boot, evt_seq, body),
        )
        return int(cur.lastrowid)

    def has_record(self, kind: str, room: str, boot: int, evt_seq: int) -> bool:
        """Is there a record of `kind` for this board message: an event by its
        seq, or a decision by the request it answered?"""
        row = self.conn.execute(
            "SELECT 1 FROM records WHERE kind = ? AND room = ? AND boot = ? AND evt_seq = ?", (kind, room, boot, evt_seq)
        ).fetchone()
        return row is not None

    def last_seq(self) -> int:
        # sqlite_sequence, not MAX(seq): a seq is never handed out twice even if rows are pruned.
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0

    def unacked(self, after: int, limit: int) -> list[Record]:
        rows = self.conn.execute(
            "SELECT seq, room, kind, at, body FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return [Record(*r) for r in rows]

    # delivery ------------------------------------------------------------

    def acked(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'city_acked'").fetchone()
        return int(row[0]) if row else 0

    def set_acked(self, seq: int) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('city_acked', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            (seq,),
        )

    # rooms ---------------------------------------------------------------

    def save_room(self, row: dict) -> None:
        values = tuple(row.get(c) for c in ROOM_COLUMNS)
        self.conn.execute(
            "INSERT OR REPLACE INTO rooms (%s) VALUES (%s)" % (", ".join(ROOM_COLUMNS), ", ".join("?" * len(ROOM_COLUMNS))),
            values,
        )

    def load_rooms(self) -> Iterator[dict]:
        for r in self.conn.execute("SELECT %s FROM rooms" % ", ".join(ROOM_COLUMNS)):
            yield dict(zip(ROOM_COLUMNS, r))


def _override_row(row) -> dict:
    keys = ("id", "scope", "room", "effect", "ap", "ap_only", "starts", "expires", "who", "why", "created", "cancelled")
    out = dict(zip(keys, row))
    out["ap"], out["ap_only"] = bool(out["ap"]), bool(out["ap_only"])
    return out


def read_overrides(path: str, include_past: bool = False, now: float | None = None, limit: int = 200) -> list[dict]:
    """Overrides, newest first, for the web API (its own read-only connection)."""
    uri = "file:%s?mode=ro" % path
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        sql = "SELECT id, scope, room, effect, ap, ap_only, starts, expires, who, why, created, cancelled FROM overrides"
        args: list = []
        if not include_past:
            sql += " WHERE cancelled IS NULL AND expires > ?"
            args.append(now)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        return [_override_row(r) for r in conn.execute(sql, args)]


def read_audit(path: str, limit: int = 100) -> list[dict]:
    uri = "file:%s?mode=ro" % path
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        rows = conn.execute("SELECT id, at, who, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [{"id": i, "at": at, "who": who, "action": action, "detail": json.loads(detail)}
                for i, at, who, action, detail in rows]


def read_records(path: str, room: str | None = None, kinds: tuple[str, ...] = ("evt",), limit: int = 100) -> list[Record]:
    """Newest first, for the web API; its own read-only connection (any thread)."""
    uri = "file:%s?mode=ro" % path
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        sql = "SELECT seq, room, kind, at, body FROM records WHERE kind IN (%s)" % ", ".join("?" * len(kinds))
        args: list = list(kinds)
        if room is not None:
            sql += " AND room = ?"
            args.append(room)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        return [Record(*r) for r in conn.execute(sql, args)]
