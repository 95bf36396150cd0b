"""The gateway against a real school broker, locked down as a school runs it
(Mosquitto from the generated files, one identity per board: devkit/school.py),
with plain paho clients playing the boards and signing as boards do, and a
real SQLite file."""

import json
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from helpers import Peer

from devkit.school import LockedSchool
from devkit.testing import Board, school_clock, wait_for
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from protocol.codec import check_cmd, check_policy, parse

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"


@pytest.fixture
def broker(tmp_path):
    school = LockedSchool(school=SCHOOL, gateway_id="gw-0341234a", rooms=("cm2-b", "cp-a", "bcd"),
                          directory=str(tmp_path / "school")).start()
    yield school
    school.stop()


def school_config(broker, tmp_path, **extra):
    return Config.from_dict(
        broker.config(str(tmp_path)) | {
            "db": str(tmp_path / "gateway.sqlite"),
            "policy": {"zone": "C", "commune": "Montpellier"},
            "rooms": {
                "cm2-b": {"wifi": "allowed", "sessions": True},
                "cp-a": {"wifi": "never", "sessions": True},
                "bcd": {"wifi": "allowed", "sessions": False},
            },
        }
        | extra,
        source="test.toml",
    )


@pytest.fixture
def gateway(broker, tmp_path):
    gw = Gateway(school_config(broker, tmp_path), reconnect_max_s=1, clock=school_clock()).start()
    yield gw
    gw.stop()


@pytest.fixture
def board_factory(broker):
    boards = []

    def make(room, boot=1, birth=True):
        b = Board(broker.host, broker.port, SCHOOL, room, boot).connect(birth=birth)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.close()


def test_request_granted_with_room_wifi_and_disabled_room_denied(gateway, board_factory):
    wifi_room, wired_room, disabled = board_factory("cm2-b"), board_factory("cp-a"), board_factory("bcd")

    req = wifi_room.request()
    grant = wifi_room.cmd_for(req)
    check_cmd(grant)
    assert grant["cmd"] == "grant" and grant["req"] == req
    # Tuesday 09:00 in class time (08:30-11:45, at most 5400 s with the access point)
    assert grant["ap"] is True and grant["projector"] is True and grant["duration_s"] == 5400
    assert grant["id"].startswith("g-") and isinstance(grant["now"], int)

    req = wired_room.request()
    assert wired_room.cmd_for(req)["ap"] is False  # "Wi-Fi never" room: projector only

    req = disabled.request()
    deny = disabled.cmd_for(req)
    check_cmd(deny)
    assert deny["cmd"] == "deny" and deny["reason"] == "room_disabled" and deny["req"] == req

    ids = [c["id"] for b in (wifi_room, wired_room, disabled) for c in b.cmds]
    assert len(set(ids)) == 3
    # every board was given the gateway's clock once, at its birth
    for b in (wifi_room, wired_room, disabled):
        assert len(b.times) == 1 and check_cmd(b.times[0])["now"] > 1_700_000_000
    # answers leave before their batch's commit; counts follow the commit
    wait_for(lambda: gateway.metrics["decisions"] == {"grant": 2, "deny": 1}, what="decisions counted")


def test_offline_policy_and_gateway_state_are_retained(gateway, board_factory):
    late = board_factory("cm2-b")  # subscribes after the gateway published: retained
    wait_for(lambda: late.policy, what="retained policy")
    policy = check_policy(late.policy)
    assert policy["start"] is True and policy["ap"] is False  # without the time: no radio
    # 48 h of windows from Tuesday 09:00: Tuesday's class periods with the
    # access point, no window during lunch, none on Wednesday with the AP.
    now = gateway.clock()
    assert policy["until"] == int(now) + 48 * 3600
    first = policy["windows"][0]
    assert first[0] == int(now) and first[3] == 1 and first[2] == 5400
    for start, _end, _max_s, ap in policy["windows"]:
        local = datetime.fromtimestamp(start, ZoneInfo("Europe/Paris"))
        if ap:
            assert local.weekday() in (0, 1, 3, 4) and 8 <= local.hour < 17
    disabled = board_factory("bcd")
    wait_for(lambda: disabled.policy, what="retained policy")
    assert disabled.policy["start"] is False and disabled.policy["ap"] is False
    assert disabled.policy["windows"] == []

    watcher = Peer(late.host, late.port, f"preau/v1/{SCHOOL}/gateway/state")
    state = wait_for(lambda: watcher.json_on("/gateway/state"), what="gateway birth")[-1]
    assert state["online"] is True and state["gateway"] == "gw-0341234a"
    watcher.close()


