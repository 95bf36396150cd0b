"""Where each shared kit is (cloud_bridge.store `kits`, GET /api/kits), on a
real SQLite file and a real PostgreSQL: each kit by its own id (type and number), the newest event
wins by when it happened across schools, a late old batch never moves a kit
back, a detach counts only in the kit's room and keeps the last place, only
live events count, and no kit data, however broken, stops a batch from being
stored."""

import itertools
import json
import secrets

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_bridge.api import create_app
from cloud_bridge.settings import CitySettings
from cloud_bridge.store import CityStore
from protocol.citylink import parse_batch

A, B = "0341234a", "0679999z"
TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(city_database):
    s = CityStore(**city_database)
    yield s
    s.close()


def batch(school, records):
    raw = json.dumps({"v": 1, "school": school, "gateway": "gw-" + school, "records": records}).encode()
    return parse_batch(school, raw)


def evt(boot, eseq, kind, replay=None, time=None, uptime_ms=None, **data):
    body = {"v": 1, "boot": boot, "seq": eseq, "uptime_ms": 60000 + eseq if uptime_ms is None else uptime_ms,
            "time": time, "type": kind, "data": data}
    if replay is not None:
        body["replay"] = replay
    return body


def attach(seq, at, kit="climate-01", room="cm2-b", boot=7, sensors=("bme280", "scd4x"), **extra):
    return {"seq": seq, "room": room, "kind": "evt", "at": at,
            "body": evt(boot, seq, "kit.attached", kit=kit, sensors=list(sensors), **extra)}


def detach(seq, at, kit="climate-01", room="cm2-b", boot=7, **extra):
    return {"seq": seq, "room": room, "kind": "evt", "at": at, "body": evt(boot, seq, "kit.detached", kit=kit, **extra)}


def birth(seq, at, boot, room="cm2-b", uptime_ms=5120):
    return {"seq": seq, "room": room, "kind": "state", "at": at, "body": {
        "v": 1, "online": True, "boot": boot, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": uptime_ms,
        "session": "idle", "ap": False, "devices": ["button"]}}


def where(store, kit="climate-01"):
    found = {k["kit"]: k for k in store.kits()}
    k = found.get(kit)
    return None if k is None else (k["school"], k["room"], k["attached"])


def test_attach_move_late_old_batch_and_detach(store):
    store.store_batch(batch(A, [attach(1, 100.0, room="cm2-b")]), 1.0)
    assert store.kits() == [{"kit": "climate-01", "type": "climate", "school": A, "room": "cm2-b", "attached": True,
                             "sensors": ["bme280", "scd4x"], "since": 100.0, "last_seen": 100.0}]
    # The kit is carried to school B and plugged in there.
    store.store_batch(batch(B, [attach(1, 200.0, room="ce1", sensors=["bme280"])]), 2.0)
    assert where(store) == (B, "ce1", True)
    # A's gateway was offline: its detach at 150 (and a stray re-attach at
    # 160) arrive after B's attach at 200. They are stored, but the kit stays.
    result = store.store_batch(batch(A, [detach(2, 150.0), attach(3, 160.0)]), 3.0)
    assert result.stored == 2
    assert where(store) == (B, "ce1", True)
    assert store.kits()[0]["sensors"] == ["bme280"]
    # Unplugged in B: detached, last place and sensors kept.
    store.store_batch(batch(B, [detach(2, 250.0, room="ce1")]), 4.0)
    assert store.kits() == [{"kit": "climate-01", "type": "climate", "school": B, "room": "ce1", "attached": False,
                             "sensors": ["bme280"], "since": 250.0, "last_seen": 250.0}]
    assert store.record_count(A) == 3 and store.record_count(B) == 2


