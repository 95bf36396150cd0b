"""City storage (cloud_bridge.store) on a real SQLite file: each (school, seq)
once whatever the replays, the ack is the highest seq with no gap below it,
the live room view never goes back to history."""

import json
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.batch import parse_batch
from cloud_bridge.store import Store, StoreError

SCHOOL = "0341234a"


def body_for(seq):
    return {"v": 1, "n": seq}


def batch(records, school=SCHOOL):
    raw = json.dumps({"v": 1, "school": school, "gateway": "gw-" + school, "records": records}).encode()
    return parse_batch(school, raw)


def rec(seq, room="cm2-b", kind="decision", body=None, at=None):
    return {"seq": seq, "room": room, "kind": kind, "at": at if at is not None else 1000.0 + seq,
            "body": body if body is not None else body_for(seq)}


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "city.db"))
    yield s
    s.close()


def contiguous(delivered):
    n = 0
    while n + 1 in delivered:
        n += 1
    return n


def replays(n):
    seqs = list(range(1, n + 1))
    # An overlapping replay (a slice of the outbox, in any order) or a loose
    # mix with repeats (QoS 1 redeliveries, a gateway restarted mid-batch).
    slices = st.tuples(st.integers(1, n), st.integers(1, n)).flatmap(
        lambda ab: st.permutations(list(range(min(ab), max(ab) + 1))))
    return st.one_of(slices, st.lists(st.sampled_from(seqs), max_size=25))


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.lists(replays(n), min_size=1, max_size=10)))
def test_each_seq_is_stored_once_and_the_ack_never_passes_a_gap(batches):
    with tempfile.TemporaryDirectory() as folder:
        store = Store(os.path.join(folder, "city.db"))
        try:
            delivered: set[int] = set()
            last_ack = 0
            for seqs in batches:
                result = store.store_batch(batch([rec(s) for s in seqs]), received_at=5000.0)
                fresh = set(seqs) - delivered
                delivered |= set(seqs)
                assert result.stored == len(fresh)
                assert result.stored + result.duplicates == len(seqs)
                assert result.acked == contiguous(delivered) >= last_ack
                last_ack = result.acked
            assert store.seqs(SCHOOL) == sorted(delivered)
            assert store.record_count() == len(delivered)
            assert store.acked(SCHOOL) == contiguous(delivered)
            stored = {r["seq"]: r["body"] for r in store.records(school=SCHOOL, limit=1000)}
            assert stored == {s: body_for(s) for s in delivered}
        finally:
            store.close()


def test_schools_are_counted_apart(store):
    store.store_batch(batch([rec(1), rec(2)]), 1.0)
    result = store.store_batch(batch([rec(1), rec(3)], school="0679999z"), 1.0)
    assert (result.stored, result.duplicates, result.acked) == (2, 0, 1)
    assert store.acked(SCHOOL) == 2 and store.acked("0679999z") == 1


def test_a_refused_record_is_set_aside_and_does_not_hold_the_ack_back(store):
    result = store.store_batch(batch([rec(1), rec(2, kind="tele"), rec(3)]), 1.0)
    assert (result.stored, result.set_aside, result.acked) == (2, 1, 3)
    assert store.seqs(SCHOOL) == [1, 3]
    [aside] = store.rejected(SCHOOL)
    assert (aside["seq"], aside["reason"]) == (2, "record_kind")
    assert json.loads(aside["record"])["kind"] == "tele"
    # A record with no readable seq cannot be set aside: the ack waits for it.
    result = store.store_batch(batch([{"seq": "4"}, rec(5)]), 1.0)
    assert (result.stored, result.set_aside, result.acked) == (1, 0, 3)


def birth(boot, fw="0.1.0", session="idle", ap=False):
    return {"v": 1, "online": True, "boot": boot, "fw": fw, "board": "olimex-esp32-poe", "uptime_ms": 5120,
            "session": session, "ap": ap, "devices": ["button", "led", "ap_relay"]}


def death(boot):
    return {"v": 1, "online": False, "boot": boot}


def evt(boot, seq, kind, replay=None, **data):
    body = {"v": 1, "boot": boot, "seq": seq, "uptime_ms": 60000 + seq, "time": None, "type": kind, "data": data}
    if replay is not None:
        body["replay"] = replay
    return body