def test_duplicate_request_is_answered_once(gateway, board_factory):
    board = board_factory("cm2-b")
    req = board.request()
    board.cmd_for(req)
    # QoS 1 redelivery of the same (boot, seq), then a later event as a marker.
    board.event("lesson.requested", {"req": req}, seq=req)
    marker = board.request()
    board.cmd_for(marker)
    assert [c["req"] for c in board.cmds] == [req, marker]
    wait_for(lambda: gateway.metrics["duplicates"] >= 1, what="duplicate counted")


def test_old_boot_is_history_not_live(gateway, board_factory):
    board = board_factory("cm2-b", boot=7)
    wait_for(lambda: gateway.rooms()["cm2-b"]["boot"] == 7, what="birth of boot 7")
    history = gateway.metrics["history"]

    # A request from boot 6 arrives late (a board's outbox after an outage): never answered.
    board.event("lesson.requested", {"req": 4}, seq=4, boot=6)
    # A Last Will of boot 6 (the old connection's death) must not mark the live board offline.
    board.publish("state", {"v": 1, "online": False, "boot": 6})
    wait_for(lambda: gateway.metrics["history"] == history + 2, what="two history records")
    marker = board.request()
    board.cmd_for(marker)
    assert [c["req"] for c in board.cmds] == [marker]
    room = gateway.rooms()["cm2-b"]
    assert room["online"] is True and room["boot"] == 7


def test_registry_from_birth_and_last_will(gateway, board_factory):
    board = board_factory("cp-a", boot=3)
    room = wait_for(lambda: gateway.rooms()["cp-a"]["online"] and gateway.rooms()["cp-a"], what="birth")
    assert (room["boot"], room["fw"], room["board"], room["session"], room["ap"]) == (3, "0.1.0", "olimex-esp32-poe", "idle", False)
    assert room["wifi"] == "never" and room["last_seen"] is not None
    assert gateway.rooms()["cm2-b"]["online"] is None  # configured, never seen

    board.crash()
    room = wait_for(lambda: gateway.rooms()["cp-a"]["online"] is False and gateway.rooms()["cp-a"], what="Last Will")
    assert room["boot"] == 3 and room["ap"] is None


@pytest.mark.parametrize(
    "reason, send",
    [
        ("bad_mac", lambda b: b.publish("evt", b"{not json")),  # only a JSON object can be signed
        ("bad_mac", lambda b: b.publish("evt", {"v": 1, "boot": 1, "seq": 1, "uptime_ms": 0, "time": None,
                                                "type": "boot", "data": {"reset_cause": "power"}}, signed=False)),
        ("bad_json", lambda b: b.publish("evt", b'{"v": 1, "boot": }')),
        ("bad_field", lambda b: b.publish("evt", {"v": 1, "boot": "7", "seq": 1, "uptime_ms": 0, "time": None, "type": "boot", "data": {"reset_cause": "power"}})),
        ("bad_field", lambda b: b.publish("evt", {"v": 1, "boot": 1, "seq": 9, "uptime_ms": 0, "time": None, "type": "lesson.requested", "data": {}})),
        ("bad_version", lambda b: b.publish("state", {"v": 2, "online": True})),
        ("too_large", lambda b: b.publish("evt", b'{"v": 1, "pad": "' + b" " * 2000 + b'"}')),
    ],
    ids=["unsigned-garbage", "unsigned", "malformed-json", "wrong-type", "missing-field", "bad-version", "too-large"],
)
def test_bad_messages_rejected_logged_counted_and_gateway_still_answers(gateway, board_factory, caplog, reason, send):
    caplog.set_level(logging.WARNING, logger="edge_gateway")
    board = board_factory("cm2-b")
    send(board)
    wait_for(lambda: gateway.metrics["rejected"].get(reason) == 1, what=f"a {reason} rejection")
    assert any(f"rejected ({reason})" in r.getMessage() for r in caplog.records)
    assert all(len(r.getMessage()) < 600 for r in caplog.records)  # payloads are truncated in the log
    req = board.request()
    assert board.cmd_for(req)["cmd"] == "grant"
    assert gateway.metrics["internal_errors"] == 0