def test_kits_of_one_type_are_tracked_apart(store):
    # Three CO2 kits in one city: each EEPROM holds its own number.
    store.store_batch(batch(A, [attach(1, 100.0, kit="air-co2-01", sensors=["scd4x"]),
                                attach(2, 101.0, kit="air-co2-02", room="ce1", sensors=["scd4x"])]), 1.0)
    store.store_batch(batch(B, [attach(1, 102.0, kit="air-co2-03", room="cp", sensors=["scd4x"])]), 2.0)
    assert [(k["kit"], k["type"], k["school"], k["room"], k["attached"]) for k in store.kits()] == [
        ("air-co2-02", "air-co2", A, "ce1", True),
        ("air-co2-01", "air-co2", A, "cm2-b", True),
        ("air-co2-03", "air-co2", B, "cp", True),
    ]
    assert [k["kit"] for k in store.kits(kind="air-co2", school=A)] == ["air-co2-02", "air-co2-01"]
    # A kit written before kits had numbers is still followed, without a type.
    store.store_batch(batch(B, [attach(2, 103.0, kit="weather", room="cp", sensors=["bme280"])]), 3.0)
    assert [(k["kit"], k["type"]) for k in store.kits(school=B)] == [("air-co2-03", "air-co2"), ("weather", None)]
    assert store.kits(kind="weather") == []


def test_the_events_own_time_orders_not_the_gateways(store):
    # The kit is plugged in B at 200 (board time). A's board was offline: an
    # attach it made at 150 reaches the city later (gateway time 300).
    store.store_batch(batch(A, [attach(1, 100.0, time=100)]), 1.0)
    store.store_batch(batch(B, [attach(1, 200.0, room="ce1", time=200)]), 2.0)
    store.store_batch(batch(A, [attach(2, 300.0, time=150)]), 3.0)
    assert where(store) == (B, "ce1", True)
    assert store.kits()[0]["since"] == 200.0
    # A gateway whose clock is behind: its record's `at` is older, but the
    # event happened after B's attach, so it applies.
    store.store_batch(batch(A, [attach(3, 190.0, time=260)]), 4.0)
    assert where(store) == (A, "cm2-b", True)
    # (last seen: when its room last was, 300 by the gateway's clock)
    assert (store.kits()[0]["since"], store.kits()[0]["last_seen"]) == (260.0, 300.0)
    # A board without the time: the gateway's `at` stands in.
    store.store_batch(batch(B, [attach(2, 270.0, room="ce1")]), 5.0)
    assert where(store) == (B, "ce1", True) and store.kits()[0]["since"] == 270.0


def test_a_board_clock_far_ahead_never_pins_a_kit(store):
    # A board clock years ahead (2106): trusted, no later news could ever
    # move the kit again. More than a day after the gateway's `at`, the
    # board's time is a broken clock and `at` stands in.
    store.store_batch(batch(A, [attach(1, 100.0, time=2**32 - 1)]), 1.0)
    assert (where(store), store.kits()[0]["since"]) == ((A, "cm2-b", True), 100.0)
    store.store_batch(batch(B, [attach(1, 200.0, room="ce1")]), 2.0)
    assert where(store) == (B, "ce1", True)
    # Within a day ahead, the board's own time still orders (a gateway clock behind).
    store.store_batch(batch(A, [attach(2, 300.0, time=300 + 86000)]), 3.0)
    assert (where(store), store.kits()[0]["since"]) == ((A, "cm2-b", True), 86300.0)


def test_a_late_detach_from_a_room_the_kit_left_is_history(store):
    store.store_batch(batch(A, [attach(1, 100.0, time=100)]), 1.0)
    # Carried from cm2-b to ce1 (same school) while cm2-b's board was offline.
    store.store_batch(batch(A, [attach(2, 200.0, room="ce1", time=200)]), 2.0)
    # cm2-b's board comes back and delivers the unplug it saw at 150.
    result = store.store_batch(batch(A, [detach(3, 300.0, time=150)]), 3.0)
    assert result.stored == 1
    assert where(store) == (A, "ce1", True)
    # Even with a later time (a board clock set late), a detach from a room
    # the kit is not in says nothing about where it is.
    store.store_batch(batch(A, [detach(4, 310.0, time=250)]), 4.0)
    assert where(store) == (A, "ce1", True)
    # The detach of the room it is in applies; a newer one of the old room still does not.
    store.store_batch(batch(A, [detach(5, 320.0, room="ce1", time=260)]), 5.0)
    assert where(store) == (A, "ce1", False)
    store.store_batch(batch(A, [detach(6, 330.0, time=270)]), 6.0)
    assert where(store) == (A, "ce1", False)
    assert store.kits()[0]["since"] == 260.0 and store.record_count(A) == 6


