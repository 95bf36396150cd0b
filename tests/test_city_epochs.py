"""Gateway epochs, dropped ranges, gap requests and telemetry retention in
the city's store (cloud_bridge.store), on a real SQLite file and a real
PostgreSQL (tests/conftest.py `city_database`): a fresh gateway database
(its seqs from 1 again) is stored beside the old one and never mixed with
it; a batch's `dropped` ranges are counted once and acked past; missing
ranges are asked for once they have lasted, once per period, never those
dropped; old telemetry goes, acked records only."""

import json

import pytest

from cloud_bridge.store import CityStore
from protocol.citylink import parse_batch

SCHOOL = "0341234a"


@pytest.fixture
def store(city_database):
    s = CityStore(**city_database)
    yield s
    s.close()


def batch(records, epoch="", dropped=(), gateway="gw-1"):
    envelope = {"v": 1, "school": SCHOOL, "gateway": gateway, "records": records}
    if epoch:
        envelope["epoch"] = epoch
    if dropped:
        envelope["dropped"] = [list(r) for r in dropped]
    return parse_batch(SCHOOL, json.dumps(envelope).encode())


def decision(seq, n=None, at=None):
    return {"seq": seq, "room": "gateway", "kind": "decision", "at": at if at is not None else 1000.0 + seq,
            "body": {"v": 1, "n": seq if n is None else n}}


def birth(seq, boot, fw="0.1.0", uptime_ms=5000):
    return {"seq": seq, "room": "cm2-b", "kind": "state", "at": 1000.0 + seq, "body": {
        "v": 1, "online": True, "boot": boot, "fw": fw, "board": "olimex-esp32-poe", "uptime_ms": uptime_ms,
        "session": "idle", "ap": False, "devices": ["button"]}}


def ap(seq, boot, on, uptime_ms):
    return {"seq": seq, "room": "cm2-b", "kind": "evt", "at": 1000.0 + seq, "body": {
        "v": 1, "boot": boot, "seq": seq, "uptime_ms": uptime_ms, "time": None, "type": "ap.changed",
        "data": {"on": on, "reason": "teacher"}}}


def the_room(store):
    [school] = store.status()["schools"]
    [room] = school["rooms"]
    return room


def test_a_fresh_gateway_is_stored_beside_the_old_one(store):
    old = store.store_batch(batch([birth(1, 7), decision(2), ap(3, 7, True, 9000)] + [decision(s) for s in range(4, 51)]),
                            1.0)
    assert (old.stored, old.acked, old.epoch) == (50, 50, "")
    # The SD card died: a fresh gateway, seqs from 1, other contents. Not a
    # conflict, not a repeat: its own history.
    fresh = store.store_batch(batch([birth(1, 8, fw="0.2.0"), decision(2, n=-2)], epoch="e2", gateway="gw-2"), 2.0)
    assert (fresh.stored, fresh.duplicates, fresh.conflicts, fresh.acked, fresh.epoch) == (2, 0, (), 2, "e2")
    assert store.seqs(SCHOOL, "") == list(range(1, 51)) and store.seqs(SCHOOL, "e2") == [1, 2]
    assert store.acked(SCHOOL, "") == 50 and store.acked(SCHOOL, "e2") == 2 and store.acked(SCHOOL) == 2
    assert [(e["epoch"], e["n"], e["acked"]) for e in store.epochs(SCHOOL)] == [("", 1, 50), ("e2", 2, 2)]
    assert {r["epoch"]: r["body"]["n"] for r in store.records(school=SCHOOL, kind="decision", limit=1000)
            if r["seq"] == 2} == {"": 2, "e2": -2}
    # The fresh gateway's birth is the room's present (its seq 1 against the old seq 3).
    room = the_room(store)
    assert (room["boot"], room["fw"], room["ap"]) == (8, "0.2.0", False)
    [school] = store.status()["schools"]
    assert (school["epoch"], school["acked"]) == ("e2", 2)
    # The old gateway's late batch is its own epoch's: stored and acked there,
    # and history for the room (an older epoch), the school's ack unchanged.
    late = store.store_batch(batch([ap(51, 8, True, 999999)]), 3.0)
    assert (late.stored, late.acked, late.epoch) == (1, 51, "")
    assert the_room(store)["ap"] is False and store.acked(SCHOOL) == 2
    # Repeats are per epoch too.
    again = store.store_batch(batch([birth(1, 8, fw="0.2.0")], epoch="e2", gateway="gw-2"), 4.0)
    assert (again.stored, again.duplicates, again.acked) == (0, 1, 2)