@pytest.mark.parametrize("reason, where", [
    ("wrong_school", "preau/v1/0999999z/cm2-b/evt"),
    ("unknown_room", f"preau/v1/{SCHOOL}/cm9-z/evt"),
    ("bad_topic", f"preau/v1/{SCHOOL}/CM2_B/evt"),
])
def test_topics_the_broker_would_refuse_are_refused_by_the_gateway_too(gateway, reason, where):
    """Defence in depth: the ACL keeps these off the gateway's subscriptions;
    one that reaches the worker anyway (a broker misconfigured) is refused."""
    from paho.mqtt.client import MQTTMessage

    msg = MQTTMessage(topic=where.encode())
    msg.payload = b'{"v": 1}'
    gateway._loop.call_soon_threadsafe(gateway._on_board, msg)
    wait_for(lambda: gateway.metrics["rejected"].get(reason) == 1, what=reason)


def test_events_stored_once_in_history_with_gap_counted(gateway, board_factory, tmp_path):
    board = board_factory("cm2-b")
    board.event("boot", {"reset_cause": "power"})
    board.event("button", {"press": "short"}, seq=4)  # 2 and 3 never arrive
    board.event("button", {"press": "short"}, seq=4)  # redelivered
    marker = board.request()
    board.cmd_for(marker)
    wait_for(lambda: gateway.metrics["events_missing"] == 2, what="gap counted once committed")
    # the answer leaves before its batch's commit: wait for the commit itself
    wait_for(lambda: gateway.metrics["decisions"].get("grant") == 1, what="the marker's batch committed")
    import sqlite3

    with sqlite3.connect(tmp_path / "gateway.sqlite") as db:
        rows = db.execute("SELECT kind, evt_seq FROM records WHERE kind IN ('evt', 'decision') ORDER BY seq").fetchall()
        seqs = [r[0] for r in db.execute("SELECT seq FROM records ORDER BY seq")]
    assert rows == [("evt", 1), ("evt", 4), ("evt", 5), ("decision", 5)]
    assert seqs == list(range(1, len(seqs) + 1))
    for kind, body in [("evt", {"v": 1, "boot": 1, "seq": 1, "uptime_ms": 1000, "time": None, "type": "boot", "data": {"reset_cause": "power"}})]:
        parse(kind, json.dumps(body).encode())


def test_extension_is_decided_at_the_sessions_end(gateway, board_factory):
    room = board_factory("cm2-b")
    req = room.request()
    assert room.cmd_for(req)["cmd"] == "grant"
    room.event("session.started", {"req": req, "duration_s": 5400, "ap": True, "projector": True, "source": "gateway"})
    # The first grant stops at the class type's 90-minute maximum, inside
    # class time: it carries the policy's grace.
    assert room.cmd_for(req)["grace_s"] == 120
    # Tuesday 09:00, 90 minutes left: one more slot from 10:30, up to the end
    # of the morning's class time (11:45); no grace past the window's end.
    ext = room.event("lesson.requested", {"req": room.seq + 1, "extend": True, "remaining_s": 5400}, seq=room.seq + 1)
    grant = check_cmd(room.cmd_for(ext))
    assert grant["cmd"] == "grant" and 75 * 60 - 10 <= grant["duration_s"] <= 75 * 60 and grant["grace_s"] == 0
    # ending at 11:50, in the lunch break: refused, the session runs on
    late = room.event("lesson.requested", {"req": room.seq + 1, "extend": True, "remaining_s": 10200}, seq=room.seq + 1)
    assert room.cmd_for(late)["cmd"] == "deny"
    room.event("session.denied", {"req": late, "reason": "x", "source": "gateway", "extend": True})
    wait_for(lambda: gateway.metrics["accepted"].get("evt", 0) >= 5, what="the events applied")
    assert gateway.registry.row("cm2-b")["session"] == "active"  # asking for more is not a new session