def test_kit_events_a_board_kept_during_an_outage_do_not_move_a_kit(store):
    store.store_batch(batch(B, [attach(1, 100.0, room="ce1")]), 1.0)
    # A's board was up all along (boot 7) but offline: it reconnects at
    # uptime 600 s, then sends from its flash outbox an attach it saw at 5 s.
    store.store_batch(batch(A, [birth(1, 700.0, boot=7, uptime_ms=600000),
                                {"seq": 2, "room": "cm2-b", "kind": "evt", "at": 701.0,
                                 "body": evt(7, 1, "kit.attached", uptime_ms=5000, kit="climate-01", sensors=["scd4x"])}]), 2.0)
    assert store.record_count(A) == 2
    assert where(store) == (B, "ce1", True)


def test_a_kit_moved_during_an_outage_is_placed_by_the_boards_own_time(store):
    store.store_batch(batch(B, [attach(1, 100.0, room="ce1")]), 1.0)
    # A's board, offline, saw the kit plugged in at Unix time 500 (it had the
    # time): sent from its outbox after its birth, it is news all the same.
    store.store_batch(batch(A, [birth(1, 700.0, boot=7, uptime_ms=600000),
                                {"seq": 2, "room": "cm2-b", "kind": "evt", "at": 701.0,
                                 "body": evt(7, 1, "kit.attached", uptime_ms=5000, time=500, kit="climate-01",
                                             sensors=["scd4x"])}]), 2.0)
    assert where(store) == (A, "cm2-b", True)
    # An older one from the outbox of another board does not take it back.
    store.store_batch(batch(B, [birth(2, 710.0, boot=7, room="ce1", uptime_ms=900000),
                                {"seq": 3, "room": "ce1", "kind": "evt", "at": 711.0,
                                 "body": evt(7, 9, "kit.attached", uptime_ms=9000, time=400, kit="climate-01",
                                             sensors=["scd4x"])}]), 3.0)
    assert where(store) == (A, "cm2-b", True)


def test_duplicates_change_nothing(store):
    first = batch(A, [attach(1, 100.0), detach(2, 110.0)])
    store.store_batch(first, 1.0)
    before = store.kits()
    assert before[0]["attached"] is False
    # The whole batch again, then the attach alone (QoS 1 redelivery, a
    # gateway resending its outbox): repeats, never applied twice.
    again = store.store_batch(first, 2.0)
    assert (again.stored, again.duplicates) == (0, 2)
    alone = store.store_batch(batch(A, [attach(1, 100.0)]), 3.0)
    assert (alone.stored, alone.duplicates) == (0, 1)
    assert store.kits() == before


def test_only_live_events_move_a_kit(store):
    store.store_batch(batch(A, [birth(1, 100.0, boot=8), attach(2, 101.0, boot=8, kit="light-01", sensors=["bh1750"])]), 1.0)
    store.store_batch(batch(A, [
        # A replay from the board's outbox, and an older boot's events: history.
        attach(3, 102.0, kit="climate-01", boot=8, replay=True),
        attach(4, 103.0, kit="weather-01", boot=7),
        detach(5, 104.0, kit="light-01", boot=7),
    ]), 2.0)
    assert [(k["kit"], k["attached"]) for k in store.kits()] == [("light-01", True)]
    # The board restarted (boot 9) without the kit; an event of boot 9 older
    # (by seq) than the birth that set the live view arrives after it.
    store.store_batch(batch(A, [birth(10, 110.0, boot=9)]), 3.0)
    store.store_batch(batch(A, [attach(9, 105.0, kit="thermo-01", boot=9, sensors=["aht20"])]), 4.0)
    assert store.record_count(A) == 7
    assert [(k["kit"], k["attached"]) for k in store.kits()] == [("light-01", False)]


