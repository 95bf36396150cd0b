# Protocol v1 codec, run under CPython and in the MicroPython VM. Examples come
# from docs/protocol.md; each bad payload must raise ProtocolError naming the
# field, never another exception.
import json

from protocol import codec
from protocol.codec import ProtocolError

from ._util import raises

STATE_ONLINE = {
    "v": 1,
    "online": True,
    "boot": 7,
    "fw": "0.1.0",
    "board": "olimex-esp32-poe",
    "uptime_ms": 5120,
    "session": "idle",
    "ap": False,
    "devices": ["button", "led", "ap_relay"],
}
STATE_OFFLINE = {"v": 1, "online": False, "boot": 7, "reason": "shutdown"}
EVT = {
    "v": 1,
    "boot": 7,
    "seq": 4,
    "uptime_ms": 61300,
    "time": 1763900001,
    "type": "session.started",
    "data": {"req": 3, "duration_s": 2700, "ap": True, "projector": True, "source": "gateway"},
}
TELE = {"v": 1, "boot": 7, "uptime_ms": 120000, "session": "active", "ap": True, "remaining_s": 2580, "outbox": 0, "dropped": 0}
GRANT = {"v": 1, "id": "g-000042", "cmd": "grant", "req": 3, "duration_s": 2700, "ap": True, "projector": True, "now": 1763900001}
DENY = {"v": 1, "id": "g-000043", "cmd": "deny", "req": 5, "reason": "room_disabled", "text": "Sessions are disabled in this room."}
ACK_OK = {"v": 1, "id": "g-000042", "ok": True, "boot": 7, "result": "started"}
ACK_ERR = {"v": 1, "id": "g-000044", "ok": False, "boot": 7, "error": "no_pending_request"}
POLICY = {"v": 1, "start": True, "max_s": 2700, "ap": False}


_DROP = object()  # with_(obj, field=_DROP) removes the field


def with_(base, **changes):
    obj = dict(base)
    for k in changes:
        if changes[k] is _DROP:
            del obj[k]
        else:
            obj[k] = changes[k]
    return obj


def bad(leaf, obj_or_raw):
    raw = obj_or_raw if isinstance(obj_or_raw, bytes) else codec.encode(obj_or_raw)
    return str(raises(ProtocolError, codec.parse, leaf, raw))


# -- valid payloads, one or more per leaf ------------------------------------


def test_valid_state():
    assert codec.parse("state", codec.encode(STATE_ONLINE)) == STATE_ONLINE
    assert codec.parse("state", codec.encode(STATE_OFFLINE)) == STATE_OFFLINE
    assert codec.parse("state", b'{"v": 1, "online": false, "boot": 7}')["boot"] == 7


def test_valid_evt():
    assert codec.parse("evt", codec.encode(EVT)) == EVT
    requested = {"v": 1, "boot": 7, "seq": 3, "uptime_ms": 61234, "time": 1763900000, "type": "lesson.requested", "data": {"req": 3}}
    assert codec.parse("evt", codec.encode(requested)) == requested
    ended = {"v": 1, "boot": 7, "seq": 9, "uptime_ms": 2761300, "time": None, "type": "session.ended", "data": {"reason": "time", "ran_s": 2700}}
    assert codec.parse("evt", codec.encode(ended))["time"] is None
    replay = with_(ended, replay=True)
    assert codec.parse("evt", codec.encode(replay))["replay"] is True


def test_valid_every_event_type():
    data = {
        "boot": {"reset_cause": "power_on"},
        "button": {"press": "short"},
        "lesson.requested": {"req": 1},
        "session.started": EVT["data"],
        "session.denied": {"req": 1, "reason": "room_disabled", "source": "gateway"},
        "session.ended": {"reason": "time", "ran_s": 0},
        "ap.changed": {"on": False, "reason": "session_end"},
        "cmd.rejected": {"reason": "bad_json"},
        "session.extended": {"req": 9, "added_s": 2700, "ap": True, "source": "gateway"},
        "projector.changed": {"state": "warming", "lamp_h": 1200},
        "projector.fault": {"error": "lamp"},
        "kit.attached": {"kit": "kit-07", "sensors": ["scd4x", "bh1750"]},
        "kit.detached": {"kit": "kit-07"},
        "kit.fault": {"sensor": "scd4x", "error": "crc"},
        "air.alert": {"co2": 1450, "on": True},
    }
    assert sorted(data) == sorted(codec.EVENT_TYPES)
    for kind in codec.EVENT_TYPES:
        evt = with_(EVT, type=kind, data=data[kind])
        assert codec.parse("evt", codec.encode(evt))["type"] == kind