def test_backlog_from_the_boards_outbox_does_not_rewind_the_live_view(gateway, board_factory):
    """After an outage the board sends its birth (the present), then what its
    flash outbox kept: older telemetry and events are stored, not applied."""
    room = board_factory("cm2-b", birth=False)
    room.birth(uptime_ms=600_000, session="idle", ap=False)
    wait_for(lambda: gateway.registry.row("cm2-b")["online"], what="birth applied")
    room.publish("tele", {"v": 1, "boot": 1, "uptime_ms": 300_000, "session": "active", "ap": True,
                          "remaining_s": 100, "outbox": 3, "dropped": 0})
    room.event("ap.changed", {"on": True, "reason": "session"}, seq=5)  # uptime 5000: before the birth
    wait_for(lambda: gateway.metrics["accepted"].get("tele", 0) >= 1 and gateway.metrics["accepted"].get("evt", 0) >= 1,
             what="backlog stored")
    row = gateway.registry.row("cm2-b")
    assert row["session"] == "idle" and not row["ap"]
    room.publish("tele", {"v": 1, "boot": 1, "uptime_ms": 660_000, "session": "active", "ap": True,
                          "remaining_s": 100, "outbox": 0, "dropped": 0})
    wait_for(lambda: gateway.registry.row("cm2-b")["ap"] is True, what="newer telemetry applied")


def test_a_request_kept_in_the_boards_outbox_is_not_answered(gateway, board_factory):
    """The board decided alone long ago (offline policy); answering now
    would record a gateway grant that never ruled the session."""
    room = board_factory("cm2-b", birth=False)
    room.birth(uptime_ms=600_000)
    wait_for(lambda: gateway.registry.row("cm2-b")["online"], what="birth applied")
    old = room.event("lesson.requested", {"req": 5}, seq=5)  # uptime 5 s, before the birth
    new = room.event("lesson.requested", {"req": 700}, seq=700)  # uptime 700 s: now
    assert room.cmd_for(new)["cmd"] == "grant"
    # counts follow the batch's commit, after the answer
    wait_for(lambda: gateway.metrics["decisions"] == {"grant": 1}, what="one decision counted")
    assert not [c for c in room.cmds if c.get("req") == old]


def test_live_view_marks_survive_a_gateway_restart(broker, tmp_path, board_factory):
    config = school_config(broker, tmp_path)
    gw = Gateway(config, reconnect_max_s=1, clock=school_clock()).start()
    room = board_factory("cm2-b", birth=False)
    room.birth(uptime_ms=600_000, session="idle", ap=False)
    wait_for(lambda: gw.registry.row("cm2-b")["online"], what="birth applied")
    gw.stop()
    gw = Gateway(config, reconnect_max_s=1, clock=school_clock()).start()
    try:
        room.publish("tele", {"v": 1, "boot": 1, "uptime_ms": 300_000, "session": "active", "ap": True,
                              "remaining_s": 100, "outbox": 3, "dropped": 0})
        wait_for(lambda: gw.metrics["accepted"].get("tele", 0) >= 1, what="backlog telemetry stored")
        assert gw.registry.row("cm2-b")["ap"] is not True
    finally:
        gw.stop()