def test_a_restart_without_the_kit_detaches_it_and_a_restart_with_it_attaches_it_again(store):
    store.store_batch(batch(A, [birth(1, 100.0, boot=7), attach(2, 101.0, boot=7)]), 1.0)
    # The board restarts and finds the kit still plugged in: it says so again.
    store.store_batch(batch(A, [birth(3, 200.0, boot=8), attach(4, 201.0, boot=8)]), 2.0)
    assert where(store) == (A, "cm2-b", True)
    assert store.kits()[0]["since"] == 201.0
    # It restarts without it: no detach is ever sent, the restart says it.
    store.store_batch(batch(A, [birth(5, 300.0, boot=9)]), 3.0)
    assert where(store) == (A, "cm2-b", False)
    # The kit's attach at 201 still stands against older news from elsewhere.
    store.store_batch(batch(B, [attach(1, 150.0, room="ce1")]), 4.0)
    assert where(store) == (A, "cm2-b", False)


def test_an_attached_kit_is_seen_when_its_room_is(store):
    store.store_batch(batch(A, [attach(1, 100.0)]), 1.0)
    store.store_batch(batch(A, [{"seq": 2, "room": "cm2-b", "kind": "evt", "at": 180.0,
                                 "body": evt(7, 2, "button", press="short")}]), 2.0)
    [kit] = store.kits()
    assert (kit["since"], kit["last_seen"]) == (100.0, 180.0)
    store.store_batch(batch(A, [detach(3, 190.0)]), 3.0)
    store.store_batch(batch(A, [{"seq": 4, "room": "cm2-b", "kind": "evt", "at": 400.0,
                                 "body": evt(7, 4, "button", press="short")}]), 4.0)
    [kit] = store.kits()
    assert (kit["attached"], kit["since"], kit["last_seen"]) == (False, 190.0, 190.0)


def test_a_tie_in_time_moves_a_kit_only_within_its_room(store):
    store.store_batch(batch(A, [attach(1, 100.0)]), 1.0)
    store.store_batch(batch(B, [attach(1, 100.0, room="ce1")]), 2.0)
    assert where(store) == (A, "cm2-b", True)
    store.store_batch(batch(A, [detach(2, 100.0)]), 3.0)  # same second, same room: seq orders
    assert where(store) == (A, "cm2-b", False)


def test_a_detach_of_a_kit_never_seen_attached_records_its_last_place(store):
    store.store_batch(batch(A, [detach(1, 100.0, room="ce2")]), 1.0)
    assert store.kits() == [{"kit": "climate-01", "type": "climate", "school": A, "room": "ce2", "attached": False, "sensors": [],
                             "since": 100.0, "last_seen": 100.0}]


def test_unknown_kits_are_not_tracked(store):
    result = store.store_batch(batch(A, [attach(1, 100.0, kit="unknown", sensors=["bme280"], reason="blank"),
                                         detach(2, 110.0, kit="unknown")]), 1.0)
    assert (result.stored, result.unusable_bodies) == (2, 0)
    assert store.kits() == []


