"""The gateway's schema is upgraded in place: a database written by the
first release (schema version 1, copied below as it created it) opens with
its rows, its outbox and its dedup windows intact."""

import json
import sqlite3

import pytest

from common.migrate import MigrationError
from edge_gateway import history
from edge_gateway.journal import Journal

# edge_gateway/store.py as released (commit 233e20a), which set user_version 1.
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


def first_release_db(path):
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.execute("PRAGMA user_version=1")
    evt = {"v": 1, "boot": 3, "seq": 1, "uptime_ms": 5, "time": None, "type": "lesson.requested", "data": {"req": 1}}
    cmd = {"v": 1, "id": "g-000002", "cmd": "grant", "req": 1, "duration_s": 60, "ap": True, "projector": True,
           "grace_s": 0, "now": 1}
    conn.execute("INSERT INTO records (room, kind, at, boot, evt_seq, body) VALUES ('cm2-b', 'evt', 1.0, 3, 1, ?)",
                 (json.dumps(evt),))
    conn.execute("INSERT INTO records (room, kind, at, boot, evt_seq, body) VALUES ('cm2-b', 'decision', 1.0, 3, 1, ?)",
                 (json.dumps(cmd),))
    conn.execute("INSERT INTO meta (key, value) VALUES ('city_acked', 1)")
    conn.execute("INSERT INTO overrides VALUES ('o-000001', 'school', NULL, 'deny', 0, 0, 0, 4102444000, 'direction',"
                 " 'travaux', 0, NULL)")
    conn.commit()
    conn.close()
    return evt


def test_a_first_release_database_is_upgraded_in_place(tmp_path):
    path = str(tmp_path / "gw.sqlite")
    evt = first_release_db(path)
    journal = Journal(path, lambda ticket, seq: None)
    try:
        assert history.schema_version(journal.conn) == len(history.STEPS) == 3
        state = history.load_state(journal.conn, now=10.0)
    finally:
        journal.stop()
    assert (state.last_seq, state.acked, state.override_count) == (2, 1, 1)
    assert [o["id"] for o in state.overrides] == ["o-000001"]
    assert state.events[("cm2-b", 3, 1)] == [history.digest(evt)]
    assert json.loads(state.decisions[("cm2-b", 3, 1)])["id"] == "g-000002"
    # Step 2: the same numbers with another content may now be stored beside the first.
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO records (room, kind, at, boot, evt_seq, body) VALUES ('cm2-b', 'evt', 2.0, 3, 1, '{}')")
    conn.commit()
    assert [r.seq for r in history.records_of(path)] == [1, 2, 3]
    conn.close()


def test_a_database_from_a_newer_gateway_is_refused_with_a_sentence(tmp_path):
    path = str(tmp_path / "gw.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=9")
    conn.close()
    with pytest.raises(MigrationError, match="schema version 9 was written by a newer"):
        Journal(path, lambda ticket, seq: None)


def test_a_new_database_gets_every_step(tmp_path):
    journal = Journal(str(tmp_path / "new.sqlite"), lambda ticket, seq: None)
    try:
        assert history.schema_version(journal.conn) == len(history.STEPS)
    finally:
        journal.stop()