def test_valid_tele():
    assert codec.parse("tele", codec.encode(TELE)) == TELE


def test_valid_cmd():
    assert codec.parse("cmd", codec.encode(GRANT)) == GRANT
    assert codec.parse("cmd", codec.encode(DENY)) == DENY
    assert codec.parse("cmd", b'{"v": 1, "id": "t-1", "cmd": "end"}')["cmd"] == "end"
    assert codec.parse("cmd", codec.encode({"v": 1, "id": "i", "cmd": "identify", "seconds": 60}))["seconds"] == 60
    assert codec.parse("cmd", codec.encode({"v": 1, "id": "t", "cmd": "time", "now": 1763900001}))["now"] == 1763900001
    assert codec.parse("cmd", codec.encode({"v": 1, "id": "r", "cmd": "reboot"}))["cmd"] == "reboot"


def test_valid_ack():
    assert codec.parse("ack", codec.encode(ACK_OK)) == ACK_OK
    assert codec.parse("ack", codec.encode(ACK_ERR)) == ACK_ERR


def test_valid_policy():
    assert codec.parse("policy", codec.encode(POLICY)) == POLICY
    assert codec.parse("policy", codec.encode(with_(POLICY, max_s=0)))["max_s"] == 0


def test_parse_accepts_bytearray_and_memoryview():
    raw = codec.encode(POLICY)
    assert codec.parse("policy", bytearray(raw)) == POLICY
    assert codec.parse("policy", memoryview(raw)) == POLICY


def test_encode_round_trips_through_json():
    assert isinstance(codec.encode(GRANT), bytes)
    assert json.loads(codec.encode(GRANT)) == GRANT


# -- rejected payloads ----------------------------------------------------------


def test_not_json():
    assert bad("cmd", b"{not json").startswith("payload: not UTF-8 JSON")
    assert bad("cmd", b"").startswith("payload:")
    assert bad("cmd", b"\xff\xfe").startswith("payload:")


def test_not_an_object():
    assert bad("cmd", b"[1, 2]") == "payload: expected a JSON object"
    assert bad("cmd", b'"grant"') == "payload: expected a JSON object"
    assert bad("cmd", b"1") == "payload: expected a JSON object"


def test_wrong_version():
    assert bad("policy", with_(POLICY, v=2)) == "field v: unsupported version 2"
    assert bad("policy", with_(POLICY, v=_DROP)) == "field v: missing"
    assert bad("policy", with_(POLICY, v="1")).startswith("field v: expected an integer")
    assert bad("policy", with_(POLICY, v=True)).startswith("field v: expected an integer")


def test_missing_field():
    assert bad("cmd", with_(GRANT, duration_s=_DROP)) == "field duration_s: missing"
    assert bad("cmd", with_(DENY, reason=_DROP)) == "field reason: missing"
    assert bad("cmd", {"v": 1, "id": "t", "cmd": "time"}) == "field now: missing"
    assert bad("state", with_(STATE_ONLINE, fw=_DROP)) == "field fw: missing"
    assert bad("evt", with_(EVT, data={"req": 3})) == "data.duration_s: missing"
    assert bad("ack", with_(ACK_ERR, error=_DROP)) == "field error: missing"
    assert bad("tele", with_(TELE, session=_DROP)) == "field session: missing"
    assert bad("policy", with_(POLICY, ap=_DROP)) == "field ap: missing"


