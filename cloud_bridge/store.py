"""The city's database: every record each school sent, once, and the live
view of schools and rooms derived from them.

SQLite (stdlib `sqlite3`, WAL) by default. The schema and the statements are
plain SQL that PostgreSQL also accepts (`ON CONFLICT ... DO NOTHING`, no
SQLite-only functions; row maths such as "latest of two times" is done in
Python), so a PostgreSQL store can follow by changing the connection and the
`?` placeholders.

The schema is versioned (`PRAGMA user_version`) and upgraded in place at
start by `common.migrate`: `STEPS` below, never edited once released.

One writer connection, used under a lock (in the service, only by the ingest's
writer thread). Reads open their own short-lived connection, so the web API
reads from its worker threads while the writer writes: WAL gives readers a
consistent snapshot without blocking the writer.

One bad record costs only itself: a value that SQLite, the JSON encoder or
the API's serializer cannot take (a number beyond 2^53, NaN, a lone
surrogate, a body nested deeper than the contract's MAX_DEPTH: the rule of
protocol.codec, the same as the gateway's) refuses that record
alone, within its batch's transaction (a savepoint per record), and the
record is set aside like any other refused record. Reads never trust what is
stored either: a body stored before these bounds that the API could not
serialize is answered as `{"unreadable": why}`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from common.migrate import MigrationError, Step, migrate
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

# The schema as the city created it before databases had a version (0.1.0;
# they were left at user_version 0). Every statement is IF NOT EXISTS, so a
# database written then is recognised as it is.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS schools (
    school      TEXT PRIMARY KEY,
    gateway     TEXT,
    online      INTEGER,
    last_seen   DOUBLE PRECISION,
    acked       BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    school      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    room        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    body        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, seq)
);
CREATE INDEX IF NOT EXISTS records_by_room ON records (school, room, seq);
CREATE INDEX IF NOT EXISTS records_by_at ON records (at);
CREATE TABLE IF NOT EXISTS rejected_records (
    school      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    record      TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, seq)
);
CREATE TABLE IF NOT EXISTS rooms (
    school      TEXT NOT NULL,
    room        TEXT NOT NULL,
    online      INTEGER,
    boot        BIGINT,
    last_seen   DOUBLE PRECISION,
    session     TEXT,
    ap          INTEGER,
    fw          TEXT,
    board       TEXT,
    live_seq    BIGINT NOT NULL DEFAULT 0,
    live_uptime BIGINT,
    PRIMARY KEY (school, room)
);
CREATE TABLE IF NOT EXISTS kits (
    kit         TEXT PRIMARY KEY,
    school      TEXT NOT NULL,
    room        TEXT NOT NULL,
    attached    INTEGER NOT NULL,
    sensors     TEXT NOT NULL,
    since       DOUBLE PRECISION NOT NULL,
    last_seen   DOUBLE PRECISION NOT NULL,
    boot        BIGINT
);
CREATE INDEX IF NOT EXISTS kits_by_room ON kits (school, room);
"""


def _add_live_uptime(db: sqlite3.Connection) -> None:
    # Databases made before rooms.live_uptime existed lack it; one made by
    # SCHEMA_V1 has it already. Plain SQL, no default, so SQLite and
    # PostgreSQL alike add it without rewriting the table. The column list
    # comes from a query's description (both databases answer it alike).
    columns = [d[0] for d in db.execute("SELECT * FROM rooms LIMIT 0").description]
    if "live_uptime" not in columns:
        db.execute("ALTER TABLE rooms ADD COLUMN live_uptime BIGINT")


# A record whose (school, seq) is stored already with another content: a
# forged batch that used a real gateway's next seqs, or a gateway whose
# database was replaced and counts from 1 again. Neither copy is thrown
# away: the first stays in `records`, each other content is kept here, once
# (by its digest), and never applied to the live view. An operator decides.
CONFLICTS_V3 = """
CREATE TABLE IF NOT EXISTS conflicting_records (
    school      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    digest      TEXT NOT NULL,
    gateway     TEXT,
    room        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    body        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, seq, digest)
);
"""

STEPS = (
    Step(1, "the city's tables as of 0.1.0", SCHEMA_V1),
    Step(2, "rooms.live_uptime, for databases made before it", _add_live_uptime),
    Step(3, "conflicting_records: other contents of a (school, seq) already stored", CONFLICTS_V3),
)
SCHEMA_VERSION = len(STEPS)

