"""One bad record costs only itself (docs/city.md, "Refused records"): a
value the city could not store or give back (a seq or an integer beyond 64
bits, NaN, a lone surrogate, a body nested 40,000 deep, an integer of 5,000
digits) refuses that record alone, counted by reason and logged once; the
other records of its batch are stored, the ack passes it, no room or kit
is pinned, and nothing counts as a bug. The ingest's writer function
(`Ingest.handle`) is driven directly, on real SQLite files and a real PostgreSQL, no broker."""

import json
import logging

import pytest

from cloud_bridge.store import INTERNAL_ERROR, CityStore, StoreWriteError
from protocol.citylink import Batch, Record, defuse

SCHOOL = "0341234a"
TOPIC = f"preau/v1/city/{SCHOOL}/records"
BIRTH = {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5000,
         "session": "idle", "ap": False, "devices": ["button"]}


def ap_changed(seq, on):
    return {"v": 1, "boot": 7, "seq": seq, "uptime_ms": 6000 + seq, "time": None, "type": "ap.changed",
            "data": {"on": on, "reason": "teacher"}}


def record(seq, kind="decision", body=None, room="cm2-b"):
    return json.dumps({"seq": seq, "room": room, "kind": kind, "at": 1000.0 + seq, "body": body or {"v": 1}})


def payload(*records: str) -> bytes:
    """A batch written as text, so that it can hold what json.dumps never writes."""
    return f'{{"v": 1, "school": "{SCHOOL}", "gateway": "gw-1", "records": [{", ".join(records)}]}}'.encode()


@pytest.fixture
def city(city_ingest):
    return city_ingest


def nonzero(metrics):
    return {reason: n for reason, n in metrics.snapshot()["rejected"].items() if n}