def test_dropped_ranges_are_counted_once_and_acked_past(store):
    result = store.store_batch(batch([decision(s) for s in (1, 2, 3, 9, 10)], epoch="e1", dropped=[(4, 8)]), 1.0)
    assert (result.stored, result.dropped, result.acked) == (5, 5, 10)
    # Said again (a resend): not counted again.
    again = store.store_batch(batch([decision(10)], epoch="e1", dropped=[(4, 8)]), 2.0)
    assert (again.dropped, again.acked) == (0, 10)
    # A range dropped ahead of what arrived, then what follows it.
    ahead = store.store_batch(batch([], epoch="e1", dropped=[(11, 20)]), 3.0)
    assert (ahead.dropped, ahead.acked) == (10, 20)
    assert store.store_batch(batch([decision(21)], epoch="e1"), 4.0).acked == 21
    [school] = store.status()["schools"]
    assert (school["dropped"], school["gaps"]) == (15, 0)
    assert [(d["first"], d["last"]) for d in store.dropped(SCHOOL)] == [(4, 8), (11, 20)]


def test_missing_ranges_are_asked_for_once_they_last(store):
    store.store_batch(batch([decision(s) for s in (1, 2, 5, 6, 9)], epoch="e1", dropped=[(7, 7)]), 100.0)
    assert store.acked(SCHOOL, "e1") == 2
    assert store.gap_requests(now=110.0, after_s=30) == []  # not yet: a batch may be on its way
    [request] = store.gap_requests(now=131.0, after_s=30)
    assert (request.school, request.epoch, request.ranges) == (SCHOOL, "e1", [(3, 4), (8, 8)])
    assert store.gap_requests(now=140.0, after_s=30) == []  # asked: another worker does not ask again
    assert store.status()["schools"][0]["gaps"] == 1
    # Still missing a period later: asked again.
    [again] = store.gap_requests(now=162.0, after_s=30)
    assert again.ranges == [(3, 4), (8, 8)]
    # The gateway resends 3, 4 and says it dropped 8: nothing more to ask.
    result = store.store_batch(batch([decision(3), decision(4)], epoch="e1", dropped=[(8, 8)]), 170.0)
    assert result.acked == 9
    assert store.gap_requests(now=1000.0, after_s=30) == []
    assert store.status()["schools"][0]["gaps"] == 0
    # A gap of a replaced gateway's database is not asked for: nobody answers it.
    store.store_batch(batch([decision(11)], epoch="e1"), 1100.0)
    store.store_batch(batch([decision(1)], epoch="e2"), 1100.0)
    assert store.gap_requests(now=2000.0, after_s=30) == []


def test_old_telemetry_goes_acked_records_only(store):
    def reading(seq, at):
        return {"seq": seq, "room": "cm2-b", "kind": "telemetry", "at": at,
                "body": {"v": 1, "interval_s": 300, "n": 10, "co2_ppm": [600, 700, 800]}}

    store.store_batch(batch([reading(1, 100.0), reading(2, 200.0), decision(3, at=150.0), reading(5, 120.0)]), 1.0)
    assert store.acked(SCHOOL) == 3
    assert store.prune_telemetry(before=150.0) == 2
    assert [r["at"] for r in store.telemetry(SCHOOL, "cm2-b")] == [200.0]
    # Record 1 (acked) went with its reading; record 5 waits beyond the gap
    # at 4, so its record stays: the gateway is not asked for it again.
    assert store.seqs(SCHOOL) == [2, 3, 5]
    assert store.acked(SCHOOL) == 3
    # Resent after the retention (a gateway's late batch): stored, acked.
    assert store.store_batch(batch([reading(4, 90.0)]), 2.0).acked == 5