_ROOM_COLUMNS = ("online", "boot", "last_seen", "session", "ap", "fw", "board", "live_seq", "live_uptime")
_KIT_COLUMNS = ("school", "room", "attached", "sensors", "since", "last_seen", "boot")
_KIT_EVENTS = ("kit.attached", "kit.detached")
UNKNOWN_KIT = "unknown"
_MAX_SENSORS = 16
_ACK_SCAN = 500
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
    1 with no gap that the school may now forget (see _ack)."""

    stored: int
    duplicates: int
    set_aside: int
    acked: int
    unusable_bodies: int = 0
    refused: tuple[Refused, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
    except (ValueError, RecursionError) as e:
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


class CityStore:
    def __init__(self, path: str):
        if path == ":memory:" or not path:
            # Each reader opens its own connection; an in-memory database
            # would be a different, empty one for each.
            raise StoreError("the city store needs a file path, not :memory:")
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the city database {self.path}: {e}") from e
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL, not NORMAL: an ack tells the gateway to delete its copy,
            # so what we acked must survive a power cut here.
            self._db.execute("PRAGMA synchronous=FULL")
            self.schema_version = migrate(self._db, STEPS, name=f"city database {self.path}")
        except (sqlite3.Error, MigrationError) as e:
            self._db.close()
            raise StoreError(f"cannot open the city database {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------------- writes

    def store_batch(self, batch: Batch, received_at: float) -> Stored:
        """Store a checked batch in one transaction; idempotent per (school, seq)."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = self._store_batch(db, batch, received_at)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise StoreWriteError(f"school {batch.school}: {e}") from e
            return result

    def _store_batch(self, db: sqlite3.Connection, batch: Batch, received_at: float) -> Stored:
        school = batch.school
        db.execute(
            "INSERT INTO schools (school, gateway, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (school) DO UPDATE SET gateway = excluded.gateway, last_seen = excluded.last_seen",
            (school, _gateway_id(batch.gateway), received_at),
        )
        stored = duplicates = unusable = 0
        refused = [Refused(b.seq, b.reason, b.message, b.raw) for b in batch.bad]
        conflicts: list[Conflict] = []
        # In seq order, so the live room view moves forward within a batch.
        for record in sorted(batch.records, key=lambda r: r.seq):
            if record.seq > MAX_INT:
                refused.append(Refused(None, "record_seq", f"record {str(record.seq)[:24]}: seq beyond {MAX_INT}",
                                       record))
                continue
            outcome = self._store_record(db, school, record, received_at, batch.gateway)
            if isinstance(outcome, Refused):
                refused.append(outcome)
            elif isinstance(outcome, Conflict):
                conflicts.append(outcome)
                duplicates += not outcome.new
            elif outcome is None:
                duplicates += 1
            else:
                stored += 1
                unusable += not outcome
        set_aside, refused = self._set_aside(db, school, refused, received_at)
        duplicates += sum(not r.new for r in refused)
        acked = self._advance_ack(db, school)
        if conflicts:
            acked = self._conflict_ack(acked, batch)
        return Stored(stored, duplicates, set_aside, acked, unusable, tuple(refused), tuple(conflicts))

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

    def _store_record(self, db: sqlite3.Connection, school: str, record: Record,
                      received_at: float, gateway: str | None = None) -> bool | None | Refused | Conflict:
        """Store one record and apply it: True, or False when its body cannot
        move the room view; None for a repeat; a Conflict when its seq is
        stored with another content (kept aside, never applied); Refused
        when it cannot be stored, with nothing of it left in the database."""
        try:
            body = body_text(record.body)
        except Unstorable as e:
            return Refused(record.seq, "record_body", f"record {record.seq}: body: {e}", record)
        db.execute("SAVEPOINT record")
        try:
            cur = db.execute(
                "INSERT INTO records (school, seq, room, kind, at, body, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (school, seq) DO NOTHING",
                (school, record.seq, record.room, record.kind, record.at, body, received_at),
            )
            # Only a record stored now moves the room view: a repeat never applies twice.
            if cur.rowcount == 1:
                outcome: bool | None | Conflict = self._apply_to_room(db, school, record)
            else:
                outcome = self._repeat_or_conflict(db, school, record, body, gateway, received_at)
            db.execute("RELEASE record")
            return outcome
        except sqlite3.Error:
            raise  # the database's trouble, not the record's: the batch is not acked, and comes again
        except (OverflowError, RecursionError, ValueError) as e:
            # A value SQLite cannot bind (a boot or uptime beyond 64 bits...).
            self._undo_record(db)
            return Refused(record.seq, "record_body", f"record {record.seq}: {type(e).__name__}: {e}", record)
        except Exception as e:
            # A bug of ours. Set aside all the same: holding the school's ack
            # back would make its gateway resend its whole outbox for ever.
            self._undo_record(db)
            log.exception("school %s record %d: not stored (a bug), set aside", school, record.seq)
            return Refused(record.seq, INTERNAL_ERROR, f"record {record.seq}: {type(e).__name__}: {e}", record)

    @staticmethod
    def _repeat_or_conflict(db: sqlite3.Connection, school: str, record: Record, body: str, gateway: str | None,
                            received_at: float) -> Conflict | None:
        """None when the stored record is this one (a resend); otherwise this
        other content is kept in conflicting_records (once) and never
        applied: the first copy may be the forgery, and the city cannot tell.
        Compared by meaning (keys in any order), not by bytes."""
        stored = db.execute("SELECT room, kind, at, body FROM records WHERE school = ? AND seq = ?",
                            (school, record.seq)).fetchone()
        if stored is None:  # unreachable: the insert met this very row
            return None
        mine = _canonical(record.room, record.kind, record.at, record.body)
        try:
            theirs = _canonical(stored[0], stored[1], stored[2], json.loads(stored[3]))
        except (ValueError, RecursionError):
            theirs = None  # a body stored before the city bounded them
        if mine == theirs:
            return None
        digest = hashlib.sha256(mine.encode()).hexdigest()
        cur = db.execute(
            "INSERT INTO conflicting_records (school, seq, digest, gateway, room, kind, at, body, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (school, seq, digest) DO NOTHING",
            (school, record.seq, digest, _gateway_id(gateway), record.room, record.kind, record.at, body,
             received_at),
        )
        return Conflict(record.seq, cur.rowcount == 1)

    @staticmethod
    def _undo_record(db: sqlite3.Connection) -> None:
        db.execute("ROLLBACK TO record")
        db.execute("RELEASE record")

    def _set_aside(self, db: sqlite3.Connection, school: str, refused: Iterable[Refused],
                   received_at: float) -> tuple[int, list[Refused]]:
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
            cur = db.execute(
                "INSERT INTO rejected_records (school, seq, reason, record, received_at) "
                "SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM records WHERE school = ? AND seq = ?) "
                "ON CONFLICT (school, seq) DO NOTHING",
                (school, item.seq, item.reason, printable(item.raw, REJECTED_TEXT_CHARS), received_at,
                 school, item.seq),
            )
            count += cur.rowcount
            out.append(item if cur.rowcount == 1 else Refused(item.seq, item.reason, item.message, item.raw, False))
        return count, out

    def _advance_ack(self, db: sqlite3.Connection, school: str) -> int:
        # Contiguous from 1, not from the lowest seq seen: if a later batch
        # arrives before an earlier one was ever received, acking from the
        # lowest seen would tell the gateway to delete records the city
        # never got. A gateway's outbox starts at 1 (docs/protocol.md).
        (acked,) = db.execute("SELECT acked FROM schools WHERE school = ?", (school,)).fetchone()
        while True:
            rows = db.execute(
                "SELECT seq FROM records WHERE school = ? AND seq > ? "
                "UNION SELECT seq FROM rejected_records WHERE school = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (school, acked, school, acked, _ACK_SCAN),
            ).fetchall()
            for (seq,) in rows:
                if seq != acked + 1:
                    break
                acked = seq
            else:
                if len(rows) == _ACK_SCAN:
                    continue
            break
        db.execute("UPDATE schools SET acked = ? WHERE school = ?", (acked, school))
        return acked

    def _apply_to_room(self, db: sqlite3.Connection, school: str, record: Record) -> bool:
        """Move the live room row forward; False when the body is unusable."""
        if record.room == GATEWAY_ROOM or record.kind not in ("state", "evt", "ack"):
            return True
        try:
            if record.kind == "state":
                check_state(record.body)
            elif record.kind == "evt":
                check_evt(record.body)
        except ProtocolError as e:
            log.warning("school %s record %d: body kept but not applied to room %s: %s",
                        school, record.seq, record.room, e)
            return False
        found = db.execute(
            "SELECT " + ", ".join(_ROOM_COLUMNS) + " FROM rooms WHERE school = ? AND room = ?",
            (school, record.room),
        ).fetchone()
        row: dict[str, Any] = dict(zip(_ROOM_COLUMNS, found, strict=True)) if found else dict.fromkeys(_ROOM_COLUMNS)
        if not found:
            row["live_seq"] = 0
        new = dict(row)
        new["last_seen"] = record.at if row["last_seen"] is None else max(row["last_seen"], record.at)
        body = record.body
        boot = body.get("boot")
        live = self._is_live(record, row)
        if live and row["boot"] is not None and boot > row["boot"]:
            # The board restarted: at boot it announces again the kit it
            # finds plugged in, so a kit attached under an older boot is no
            # longer known to be there.
            db.execute(
                "UPDATE kits SET attached = 0 WHERE school = ? AND room = ? AND attached = 1 AND boot < ?",
                (school, record.room, boot),
            )
        if live:
            uptime = body.get("uptime_ms")
            if uptime is not None:
                new["live_uptime"] = uptime  # never older than the room's: _is_live said so
            elif boot != row["boot"]:
                new["live_uptime"] = None  # a newer boot's death: its uptime is unknown
        if live and record.kind == "state":
            new.update(online=int(body["online"]), boot=boot, live_seq=record.seq)
            if body["online"]:
                new.update(session=body["session"], ap=int(body["ap"]), fw=body["fw"], board=body["board"])
        elif live:
            # An event of the live boot, or of a newer boot whose birth has
            # not reached us yet: either way the board is up.
            new.update(online=1, boot=boot, live_seq=record.seq)
            event = body["type"]
            after = session_after(body)
            if after is not None:
                new["session"] = after
            if event == "boot":
                new["ap"] = 0  # the access point is off at every boot
            elif event == "ap.changed":
                new["ap"] = int(body["data"]["on"])
            elif event in _KIT_EVENTS:
                self._apply_to_kit(db, school, record)
        elif (record.kind == "evt" and body.get("type") in _KIT_EVENTS and not body.get("replay")
              and body.get("time") is not None and row["boot"] is not None and boot == row["boot"]):
            # Kept in the board's flash outbox during an outage: older than
            # its birth, so not the room's present; but the kit did move then,
            # and with the board's own time the kit's ordering can place it.
            self._apply_to_kit(db, school, record)
        if new != row or not found:
            db.execute(
                "INSERT INTO rooms (school, room, " + ", ".join(_ROOM_COLUMNS) + ") "
                "VALUES (?, ?, " + ", ".join("?" * len(_ROOM_COLUMNS)) + ") "
                "ON CONFLICT (school, room) DO UPDATE SET "
                + ", ".join(f"{name} = excluded.{name}" for name in _ROOM_COLUMNS),
                (school, record.room, *(new[name] for name in _ROOM_COLUMNS)),
            )
        return True

    @staticmethod
    def _is_live(record: Record, row: dict[str, Any]) -> bool:
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
        seq, so that a late batch never goes back (a death has no uptime).
        """
        body = record.body
        if record.kind == "ack" or body.get("replay"):
            return False
        boot, current = body.get("boot"), row["boot"]
        if current is None or boot > current:
            return True
        if record.kind == "state" and body["online"] and record.seq > row["live_seq"]:
            # A birth is the present, even with a lower boot: a board replaced,
            # or its flash wiped, counts its boots from 1 again (as the gateway does).
            return True
        if boot < current or record.seq <= row["live_seq"]:
            return False
        uptime, mark = body.get("uptime_ms"), row["live_uptime"]
        return uptime is None or mark is None or uptime >= mark

    def _apply_to_kit(self, db: sqlite3.Connection, school: str, record: Record) -> None:
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
        found = db.execute("SELECT " + ", ".join(_KIT_COLUMNS) + " FROM kits WHERE kit = ?", (kit,)).fetchone()
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
        db.execute(
            "INSERT INTO kits (kit, " + ", ".join(_KIT_COLUMNS) + ") "
            "VALUES (?, " + ", ".join("?" * len(_KIT_COLUMNS)) + ") "
            "ON CONFLICT (kit) DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in _KIT_COLUMNS),
            (kit, *(new[name] for name in _KIT_COLUMNS)),
        )

    def set_gateway_state(self, school: str, online: bool, gateway: str | None, now: float) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO schools (school, gateway, online, last_seen) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (school) DO UPDATE SET gateway = COALESCE(excluded.gateway, schools.gateway), "
                    "online = excluded.online, last_seen = excluded.last_seen",
                    (school, _gateway_id(gateway), int(online), now),
                )
            except sqlite3.Error as e:
                raise StoreWriteError(f"school {school}: {e}") from e

    # ----------------------------------------------------------------- reads

    def _reader(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA query_only = ON")
        db.row_factory = sqlite3.Row
        # Whatever another program wrote in a TEXT column, a read never fails on it.
        db.text_factory = lambda raw: raw.decode("utf-8", "replace")
        return db

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._reader()
            try:
                yield db
            finally:
                db.close()
        except sqlite3.Error as e:
            raise StoreReadError(f"the city database cannot be read now: {e}") from e

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._reading() as db:
            return db.execute(sql, params).fetchall()

    def status(self) -> dict:
        """Every school with its rooms, and how many records are stored."""
        with self._reading() as db:  # one connection: one snapshot
            schools = db.execute("SELECT school, gateway, online, last_seen, acked FROM schools ORDER BY school")
            schools = schools.fetchall()
            rooms = db.execute(
                "SELECT school, room, online, boot, session, ap, last_seen, fw, board FROM rooms ORDER BY school, room"
            ).fetchall()
            (count,) = db.execute("SELECT COUNT(*) FROM records").fetchone()
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
                    "acked": s["acked"],
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
        params: tuple = ()
        if school is not None:
            sql += " WHERE k.school = ?"
            params = (school,)
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
                limit: int = 100) -> list[dict]:
        """Newest first (by the gateway's time, then seq)."""
        where, params = [], []
        for column, value in (("school", school), ("room", room), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT school, seq, room, kind, at, body, received_at FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, school, seq DESC LIMIT ?"
        rows = self._read(sql, (*params, limit))
        return [{**dict(r), "body": readable_body(r["body"])} for r in rows]

    def record_count(self, school: str | None = None) -> int:
        if school is None:
            return self._read("SELECT COUNT(*) FROM records")[0][0]
        return self._read("SELECT COUNT(*) FROM records WHERE school = ?", (school,))[0][0]

    def seqs(self, school: str) -> list[int]:
        return [r[0] for r in self._read("SELECT seq FROM records WHERE school = ? ORDER BY seq", (school,))]

    def acked(self, school: str) -> int:
        rows = self._read("SELECT acked FROM schools WHERE school = ?", (school,))
        return rows[0][0] if rows else 0

    def rejected(self, school: str) -> list[dict]:
        return [dict(r) for r in self._read(
            "SELECT seq, reason, record, received_at FROM rejected_records WHERE school = ? ORDER BY seq", (school,)
        )]

    def conflicts(self, school: str) -> list[dict]:
        """The other contents received for stored seqs, by seq, with the stored one beside."""
        rows = self._read(
            "SELECT c.seq, c.gateway, c.room, c.kind, c.at, c.body, c.received_at, "
            "r.room AS stored_room, r.kind AS stored_kind, r.at AS stored_at, r.body AS stored_body "
            "FROM conflicting_records c LEFT JOIN records r ON r.school = c.school AND r.seq = c.seq "
            "WHERE c.school = ? ORDER BY c.seq, c.received_at", (school,))
        out = []
        for r in rows:
            row = dict(r)
            row["body"] = readable_body(row["body"])
            row["stored_body"] = None if row["stored_body"] is None else readable_body(row["stored_body"])
            out.append(row)
        return out

    def ping(self) -> None:
        """StoreReadError unless the city's tables can be read (a file removed
        or replaced under the service is not "healthy")."""
        self._read("SELECT 1 FROM schools LIMIT 1")