def test_wrong_type():
    assert bad("cmd", with_(GRANT, duration_s="2700")).startswith("field duration_s: expected an integer")
    assert bad("cmd", with_(GRANT, duration_s=2700.0)).startswith("field duration_s: expected an integer")
    assert bad("cmd", with_(GRANT, ap=1)).startswith("field ap: expected true or false")
    assert bad("cmd", with_(GRANT, req=-1)).startswith("field req: expected an integer >= 0")
    assert bad("cmd", with_(GRANT, id=42)).startswith("field id: expected a string")
    assert bad("state", with_(STATE_ONLINE, devices="led")).startswith("field devices: expected a list")
    assert bad("evt", with_(EVT, data=[])).startswith("field data: expected an object")
    assert bad("evt", with_(EVT, time="now")).startswith("field time: expected an integer >= 0 or null")


def test_bool_is_not_an_int():
    # JSON true must not pass where the contract says integer, although
    # isinstance(True, int) holds in both Pythons.
    assert bad("cmd", with_(GRANT, duration_s=True)).startswith("field duration_s: expected an integer")
    assert bad("cmd", with_(GRANT, req=False)).startswith("field req: expected an integer >= 0")
    assert bad("policy", with_(POLICY, max_s=True)).startswith("field max_s: expected an integer")
    assert bad("evt", with_(EVT, seq=True)).startswith("field seq: expected an integer")
    assert bad("state", with_(STATE_OFFLINE, boot=True)).startswith("field boot: expected an integer >= 0")


def test_duration_out_of_range():
    assert bad("cmd", with_(GRANT, duration_s=0)) == "field duration_s: 0 outside 1..14400"
    assert bad("cmd", with_(GRANT, duration_s=14401)) == "field duration_s: 14401 outside 1..14400"
    assert codec.parse("cmd", codec.encode(with_(GRANT, duration_s=14400)))["duration_s"] == 14400
    assert codec.parse("cmd", codec.encode(with_(GRANT, duration_s=1)))["duration_s"] == 1
    assert bad("policy", with_(POLICY, max_s=-1)) == "field max_s: -1 outside 0..14400"
    assert bad("cmd", {"v": 1, "id": "i", "cmd": "identify", "seconds": 61}) == "field seconds: 61 outside 1..60"


def test_other_field_rules():
    assert bad("cmd", with_(GRANT, id="")) == "field id: expected 1 to 32 characters"
    assert bad("cmd", with_(GRANT, id="x" * 33)) == "field id: expected 1 to 32 characters"
    assert bad("evt", with_(EVT, seq=0)) == "field seq: expected >= 1, got 0"
    assert bad("state", with_(STATE_ONLINE, session="sleeping")) == "field session: unknown state 'sleeping'"


def test_unknown_command():
    assert bad("cmd", with_(GRANT, cmd="explode")) == "field cmd: unknown command 'explode'"


def test_unknown_event_type():
    assert bad("evt", with_(EVT, type="door.opened")) == "field type: unknown event type 'door.opened'"


def test_oversize_payload():
    raw = codec.encode(with_(POLICY, pad="x" * codec.MAX_BOARD_PAYLOAD))
    assert len(raw) > codec.MAX_BOARD_PAYLOAD
    assert bad("policy", raw) == "payload: %d bytes, limit 1024" % len(raw)
    head, tail = b'{"v": 1, "start": true, "max_s": 0, "ap": false, "pad": "', b'"}'
    fits = head + b"x" * (codec.MAX_BOARD_PAYLOAD - len(head) - len(tail)) + tail
    assert len(fits) == 1024
    assert codec.parse("policy", fits)["v"] == 1


# -- topics and names -----------------------------------------------------------


def test_topic_round_trip():
    for leaf in codec.LEAVES:
        t = codec.topic("0341234a", "cm2-b", leaf)
        assert t == "preau/v1/0341234a/cm2-b/" + leaf
        assert codec.parse_topic(t) == ("0341234a", "cm2-b", leaf)
        assert codec.parse_topic(t.encode()) == ("0341234a", "cm2-b", leaf)
        assert codec.parse_topic(bytearray(t.encode())) == ("0341234a", "cm2-b", leaf)