def room(store, name="cm2-b"):
    [school] = store.status()["schools"]
    return {r["room"]: r for r in school["rooms"]}[name]


def test_room_state_from_birth_death_and_events(store):
    store.store_batch(batch([rec(1, kind="state", body=birth(7))]), 1.0)
    assert room(store) | {"last_seen": None} == {"room": "cm2-b", "online": True, "boot": 7, "session": "idle",
                                                 "ap": False, "last_seen": None, "fw": "0.1.0",
                                                 "board": "olimex-esp32-poe"}
    store.store_batch(batch([
        rec(2, kind="evt", body=evt(7, 3, "session.started", req=3, duration_s=2700, ap=True, projector=True, source="gateway")),
        rec(3, kind="evt", body=evt(7, 4, "ap.changed", on=True, reason="session")),
    ]), 2.0)
    assert (room(store)["session"], room(store)["ap"]) == ("active", True)
    store.store_batch(batch([rec(4, kind="state", body=death(7))]), 3.0)
    assert (room(store)["online"], room(store)["boot"]) == (False, 7)
    store.store_batch(batch([rec(5, kind="state", body=birth(8, fw="0.2.0"))]), 4.0)
    assert room(store) | {"last_seen": None} == {"room": "cm2-b", "online": True, "boot": 8, "session": "idle",
                                                 "ap": False, "last_seen": None, "fw": "0.2.0",
                                                 "board": "olimex-esp32-poe"}
    assert room(store)["last_seen"] == 1005.0


def test_history_never_overwrites_the_live_room(store):
    store.store_batch(batch([rec(1, kind="state", body=birth(8, fw="0.2.0"))]), 1.0)
    live = room(store)
    store.store_batch(batch([
        # An older boot's birth, death and events: history.
        rec(2, kind="state", body=birth(7, fw="0.1.0", session="active", ap=True)),
        rec(3, kind="state", body=death(7)),
        rec(4, kind="evt", body=evt(7, 9, "session.started", req=3, duration_s=60, ap=True, projector=True, source="offline")),
        # The live boot's event replayed from the board's outbox: history too.
        rec(5, kind="evt", body=evt(8, 2, "ap.changed", replay=True, on=True, reason="session")),
    ]), 2.0)
    assert room(store) | {"last_seen": None} == live | {"last_seen": None}
    assert store.record_count() == 5  # history is stored, only the live view ignores it


def test_a_late_record_of_the_same_boot_does_not_go_back(store):
    # seq 3 (death) is received before seq 2 (a session start) of the same boot.
    store.store_batch(batch([rec(1, kind="state", body=birth(7)), rec(3, kind="state", body=death(7))]), 1.0)
    store.store_batch(batch([rec(2, kind="evt", body=evt(7, 1, "session.started", req=1, duration_s=60, ap=False, projector=True, source="gateway"))]), 2.0)
    assert (room(store)["online"], room(store)["session"]) == (False, "idle")


def test_an_unusable_body_is_stored_but_not_applied(store):
    result = store.store_batch(batch([rec(1, kind="state", body={"v": 1, "online": "yes"})]), 1.0)
    assert (result.stored, result.unusable_bodies, result.acked) == (1, 1, 1)
    assert store.status()["schools"][0]["rooms"] == []


def test_gateway_state_and_records_filters(store):
    store.set_gateway_state(SCHOOL, False, "gw-1", 10.0)
    store.store_batch(batch([rec(1, kind="state", body=birth(1)), rec(2, room="ce1"), rec(3, room="gateway")]), 11.0)
    store.set_gateway_state(SCHOOL, True, None, 12.0)
    [school] = store.status()["schools"]
    assert (school["gateway"], school["online"], school["last_seen"]) == ("gw-" + SCHOOL, True, 12.0)
    assert [r["room"] for r in school["rooms"]] == ["cm2-b"]  # decisions and the gateway make no room
    assert [r["seq"] for r in store.records()] == [3, 2, 1]
    assert [r["seq"] for r in store.records(room="ce1")] == [2]
    assert [r["seq"] for r in store.records(kind="state")] == [1]
    assert [r["seq"] for r in store.records(limit=2)] == [3, 2]


def test_a_database_that_cannot_open_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        Store(str(tmp_path / "missing-folder" / "city.db"))
    with pytest.raises(StoreError):
        Store(":memory:")