DEEP = '{"v": 1, "x": ' + "[" * 40000 + "]" * 40000 + "}"
BAD_BODIES = {
    "nested 40,000 deep": DEEP,
    "nested 40 deep": '{"v": 1, "x": ' + "[" * 40 + "]" * 40 + "}",
    "NaN": '{"v": 1, "x": NaN}',
    "Infinity": '{"v": 1, "x": -Infinity}',
    "a lone surrogate": '{"v": 1, "x": "\\ud800"}',
    "a lone surrogate in a name": '{"v": 1, "\\udfff": 1}',
    "an integer beyond 64 bits": f'{{"v": 1, "x": {2**64}}}',
    "an integer of 5,000 digits": '{"v": 1, "x": ' + "7" * 5000 + "}",
    "a boot beyond 64 bits": json.dumps({**BIRTH, "boot": 2**63}),
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_record_the_city_cannot_store_costs_only_itself(city, body, caplog):
    caplog.set_level(logging.WARNING, logger="cloud_bridge")
    bad = '{"seq": 2, "room": "cm2-b", "kind": "state", "at": 1002.0, "body": ' + body + "}"
    raw = payload(record(1, "state", BIRTH), bad, record(3, "evt", ap_changed(3, True)))
    assert city.handle(TOPIC, raw) == (SCHOOL, 3, "")  # the ack passes it
    store, metrics = city.store, city.metrics
    assert store.seqs(SCHOOL) == [1, 3]
    assert [(r["seq"], r["reason"]) for r in store.rejected(SCHOOL)] == [(2, "record_body")]
    snap = metrics.snapshot()
    assert nonzero(metrics) == {"record_body": 1}
    assert (snap["records_stored"], snap["records_set_aside"], snap["internal_errors"]) == (2, 1, 0)
    # The room moved on with the good records; the bad one applied nothing.
    [room] = store.status()["schools"][0]["rooms"]
    assert (room["boot"], room["ap"], room["online"]) == (7, True, True)
    refusals = [r for r in caplog.records if "(record_body)" in r.getMessage()]
    assert len(refusals) == 1 and all(len(r.getMessage()) < 800 for r in caplog.records)
    # The gateway sends the batch again (it missed the ack): a repeat, not a
    # second refusal, and not logged again.
    assert city.handle(TOPIC, raw) == (SCHOOL, 3, "")
    assert nonzero(metrics) == {"record_body": 1}
    assert metrics.snapshot()["duplicates"] == 3
    assert len([r for r in caplog.records if "(record_body)" in r.getMessage()]) == 1
    # What the API reads is still whole.
    assert [r["seq"] for r in store.records()] == [3, 1]


def test_a_seq_beyond_64_bits_is_refused_alone(city):
    raw = payload(record(1), record(2**63), record(2), record(3))
    assert city.handle(TOPIC, raw) == (SCHOOL, 3, "")
    assert city.store.seqs(SCHOOL) == [1, 2, 3]
    assert nonzero(city.metrics) == {"record_seq": 1}
    assert city.store.rejected(SCHOOL) == []  # no seq to set it aside under
    assert city.metrics.snapshot()["internal_errors"] == 0


def test_a_payload_the_decoder_cannot_read_at_all_is_refused_with_a_reason(city):
    # Deep, and not JSON either: nothing can be saved from it.
    assert city.handle(TOPIC, b'{"v": 1, "x": ' + b"[" * 40000) is None
    assert nonzero(city.metrics) in ({"not_json": 1}, {"unreadable": 1})
    assert city.metrics.snapshot()["internal_errors"] == 0


def test_defuse_makes_only_what_the_decoder_refuses_readable():
    assert defuse(b'{"a": [[1]], "b": "[[[[ 99999"}', depth=3, digits=4) is None
    assert defuse(b'{"a": [[[1, [2]]]], "b": "[[[["}', depth=2) == b'{"a": [null], "b": "[[[["}'
    assert defuse(b'{"a": 123456, "b": "123456", "c": 1.5}', digits=5) == b'{"a": 1e999, "b": "123456", "c": 1.5}'
    assert defuse(b'["\\"[[[", [[[0]]]]', depth=2) == b'["\\"[[[", [null]]'
    readable = json.loads(defuse(payload(record(1), '{"seq": 2, "body": ' + DEEP + "}")))
    assert [r["seq"] for r in readable["records"]] == [1, 2]


SCHOOL_BATCH_GOOD = [Record(1, "cm2-b", "state", 1001.0, BIRTH)]


def deep(levels):
    value: object = 1
    for _ in range(levels):
        value = [value]
    return {"v": 1, "x": value}


@pytest.mark.parametrize("body", [
    {"v": 1, "x": float("nan")}, {"v": 1, "x": float("inf")}, {"v": 1, "x": "\ud800"}, {"\ud800": 1},
    {**BIRTH, "boot": 2**63}, {"v": 1, "x": -(2**63) - 1}, deep(40), {"v": 1, "x": {1, 2}},
], ids=["nan", "inf", "surrogate", "surrogate-name", "boot-2**63", "int-below-64-bits", "deep-40", "a-set"])
def test_the_store_refuses_what_it_could_not_give_back_whatever_the_parser_let_through(city, body):
    # Built by hand: the store's own guard, whatever protocol.citylink checks.
    batch = Batch(SCHOOL, "gw-1", SCHOOL_BATCH_GOOD + [Record(2, "cm2-b", "state", 1002.0, body),
                                                      Record(3, "cm2-b", "evt", 1003.0, ap_changed(3, True))])
    result = city.store.store_batch(batch, 5000.0)
    assert (result.stored, result.set_aside, result.acked) == (2, 1, 3)
    assert [(r.seq, r.reason) for r in result.refused] == [(2, "record_body")]
    assert [r["seq"] for r in city.store.records()] == [3, 1]
    [room] = city.store.status()["schools"][0]["rooms"]
    assert (room["boot"], room["ap"]) == (7, True)


def test_a_seq_beyond_64_bits_never_reaches_sqlite(city):
    batch = Batch(SCHOOL, "gw-1", [Record(2**63, "cm2-b", "decision", 1.0, {"v": 1}),
                                   Record(1, "cm2-b", "decision", 1.0, {})])
    result = city.store.store_batch(batch, 5000.0)
    assert (result.stored, result.set_aside, result.acked) == (1, 0, 1)
    assert [(r.seq, r.reason) for r in result.refused] == [(None, "record_seq")]


def test_a_failure_while_applying_a_record_rolls_back_that_record_only(city, monkeypatch):
    apply = CityStore._apply_to_room

    def failing(self, db, school, rec):
        applied = apply(self, db, school, rec)  # its room update is made, then undone with the record
        if rec.seq == 2:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return applied

    monkeypatch.setattr(CityStore, "_apply_to_room", failing)
    raw = payload(record(1, "state", BIRTH), record(2, "evt", ap_changed(2, True)),
                  record(3, "evt", ap_changed(3, False)))
    assert city.handle(TOPIC, raw) == (SCHOOL, 3, "")
    assert city.store.seqs(SCHOOL) == [1, 3]
    assert [(r["seq"], r["reason"]) for r in city.store.rejected(SCHOOL)] == [(2, "record_body")]
    assert city.store._read("SELECT live_seq, ap FROM rooms") == [{"live_seq": 3, "ap": 0}]


def test_a_bug_on_one_record_is_counted_as_a_bug_and_holds_nothing_back(city, monkeypatch, caplog):
    apply = CityStore._apply_to_room

    def buggy(self, db, school, rec):
        if rec.seq == 2:
            raise KeyError("a bug")
        return apply(self, db, school, rec)

    monkeypatch.setattr(CityStore, "_apply_to_room", buggy)
    # Records a room's view takes (a decision or an audit entry is kept as it came, never applied).
    raw = payload(record(1, "state", BIRTH), record(2, "evt", ap_changed(2, True)),
                  record(3, "evt", ap_changed(3, False)))
    assert city.handle(TOPIC, raw) == (SCHOOL, 3, "")
    assert city.store.seqs(SCHOOL) == [1, 3]
    assert [(r["seq"], r["reason"]) for r in city.store.rejected(SCHOOL)] == [(2, INTERNAL_ERROR)]
    assert city.metrics.snapshot()["internal_errors"] == 1 and nonzero(city.metrics) == {}
    assert any(r.exc_info for r in caplog.records)  # the traceback, for whoever fixes it


def test_a_database_failure_is_not_acked(city, monkeypatch):
    def broken(batch, received_at, checked=False):
        raise StoreWriteError("disk I/O error")

    monkeypatch.setattr(city.store, "store_batch", broken)
    assert city.handle(TOPIC, payload(record(1))) is None  # the gateway sends it again
    assert city.metrics.snapshot()["store_errors"] == 1


def test_an_odd_gateway_id_never_breaks_the_store(city):
    # The contract may refuse it; the store, given it, keeps it readable.
    city.handle(f"preau/v1/city/{SCHOOL}/gateway", b'{"v": 1, "online": true, "gateway": "gw-\\ud800"}')
    city.store.set_gateway_state("0679999z", True, "gw-\ud800", 1.0)
    schools = {s["school"]: s for s in city.store.status()["schools"]}
    gateway = schools["0679999z"]["gateway"]
    assert gateway.startswith("gw-") and gateway.encode("utf-8")
    assert city.metrics.snapshot()["internal_errors"] == 0