MALFORMED = [
    {"kit": "Climate Kit!", "sensors": []},  # not an EEPROM id
    {"kit": "", "sensors": []},
    {"kit": "x" * 33, "sensors": []},
    {"kit": "climate-01", "sensors": [1, None]},  # the codec only checks "a list"
    {"kit": "climate-01", "sensors": ["scd4x"] * 17},
    {"kit": "climate-01", "sensors": ["x" * 100]},
    {"kit": "climate-01", "sensors": [""]},
    {"kit": "climate-01", "sensors": [["bme280"]]},
    {"kit": "climate-01", "sensors": "bme280"},  # refused by the codec
    {"kit": 7, "sensors": []},
    {"kit": None, "sensors": []},
    {"sensors": ["bme280"]},
    {"kit": "climate-01"},
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_kit_data_is_stored_and_never_moves_a_kit(store, data):
    store.store_batch(batch(A, [attach(1, 100.0)]), 1.0)
    body = {"v": 1, "boot": 7, "seq": 2, "uptime_ms": 1, "time": None, "type": "kit.attached", "data": data}
    result = store.store_batch(batch(B, [{"seq": 1, "room": "ce1", "kind": "evt", "at": 200.0, "body": body},
                                         attach(2, 201.0, kit="light-01", room="ce1", sensors=["bh1750"])]), 2.0)
    assert (result.stored, result.acked) == (2, 2)
    assert where(store) == (A, "cm2-b", True)
    assert where(store, "light-01") == (B, "ce1", True)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


def test_any_kit_data_never_crashes_ingest(store):
    # One database, a school of its own for each example.
    schools = (f"s{n:07d}" for n in itertools.count())

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(["kit.attached", "kit.detached"]),
           st.fixed_dictionaries({}, optional={
               "kit": json_values | st.sampled_from(["climate-01", "climate", "unknown", "a-1"]),
               "sensors": json_values | st.lists(st.text(max_size=40), max_size=20)}))
    def check(kind, data):
        body = {"v": 1, "boot": 7, "seq": 1, "uptime_ms": 1, "time": None, "type": kind, "data": data}
        result = store.store_batch(batch(next(schools), [{"seq": 1, "room": "cm2-b", "kind": "evt", "at": 1.0,
                                                          "body": body}]), 1.0)
        # Stored, or (a value beyond the contract's bounds) set aside: acked either way.
        assert (result.stored + result.set_aside, result.acked) == (1, 1)
        for kit in store.kits():
            assert kit["kit"] not in ("unknown", "") and all(isinstance(s, str) for s in kit["sensors"])

    check()


@pytest.fixture
def client(store):
    store.store_batch(batch(A, [attach(1, 100.0), attach(2, 101.0, kit="light-01", room="ce1", sensors=["bh1750"])]), 1.0)
    store.store_batch(batch(B, [attach(1, 102.0, kit="weather-01", room="cp"), detach(2, 103.0, kit="weather-01", room="cp")]), 2.0)
    with TestClient(create_app(store, CitySettings(token=TOKEN))) as c:
        yield c


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_kits_need_the_token(client, headers):
    response = client.get("/api/kits", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_kits_route_lists_where_each_kit_is(client):
    response = client.get("/api/kits", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == [
        {"kit": "light-01", "type": "light", "school": A, "room": "ce1", "attached": True, "sensors": ["bh1750"], "since": 101.0,
         "last_seen": 101.0},
        {"kit": "climate-01", "type": "climate", "school": A, "room": "cm2-b", "attached": True, "sensors": ["bme280", "scd4x"],
         "since": 100.0, "last_seen": 100.0},
        {"kit": "weather-01", "type": "weather", "school": B, "room": "cp", "attached": False, "sensors": ["bme280", "scd4x"],
         "since": 103.0, "last_seen": 103.0},
    ]
    assert [k["kit"] for k in client.get("/api/kits", params={"school": B}, headers=AUTH).json()] == ["weather-01"]
    assert [k["kit"] for k in client.get("/api/kits", params={"type": "light"}, headers=AUTH).json()] == ["light-01"]
    assert client.get("/api/kits", params={"type": "light-01"}, headers=AUTH).json() == []
    assert client.get("/api/kits", params={"type": "NOT A TYPE"}, headers=AUTH).status_code == 422
    assert client.get("/api/kits", params={"school": "other"}, headers=AUTH).json() == []
    assert client.get("/api/kits", params={"school": "NOT A SCHOOL"}, headers=AUTH).status_code == 422
