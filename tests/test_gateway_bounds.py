"""One bad message costs only itself: absurd numbers, messages sent ahead
of a board, deep nesting, floods. Against a real Mosquitto, plain paho
clients playing the boards (and the attacker), real SQLite."""

import json
import logging

import pytest
from helpers import school_config

from devkit.testing import Board, school_clock, wait_for
from edge_gateway.gateway import Gateway
from edge_gateway.history import read_records, records_of

SCHOOL = "0341234a"


@pytest.fixture
def start(mosquitto, tmp_path):
    running = []

    def make(**kwargs):
        gw = Gateway(school_config(mosquitto, tmp_path, "gw-bounds"), clock=school_clock(), **kwargs).start()
        running.append(gw)
        return gw

    yield make
    for gw in running:
        gw.stop()


@pytest.fixture
def boards(mosquitto):
    made = []

    def make(room, boot=5):
        b = Board(mosquitto.host, mosquitto.port, SCHOOL, room, boot=boot).connect()
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


ABSURD = [
    ("boot 2^62", {"boot": 2**62}),
    ("boot 10^30", {"boot": 10**30}),
    ("uptime 2^62", {"uptime_ms": 2**62}),
    ("boot -1", {"boot": -1}),
    ("boot 1.0", {"boot": 1.0}),
]


@pytest.mark.parametrize("fields", [f for _, f in ABSURD], ids=[name for name, _ in ABSURD])
def test_an_absurd_birth_never_locks_a_room_out(start, boards, fields):
    gw = start()
    board = boards("cm2-b", boot=5)
    wait_for(lambda: gw.rooms()["cm2-b"]["boot"] == 5, what="the real birth")
    forged = {"v": 1, "online": True, "boot": 5, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 0,
              "session": "idle", "ap": False, "devices": []} | fields
    board.publish("state", json.dumps(forged).encode(), retain=True)
    wait_for(lambda: gw.metrics["rejected"].get("bad_field") == 1, what="the absurd birth rejected")
    board.birth()  # the real one again, retained for the next start
    req = board.request()
    assert board.cmd_for(req)["cmd"] == "grant"
    assert gw.rooms()["cm2-b"]["boot"] == 5
    # Nothing of it was saved: a restart finds the room as the real board left it.
    gw.stop()
    gw2 = start()
    assert gw2.rooms()["cm2-b"]["boot"] == 5
    req = board.request()
    assert board.cmd_for(req)["cmd"] == "grant"


@pytest.mark.parametrize("field, value", [("seq", 2**62), ("uptime_ms", 2**62), ("boot", 10**30)])
def test_an_absurd_event_is_rejected_and_the_room_still_answered(start, boards, field, value):
    gw = start()
    board = boards("cm2-b")
    event = {"v": 1, "boot": 5, "seq": 1, "uptime_ms": 10, "time": None, "type": "button", "data": {"press": "short"}}
    board.publish("evt", json.dumps(event | {field: value}).encode())
    wait_for(lambda: gw.metrics["rejected"].get("bad_field") == 1, what="rejected")
    assert board.cmd_for(board.request())["cmd"] == "grant"
    assert gw.metrics["internal_errors"] == 0


def test_a_board_replaced_counts_its_boots_from_one_again(start, boards):
    gw = start()
    old = boards("cm2-b", boot=57)
    wait_for(lambda: gw.rooms()["cm2-b"]["boot"] == 57, what="the old board")
    old.close()
    new = boards("cm2-b", boot=1)
    wait_for(lambda: gw.rooms()["cm2-b"]["boot"] == 1, what="the new board's birth is the present")
    assert new.cmd_for(new.request())["cmd"] == "grant"


