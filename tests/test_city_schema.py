"""The city's schema migrations (Alembic, cloud_bridge/migrations): a
database written by the city before its schema had a version (0.1.0,
user_version 0) is recognised as it is, its rows kept and read, and brought
to the current version; one from before rooms.live_uptime gets the column;
one written by the city before Alembic (user_version 2 or 3, by
common.migrate) is carried on from its version without losing a row; one
written by a newer city is refused with a clear sentence."""

import json
import sqlite3

import pytest

from cloud_bridge.store import SCHEMA_VERSION, CityStore, StoreError
from protocol.citylink import parse_batch

SCHOOL = "0341234a"

# The schema exactly as cloud_bridge/store.py 0.1.0 created it (git show
# 2ad869d:cloud_bridge/store.py), copied so this test stays true after the
# code changes.
SCHEMA_0_1 = """
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

# Rows as 0.1.0 wrote them (its statements and its JSON: separators
# (",", ":"), ensure_ascii=False).
BIRTH = {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5120,
         "session": "idle", "ap": False, "devices": ["button"]}
ATTACH = {"v": 1, "boot": 7, "seq": 1, "uptime_ms": 6000, "time": None, "type": "kit.attached",
          "data": {"kit": "air-co2-01", "sensors": ["scd4x"]}}


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def write_0_1(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_0_1)
    db.executemany("INSERT INTO records (school, seq, room, kind, at, body, received_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", [
        (SCHOOL, 1, "cm2-b", "state", 100.0, compact(BIRTH), 102.0),
        (SCHOOL, 2, "cm2-b", "evt", 101.0, compact(ATTACH), 102.0),
    ])
    db.execute("INSERT INTO rejected_records (school, seq, reason, record, received_at) "
               "VALUES (?, 3, 'record_kind', ?, 102.0)",
               (SCHOOL, '{"seq": 3, "room": "cm2-b", "kind": "tele", "at": 1.0, "body": {}}'))
    db.execute("INSERT INTO schools (school, gateway, online, last_seen, acked) "
               "VALUES (?, 'gw-1', 1, 102.0, 3)", (SCHOOL,))
    db.execute("INSERT INTO rooms (school, room, online, boot, last_seen, session, ap, fw, board, live_seq, "
               "live_uptime) VALUES (?, 'cm2-b', 1, 7, 101.0, 'idle', 0, '0.1.0', 'olimex-esp32-poe', 2, 6000)",
               (SCHOOL,))
    db.execute("INSERT INTO kits (kit, school, room, attached, sensors, since, last_seen, boot) "
               "VALUES ('air-co2-01', ?, 'cm2-b', 1, '[\"scd4x\"]', 101.0, 101.0, 7)", (SCHOOL,))
    assert db.execute("PRAGMA user_version").fetchone() == (0,)
    db.close()


def user_version(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def schema_of(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        db.close()


def test_a_database_written_by_0_1_is_kept_read_and_upgraded(tmp_path):
    path = str(tmp_path / "city.db")
    write_0_1(path)
    store = CityStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION == user_version(path)
        assert [r["seq"] for r in store.records()] == [2, 1]
        assert store.records()[1]["body"] == BIRTH
        [school] = store.status()["schools"]
        assert (school["school"], school["gateway"], school["online"], school["acked"]) == (SCHOOL, "gw-1", True, 3)
        assert [(r["room"], r["boot"], r["fw"]) for r in school["rooms"]] == [("cm2-b", 7, "0.1.0")]
        assert [(k["kit"], k["room"], k["attached"], k["sensors"]) for k in store.kits()] == [
            ("air-co2-01", "cm2-b", True, ["scd4x"])]
        assert [(r["seq"], r["reason"]) for r in store.rejected(SCHOOL)] == [(3, "record_kind")]
        # And the city carries on from where 0.1.0 left it.
        raw = json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-1", "records": [
            {"seq": 4, "room": "cm2-b", "kind": "decision", "at": 103.0, "body": {"grant": True}},
            {"seq": 2, "room": "cm2-b", "kind": "evt", "at": 101.0, "body": ATTACH}]}).encode()
        result = store.store_batch(parse_batch(SCHOOL, raw), 104.0)
        assert (result.stored, result.duplicates, result.acked) == (1, 1, 4)
    finally:
        store.close()
    # The upgraded file is the schema a new database gets, and opening it
    # again changes nothing.
    fresh = str(tmp_path / "fresh.db")
    CityStore(fresh).close()
    assert schema_of(path) == schema_of(fresh)
    CityStore(path).close()
    assert user_version(path) == SCHEMA_VERSION and schema_of(path) == schema_of(fresh)


def test_a_database_from_before_live_uptime_gets_the_column(tmp_path):
    path = str(tmp_path / "city.db")
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_0_1.replace("    live_uptime BIGINT,\n", ""))
    assert "live_uptime" not in [d[0] for d in db.execute("SELECT * FROM rooms").description]
    db.close()
    CityStore(path).close()
    db = sqlite3.connect(path)
    try:
        assert "live_uptime" in [d[0] for d in db.execute("SELECT * FROM rooms").description]
    finally:
        db.close()
    assert user_version(path) == SCHEMA_VERSION


def test_a_database_from_a_newer_city_is_refused(tmp_path):
    path = str(tmp_path / "city.db")
    CityStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        CityStore(path)


def test_a_database_of_version_2_gets_the_conflicts_table_and_keeps_its_rows(tmp_path):
    # As the city wrote it before step 3: steps 1 and 2, one record stored.
    path = str(tmp_path / "city.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA_0_1)
    db.execute("PRAGMA user_version = 2")
    db.execute("INSERT INTO records (school, seq, room, kind, at, body, received_at) "
               "VALUES (?, 1, 'cm2-b', 'decision', 100.0, '{\"n\":1}', 101.0)", (SCHOOL,))
    db.execute("INSERT INTO schools (school, gateway, acked) VALUES (?, 'gw-1', 1)", (SCHOOL,))
    assert "conflicting_records" not in [r[0] for r in db.execute("SELECT name FROM sqlite_master")]
    db.close()
    store = CityStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION == user_version(path) == 5
        assert store.seqs(SCHOOL) == [1] and store.acked(SCHOOL) == 1
        # The same seq with another content is kept aside now, not dropped.
        raw = json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-1", "records": [
            {"seq": 1, "room": "cm2-b", "kind": "decision", "at": 100.0, "body": {"n": 2}}]}).encode()
        result = store.store_batch(parse_batch(SCHOOL, raw), 102.0)
        assert (result.stored, result.acked, [c.seq for c in result.conflicts]) == (0, 1, [1])
        [conflict] = store.conflicts(SCHOOL)
        assert (conflict["body"], conflict["stored_body"], conflict["gateway"]) == ({"n": 2}, {"n": 1}, "gw-1")
    finally:
        store.close()
    fresh = str(tmp_path / "fresh.db")
    CityStore(fresh).close()
    assert schema_of(path) == schema_of(fresh)


# As the city before Alembic (common.migrate, user_version 3) made it: the
# schema of 0.1.0 plus conflicting_records.
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


def test_a_database_of_version_3_keeps_every_row_and_learns_epochs(tmp_path):
    path = str(tmp_path / "city.db")
    write_0_1(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(CONFLICTS_V3)
    db.execute("INSERT INTO conflicting_records (school, seq, digest, gateway, room, kind, at, body, received_at) "
               "VALUES (?, 2, 'abc', 'gw-x', 'cm2-b', 'evt', 101.0, '{\"v\":1}', 103.0)", (SCHOOL,))
    db.executemany("INSERT INTO records (school, seq, room, kind, at, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(SCHOOL, seq, "ce1", "decision", 200.0 + seq, compact({"n": seq}), 300.0) for seq in range(4, 1004)])
    db.execute("UPDATE schools SET acked = 1003")
    db.execute("PRAGMA user_version = 3")
    db.close()
    store = CityStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION == user_version(path)
        assert store.record_count() == 1002 and store.seqs(SCHOOL) == [1, 2, *range(4, 1004)]
        assert store.records(room="ce1", limit=1)[0]["body"] == {"n": 1003}
        assert [(r["seq"], r["reason"]) for r in store.rejected(SCHOOL)] == [(3, "record_kind")]
        assert [(c["seq"], c["gateway"], c["body"]) for c in store.conflicts(SCHOOL)] == [(2, "gw-x", {"v": 1})]
        assert [(k["kit"], k["attached"]) for k in store.kits()] == [("air-co2-01", True)]
        # The rows of before are the legacy epoch "", with their ack.
        assert [(e["epoch"], e["n"], e["acked"]) for e in store.epochs(SCHOOL)] == [("", 1, 1003)]
        assert store.acked(SCHOOL) == 1003
        # A legacy gateway carries on; a fresh one (an epoch, seq from 1) is stored beside it.
        legacy = parse_batch(SCHOOL, json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-1", "records": [
            {"seq": 1004, "room": "ce1", "kind": "decision", "at": 1.0, "body": {"n": 1004}}]}).encode())
        assert store.store_batch(legacy, 400.0).acked == 1004
        fresh = parse_batch(SCHOOL, json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-2", "epoch": "e2", "records": [
            {"seq": 1, "room": "cm2-b", "kind": "state", "at": 500.0, "body": BIRTH | {"boot": 1}}]}).encode())
        result = store.store_batch(fresh, 501.0)
        assert (result.stored, result.acked, result.epoch) == (1, 1, "e2")
        assert store.seqs(SCHOOL, "e2") == [1] and store.acked(SCHOOL, "") == 1004
        # The fresh gateway's birth is the room's present, whatever the old seqs.
        [room] = store.status()["schools"][0]["rooms"]
        assert room["boot"] == 1
    finally:
        store.close()
    fresh_db = str(tmp_path / "fresh.db")
    CityStore(fresh_db).close()
    assert schema_of(path) == schema_of(fresh_db)


def test_a_postgresql_database_of_revision_3_is_upgraded_in_place(postgres):
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from cloud_bridge.store import MIGRATIONS

    url = postgres.new_database()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        config.attributes["connection"] = conn
        command.upgrade(config, "r0003")
        conn.commit()
        conn.execute(sa.text("INSERT INTO records (school, seq, room, kind, at, body, received_at) "
                             "VALUES (:s, 1, 'cm2-b', 'state', 100.0, :b, 101.0)"), {"s": SCHOOL, "b": compact(BIRTH)})
        conn.execute(sa.text("INSERT INTO schools (school, gateway, acked) VALUES (:s, 'gw-1', 1)"), {"s": SCHOOL})
        conn.commit()
    engine.dispose()
    store = CityStore(url=url)
    try:
        assert store.schema_version == SCHEMA_VERSION
        assert store.seqs(SCHOOL) == [1] and store.acked(SCHOOL) == 1
        assert store.records()[0]["body"] == BIRTH and store.records()[0]["epoch"] == ""
        fresh = parse_batch(SCHOOL, json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-2", "epoch": "e2", "records": [
            {"seq": 1, "room": "cm2-b", "kind": "decision", "at": 1.0, "body": {"n": 1}}]}).encode())
        assert (store.store_batch(fresh, 2.0).stored, store.seqs(SCHOOL, "e2")) == (1, [1])
    finally:
        store.close()
    CityStore(url=url).close()  # at the head: nothing to do
