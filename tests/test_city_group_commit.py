"""The city's group commit (CityStore.store_batches, Ingest.handle_many):
the records batches waiting in the writer's queue are stored in one
transaction, each acknowledged as if alone. On real SQLite and PostgreSQL,
and through the real ingest loop on a real locked Mosquitto: a record one
batch cannot store, a batch the database refuses, or a gateway message in
the queue costs the other batches nothing."""

from __future__ import annotations

import json
import threading

import pytest

from cloud_bridge.ingest import GROUP_MAX
from cloud_bridge.store import CityStore, StoreWriteError
from devkit.citybroker import LockedCity
from devkit.testing import wait_for
from tests.test_city_ingest import WAIT_S, Gateway, start_service

BIRTH = {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5000,
         "session": "idle", "ap": False, "devices": ["button"]}


def topic(school: str) -> str:
    return f"preau/v1/city/{school}/records"


def batch(school: str, seqs, room: str = "cm2-b", body=None) -> bytes:
    records = [{"seq": s, "room": room, "kind": "decision", "at": 1000.0 + s, "body": body or {"v": 1, "n": s}}
               for s in seqs]
    return json.dumps({"v": 1, "school": school, "gateway": "gw-" + school, "records": records}).encode()


def ap_changed(seq: int) -> dict:
    return {"v": 1, "boot": 7, "seq": seq, "uptime_ms": 6000 + seq, "time": None, "type": "ap.changed",
            "data": {"on": seq % 2 == 1, "reason": "teacher"}}


def events(school: str, seqs) -> bytes:
    records = [{"seq": s, "room": "cm2-b", "kind": "evt", "at": 1000.0 + s, "body": ap_changed(s)} for s in seqs]
    return json.dumps({"v": 1, "school": school, "gateway": "gw-" + school, "records": records}).encode()


@pytest.fixture
def locked_city(tmp_path):
    city = LockedCity.start(tmp_path / "pki", workers=("1", "2"))
    yield city
    city.stop()


@pytest.fixture
def city(city_ingest):
    return city_ingest


def test_a_group_of_batches_from_several_schools_is_stored_and_each_acked(city):
    birth = json.dumps({"v": 1, "school": "0679999z", "gateway": "gw-0679999z", "records": [
        {"seq": 1, "room": "ce1", "kind": "state", "at": 1000.0, "body": BIRTH}]}).encode()
    messages = [(topic("0341234a"), batch("0341234a", range(1, 201))),
                (topic("0679999z"), birth),
                ("preau/v1/city/0679999z/gateway", b'{"v": 1, "online": true, "gateway": "gw-0679999z"}'),
                (topic("0341234a"), batch("0341234a", range(201, 401))),
                (topic("0130001b"), batch("0130001b", [2, 3])),  # seq 1 not yet there: acked 0
                (topic("0341234a"), batch("0341234a", range(150, 260))),  # repeats only
                (topic("0341234a"), b"not json")]
    acks = city.handle_many(messages)
    assert acks == [("0341234a", 200, ""), ("0679999z", 1, ""), None, ("0341234a", 400, ""),
                    ("0130001b", 0, ""), ("0341234a", 400, ""), None]
    assert city.store.seqs("0341234a") == list(range(1, 401))
    assert city.store.seqs("0130001b") == [2, 3]
    snap = city.metrics.snapshot()
    assert (snap["records_stored"], snap["duplicates"], snap["gateway_states"]) == (403, 110, 1)
    assert snap["rejected"]["not_json"] == 1
    rooms = {(s["school"], r["room"]): r for s in city.store.status()["schools"] for r in s.get("rooms", [])}
    assert rooms[("0679999z", "ce1")]["online"] in (True, 1)


def test_a_record_one_batch_cannot_store_costs_the_others_nothing(city, monkeypatch):
    apply = CityStore._apply_to_room

    def failing(self, work, school, rec):  # the store's own fault path: one record, under a savepoint
        if school == "0130001b" and rec.seq == 2:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return apply(self, work, school, rec)

    monkeypatch.setattr(CityStore, "_apply_to_room", failing)
    messages = [(topic("0341234a"), batch("0341234a", [1, 2])), (topic("0130001b"), events("0130001b", [1, 2, 3])),
                (topic("0679999z"), batch("0679999z", [1]))]
    assert city.handle_many(messages) == [("0341234a", 2, ""), ("0130001b", 3, ""), ("0679999z", 1, "")]
    assert city.store.seqs("0130001b") == [1, 3]
    assert [(r["seq"], r["reason"]) for r in city.store.rejected("0130001b")] == [(2, "record_body")]
    assert city.store.seqs("0341234a") == [1, 2] and city.store.seqs("0679999z") == [1]


def test_a_batch_the_database_refuses_is_not_acked_and_the_others_are(city, monkeypatch):
    store_batch = CityStore._store_batch

    def refusing(self, conn, b, received_at, checked, careful):
        if b.school == "0130001b":
            raise StoreWriteError("disk I/O error")
        return store_batch(self, conn, b, received_at, checked, careful)

    monkeypatch.setattr(CityStore, "_store_batch", refusing)
    messages = [(topic("0341234a"), batch("0341234a", [1])), (topic("0130001b"), batch("0130001b", [1])),
                (topic("0679999z"), batch("0679999z", [1]))]
    assert city.handle_many(messages) == [("0341234a", 1, ""), None, ("0679999z", 1, "")]
    assert city.store.seqs("0130001b") == []  # its gateway sends it again
    assert city.metrics.snapshot()["store_errors"] == 1


def test_the_ingest_loop_groups_what_waits_and_keeps_each_schools_order(locked_city, tmp_path):
    """The writer is held while a gateway publishes 20 batches over the
    real broker (its persistent session keeps them); let go, it takes the
    waiting ones in groups, and every batch is stored and acked in order."""
    service = start_service(locked_city, tmp_path)
    gateway = Gateway(locked_city)
    ingest = service.city.ingest
    groups: list[int] = []
    store_batches = ingest.store.store_batches

    def counted(batches, received_at, checked=False):
        groups.append(len(batches))
        return store_batches(batches, received_at, checked)

    ingest.store.store_batches = counted
    hold = threading.Event()
    try:
        ingest._writer.submit(hold.wait, 60)
        for n in range(20):
            gateway.send(range(n * 10 + 1, n * 10 + 11))
        wait_for(lambda: ingest._inbox.qsize() >= 2, timeout=WAIT_S, what="batches waiting for the writer")
        hold.set()
        gateway.wait_ack(200)
        assert service.store.seqs(gateway.school) == list(range(1, 201))
        assert max(groups) > 1 and max(groups) <= GROUP_MAX and sum(groups) == 20
        acked = [a["acked"] for a in gateway.acks]
        assert acked == sorted(acked) and acked[-1] == 200
    finally:
        hold.set()
        gateway.close()
        service.stop()