def test_an_event_sent_ahead_of_the_board_never_erases_the_boards_own(start, boards, mosquitto):
    """A copy of the board's identity (its config.json on a second device)
    sends numbers the board has not reached yet. On the broker a second
    connection of one identity replaces the first, so it is handed to the
    gateway's worker directly, signed with the room's key."""
    from paho.mqtt.client import MQTTMessage

    from protocol import mac

    gw = start()
    board = boards("cm2-b")
    stray = MQTTMessage(topic=board.topic("evt").encode())
    body = json.dumps({"v": 1, "boot": 5, "seq": 2, "uptime_ms": 2000, "time": None, "type": "button",
                       "data": {"press": "long"}}).encode()
    stray.payload = mac.sign(bytes.fromhex(mosquitto.creds["cm2-b"].key), board.topic("evt"), body)
    try:
        # Numbers the board has not reached yet, another content.
        assert gw._loop is not None
        gw._loop.call_soon_threadsafe(gw._on_board, stray)
        wait_for(lambda: gw.metrics["accepted"].get("evt") == 1, what="the stray event stored")
        board.event("button", {"press": "short"}, seq=1)
        board.event("button", {"press": "short"}, seq=2)  # the board's own seq 2
        board.event("button", {"press": "short"}, seq=2)  # and its QoS 1 redelivery
        wait_for(lambda: gw.metrics["accepted"].get("evt") == 4, what="all handled")
        assert gw.metrics["conflicts"] == 1 and gw.metrics["duplicates"] == 1
        events = [(json.loads(r.body)["seq"], json.loads(r.body)["data"]["press"])
                  for r in records_of(gw.config.db) if r.kind == "evt"]
        assert events == [(2, "long"), (1, "short"), (2, "short")]
    finally:
        board.close()


def test_deep_nesting_is_refused_at_the_codec(start, boards):
    gw = start()
    board = boards("cm2-b")
    deep = '{"v":1,"boot":5,"seq":1,"uptime_ms":1,"time":null,"type":"x","data":{"a":' + "[" * 400 + "]" * 400 + "}}"
    assert len(deep) < 1024
    board.publish("evt", deep.encode())
    wait_for(lambda: gw.metrics["rejected"].get("bad_field") == 1, what="the deep event rejected")
    assert read_records(gw.config.db, kinds=("evt",)) == []
    assert board.cmd_for(board.request())["cmd"] == "grant"


def test_a_flood_from_one_room_is_refused_and_the_other_rooms_keep_answering(start, boards, caplog):
    gw = start(room_burst=30, room_rate_per_s=0.01)
    flood = boards("cm2-b")
    other = boards("cp-a")
    wait_for(lambda: gw.metrics["last_seq"] == 2, what="both births")
    for seq in range(1, 101):
        flood.publish("evt", {"v": 1, "boot": 5, "seq": seq, "uptime_ms": seq, "time": None, "type": "button",
                              "data": {"press": "short"}}, qos=0)
    # The other room is still answered, and what it sends is still stored.
    assert other.cmd_for(other.request())["cmd"] == "grant"
    wait_for(lambda: sum(gw.metrics["rate_limited"].values()) + gw.metrics["accepted"].get("evt", 0) >= 101,
             what="the flood handled")
    stored = [r.room for r in records_of(gw.config.db) if r.kind == "evt"]
    assert stored.count("cm2-b") <= 30 and stored.count("cp-a") == 1
    assert gw.metrics["rate_limited"]["evt"] >= 70


def test_a_flood_of_malformed_messages_is_logged_in_bounded_lines(start, boards, caplog):
    gw = start()
    board = boards("cm2-b")
    with caplog.at_level(logging.WARNING, logger="edge_gateway.gateway"):
        for _ in range(200):
            board.publish("evt", b"{oops", qos=0)  # not a JSON object: not signed, so refused first for that
        wait_for(lambda: gw.metrics["rejected"].get("bad_mac", 0) >= 200, what="all rejected")
    lines = [r for r in caplog.records if "rejected (bad_mac)" in r.getMessage()]
    assert 1 <= len(lines) <= 25
    assert gw.metrics["logs_suppressed"] >= 175