def test_bad_topics():
    def msg(t):
        return str(raises(ProtocolError, codec.parse_topic, t))

    assert msg("preau/v2/s/r/cmd").endswith("not under preau/v1/")
    assert msg("other/v1/s/r/cmd").endswith("not under preau/v1/")
    assert "expected preau/v1/{school}/{room}/{leaf}" in msg("preau/v1/s/r")
    assert "expected preau/v1/{school}/{room}/{leaf}" in msg("preau/v1/s/r/cmd/extra")
    assert msg("preau/v1/S/r/cmd").endswith("bad school name")
    assert msg("preau/v1//r/cmd").endswith("bad school name")
    assert msg("preau/v1/s/r_1/cmd").endswith("bad room name")
    assert msg("preau/v1/s/r/records").endswith("unknown leaf records")
    assert msg(b"preau/v1/s/+/cmd").endswith("bad room name")


def test_valid_name():
    assert codec.valid_name("cm2-b")
    assert codec.valid_name("0341234a")
    assert codec.valid_name("a")
    assert codec.valid_name("x" * 32)
    assert not codec.valid_name("")
    assert not codec.valid_name("x" * 33)
    assert not codec.valid_name("CM2")
    assert not codec.valid_name("cm2_b")
    assert not codec.valid_name("cm2 b")
    assert not codec.valid_name("salle-é")
    assert not codec.valid_name("#")
    assert not codec.valid_name("+")
    assert not codec.valid_name(None)
    assert not codec.valid_name(b"cm2")


def test_policy_windows_checked():
    ok = {"v": 1, "start": True, "max_s": 2700, "ap": False, "cap_s": 3600, "until": 200,
          "windows": [[10, 20, 600, 1], [30, 40, 600, 0]]}
    assert codec.check_policy(dict(ok)) == ok
    for bad in ([[10, 20, 600, True]], [[20, 10, 600, 0]], [[10, 20, 600, 0], [15, 30, 600, 0]],
                [[10, 20, 600]], [["10", 20, 600, 0]], [[10, 20, 99999, 0]]):
        obj = dict(ok)
        obj["windows"] = bad
        raises(codec.ProtocolError, codec.check_policy, obj)


def test_errors_carry_their_kind():
    for raw, kind in ((b"{", "not_json"), (b"[]", "not_object"), (b'{"v": 2}', "version"),
                      (b'{"v": 1, "id": 5}', "field"), (b"x" * 2000, "too_large")):
        e = raises(codec.ProtocolError, codec.parse, "cmd", raw)
        assert e.kind == kind, (raw, e.kind)
        assert str(e).startswith("payload") or str(e).startswith("field")
    assert raises(codec.ProtocolError, codec.parse_topic, "x/y").kind == "topic"


def test_optional_event_fields_are_checked_when_present():
    ext = with_(EVT, type="lesson.requested", data={"req": 4, "extend": True, "remaining_s": 120})
    assert codec.parse("evt", codec.encode(ext))["data"]["extend"] is True
    bad = with_(EVT, type="lesson.requested", data={"req": 4, "extend": True, "remaining_s": "soon"})
    assert "data.remaining_s" in str(raises(ProtocolError, codec.parse, "evt", codec.encode(bad)))
    bad = with_(EVT, type="projector.changed", data={"state": "on", "lamp_h": -1})
    assert "data.lamp_h" in str(raises(ProtocolError, codec.parse, "evt", codec.encode(bad)))


def test_grant_grace_is_bounded():
    assert codec.parse("cmd", codec.encode(with_(GRANT, grace_s=120)))["grace_s"] == 120
    for bad in (-1, 901, "2"):
        raises(ProtocolError, codec.parse, "cmd", codec.encode(with_(GRANT, grace_s=bad)))


def test_telemetry_fields_are_checked():
    full = with_(TELE, projector="on", lamp_h=1234, air={"co2": 900, "t": 21.5})
    assert codec.parse("tele", codec.encode(full)) == full
    for bad in (with_(TELE, session="dancing"), with_(TELE, outbox=-1), with_(TELE, lamp_h="12"),
                with_(TELE, air=[1]), with_(TELE, projector=3)):
        raises(ProtocolError, codec.parse, "tele", codec.encode(bad))


def test_telemetry_air_readings_are_short_names_with_numbers():
    for bad in ({"co2": None}, {"co2": "high"}, {"co2": True}, {"carbon-dioxide": 900}):
        e = raises(ProtocolError, codec.parse, "tele", codec.encode(with_(TELE, air=bad)))
        assert "field air" in str(e)
