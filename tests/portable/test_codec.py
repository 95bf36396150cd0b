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
    assert bad("cmd", with_(GRANT, req=-1)) == "field req: -1 outside 1..4294967295"
    assert bad("cmd", with_(GRANT, id=42)).startswith("field id: expected a string")
    assert bad("state", with_(STATE_ONLINE, devices="led")).startswith("field devices: expected a list")
    assert bad("evt", with_(EVT, data=[])).startswith("field data: expected an object")
    assert bad("evt", with_(EVT, time="now")).startswith("field time: expected an integer >= 0 or null")


def test_bool_is_not_an_int():
    # JSON true must not pass where the contract says integer, although
    # isinstance(True, int) holds in both Pythons.
    assert bad("cmd", with_(GRANT, duration_s=True)).startswith("field duration_s: expected an integer")
    assert bad("cmd", with_(GRANT, req=False)).startswith("field req: expected an integer")
    assert bad("policy", with_(POLICY, max_s=True)).startswith("field max_s: expected an integer")
    assert bad("evt", with_(EVT, seq=True)).startswith("field seq: expected an integer")
    assert bad("state", with_(STATE_OFFLINE, boot=True)).startswith("field boot: expected an integer")


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
    assert bad("evt", with_(EVT, seq=0)) == "field seq: 0 outside 1..4294967295"
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


# -- bounds (docs/protocol.md, "Bounds") -------------------------------------
# What JSON lets through but a board never produces, encoders, databases or
# the protocol refuse: a `field` fault naming the field, never acceptance.


def field_fault(leaf, obj_or_raw):
    raw = obj_or_raw if isinstance(obj_or_raw, bytes) else codec.encode(obj_or_raw)
    e = raises(ProtocolError, codec.parse, leaf, raw)
    assert e.kind == "field", (str(e), e.kind)
    return str(e)


def accepted(leaf, obj):
    assert codec.parse(leaf, codec.encode(obj)) == obj
    return True


def test_a_birth_beyond_the_counters_is_a_bad_field():
    for boot in (2**32, 2**62, 10**30, -1):
        assert field_fault("state", with_(STATE_ONLINE, boot=boot)).startswith("field boot:")
        assert field_fault("state", with_(STATE_OFFLINE, boot=boot)).startswith("field boot:")
    assert field_fault("state", with_(STATE_ONLINE, boot=2**32)) == "field boot: 4294967296 outside 0..4294967295"
    for uptime in (2**40, 2**62, -1):
        assert field_fault("state", with_(STATE_ONLINE, uptime_ms=uptime)).startswith("field uptime_ms:")
    assert accepted("state", with_(STATE_ONLINE, boot=codec.MAX_COUNT, uptime_ms=codec.MAX_UPTIME_MS))
    assert accepted("state", with_(STATE_ONLINE, boot=0, uptime_ms=0))


def test_event_numbers_are_bounded():
    for name, bad_value in (("boot", 2**32), ("seq", 2**32), ("seq", 0), ("uptime_ms", 2**40), ("time", 2**32), ("time", -1)):
        assert field_fault("evt", with_(EVT, **{name: bad_value})).startswith("field %s:" % name)
    assert accepted("evt", with_(EVT, boot=codec.MAX_COUNT, seq=codec.MAX_COUNT, uptime_ms=codec.MAX_UPTIME_MS, time=codec.MAX_TIME))
    data = EVT["data"]
    for name, bad_value in (("req", 0), ("req", 2**32), ("duration_s", 86401), ("duration_s", -1)):
        assert field_fault("evt", with_(EVT, data=with_(data, **{name: bad_value}))).startswith("data.%s:" % name)
    assert accepted("evt", with_(EVT, data=with_(data, req=codec.MAX_COUNT, duration_s=codec.MAX_SPAN_S)))
    for kind, d in (("session.ended", {"reason": "time", "ran_s": 86401}),
                    ("session.extended", {"req": 9, "added_s": 10**12, "ap": True, "source": "gateway"}),
                    ("lesson.requested", {"req": 4, "extend": True, "remaining_s": 86401}),
                    ("projector.changed", {"state": "on", "lamp_h": 10**6}),
                    ("air.alert", {"co2": 65536, "on": True})):
        assert field_fault("evt", with_(EVT, type=kind, data=d)).startswith("data.")
    assert accepted("evt", with_(EVT, type="air.alert", data={"co2": 65535, "on": True}))
    assert accepted("evt", with_(EVT, type="projector.changed", data={"state": "on", "lamp_h": 999999}))


def test_telemetry_numbers_are_bounded():
    for name, bad_value in (("outbox", 2**32), ("dropped", 2**62), ("remaining_s", 86401), ("lamp_h", 10**6), ("uptime_ms", 2**40)):
        assert field_fault("tele", with_(TELE, **{name: bad_value})).startswith("field %s:" % name)
    for air in ({"co2": 10**7}, {"t": -1e7}, {"": 1}, dict(("s%d" % i, i) for i in range(17))):
        assert field_fault("tele", with_(TELE, air=air)).startswith("field air:")
    assert accepted("tele", with_(TELE, outbox=codec.MAX_COUNT, dropped=codec.MAX_COUNT, air={"lux": 1000000, "t": -40.5}))


def test_ack_fields_are_bounded():
    assert field_fault("ack", with_(ACK_OK, boot=2**32)).startswith("field boot:")
    assert field_fault("ack", with_(ACK_OK, id="")) == "field id: expected 1 to 32 characters"
    assert field_fault("ack", with_(ACK_ERR, error="e" * 129)).startswith("field error: expected a string of at most 128")
    assert accepted("ack", with_(ACK_ERR, error="e" * 128))


def test_floats_are_no_integers():
    # 1.0 and 1e2 are floats to both Pythons' json: refused where the
    # contract says integer.
    for leaf, obj, name in (("state", STATE_ONLINE, "boot"), ("state", STATE_ONLINE, "uptime_ms"), ("evt", EVT, "seq"),
                            ("evt", EVT, "time"), ("tele", TELE, "outbox"), ("ack", ACK_OK, "boot"), ("cmd", GRANT, "now"),
                            ("cmd", GRANT, "req"), ("policy", POLICY, "max_s"), ("policy", with_(POLICY, until=5), "until")):
        assert field_fault(leaf, with_(obj, **{name: float(obj[name])})).startswith("field %s: expected an integer" % name)
    assert field_fault("evt", with_(EVT, data=with_(EVT["data"], req=3.0))).startswith("data.req: expected an integer")
    assert field_fault("evt", codec.encode(EVT).replace(b'"seq": 4', b'"seq": 4e0')).startswith("field seq: expected an integer")
    windows = [[10, 20, 600, 1.0]]
    raises(ProtocolError, codec.parse, "policy", codec.encode(with_(POLICY, until=30, windows=windows)))
    windows = [[10.0, 20, 600, 1]]
    raises(ProtocolError, codec.parse, "policy", codec.encode(with_(POLICY, until=30, windows=windows)))


def test_strings_and_names_are_bounded():
    assert field_fault("state", with_(STATE_ONLINE, fw="x" * 129)).startswith("field fw: expected a string of at most 128")
    assert accepted("state", with_(STATE_ONLINE, fw="x" * 128))
    for devices in (["d%d" % i for i in range(17)], ["led", 3], ["led", ""], ["x" * 33], [["led"]]):
        assert field_fault("state", with_(STATE_ONLINE, devices=devices)).startswith("field devices: expected a list")
    kit = with_(EVT, type="kit.attached", data={"kit": "kit-07", "sensors": ["scd4x", ""]})
    assert field_fault("evt", kit).startswith("data.sensors: expected a list")
    assert field_fault("evt", with_(EVT, type="cmd.rejected", data={"reason": "r" * 129})).startswith("data.reason:")
    assert accepted("evt", with_(EVT, type="cmd.rejected", data={"reason": "r" * 120}))


def test_any_number_anywhere_is_bounded():
    # Unknown fields are ignored, but still stored and forwarded: they too
    # must fit a 64-bit column and a double exactly.
    for extra in (2**53, -(2**53), [1, [2**63]], {"deep": 10**30}):
        assert field_fault("evt", with_(EVT, extra=extra)) == "field extra: a number beyond +-2**53"
    assert field_fault("evt", with_(EVT, data=with_(EVT["data"], note=2**60))) == "field data: a number beyond +-2**53"
    assert accepted("evt", with_(EVT, extra=[2**53 - 1, -(2**53 - 1), 1.5]))
    # 1e400 overflows to infinity in both Pythons' json
    raw = codec.encode(EVT)[:-1] + b', "extra": 1e400}'
    assert field_fault("evt", raw) == "field extra: a number beyond +-2**53"


def test_not_a_number_is_refused():
    # CPython's json reads NaN and Infinity (refused as values), MicroPython's
    # does not (refused as not JSON): refused either way.
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        raw = codec.encode(EVT)[:-1] + b', "extra": ' + constant + b"}"
        raises(ProtocolError, codec.parse, "evt", raw)
        raw = codec.encode(GRANT).replace(b'"now": 1763900001', b'"now": ' + constant)
        raises(ProtocolError, codec.parse, "cmd", raw)


def test_nesting_is_bounded():
    # An event nested a few hundred levels deep, within the 1 KB a board may
    # send: refused at the codec, never walked by recursion.
    n = (920 - len(codec.encode(EVT)) - 12) // 2
    raw = codec.encode(EVT)[:-1] + b', "deep": ' + b"[" * n + b"]" * n + b"}"
    assert 900 <= len(raw) <= 920
    assert field_fault("evt", raw) == "field deep: containers nested too deep"
    raw = codec.encode(EVT)[:-1] + b', "deep": ' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}"
    assert field_fault("evt", raw) == "field deep: containers nested too deep"
    # the payload, data, a list, one more level: MAX_DEPTH
    assert codec.MAX_DEPTH == 4
    assert accepted("evt", with_(EVT, data=with_(EVT["data"], extra=[{"a": 1}])))
    assert field_fault("evt", with_(EVT, data=with_(EVT["data"], extra=[[[1]]]))) == "field data: containers nested too deep"
    assert field_fault("policy", with_(POLICY, extra=[[[[]]]])) == "field extra: containers nested too deep"
    assert accepted("policy", with_(POLICY, until=40, windows=[[10, 20, 600, 1], [30, 40, 600, 0]]))


def test_check_values_bounds_every_string():
    assert codec.check_values({"v": 1, "x": "a" * codec.MAX_STRING})["v"] == 1
    e = raises(ProtocolError, codec.check_values, {"v": 1, "x": ["a" * (codec.MAX_STRING + 1)]})
    assert str(e) == "field x: a string of 1025 characters, limit 1024"
    e = raises(ProtocolError, codec.check_values, {"v": 1, "x": {"k" * 1025: 1}})
    assert str(e) == "field x: a string of 1025 characters, limit 1024"
    e = raises(ProtocolError, codec.check_values, {"k" * 1025: 1})
    assert str(e) == "payload: field name: a string of 1025 characters, limit 1024"
    assert codec.value_fault([[1]], 2) is None
    assert codec.value_fault([[1]], 1) == "containers nested too deep"


def test_the_board_checks_the_bounds_of_what_it_receives():
    # protocol/wire.py, as loaded on the board: its literals are the codec's bounds.
    from protocol import wire

    assert wire.parse("cmd", codec.encode(with_(GRANT, now=codec.MAX_TIME)))["now"] == codec.MAX_TIME
    assert wire.parse("cmd", codec.encode(with_(GRANT, req=codec.MAX_COUNT)))["req"] == codec.MAX_COUNT
    for obj, message in ((with_(GRANT, now=2**32), "field now: 4294967296 outside 0..4294967295"),
                         (with_(GRANT, now=-1), "field now: -1 outside 0..4294967295"),
                         ({"v": 1, "id": "t", "cmd": "time", "now": 2**62}, "field now: %d outside 0..4294967295" % 2**62),
                         (with_(GRANT, req=2**32), "field req: 4294967296 outside 1..4294967295"),
                         (with_(DENY, req=0), "field req: 0 outside 1..4294967295"),
                         (with_(POLICY, until=2**32), "field until: 4294967296 outside 0..4294967295")):
        e = raises(ProtocolError, wire.parse, "policy" if "start" in obj else "cmd", codec.encode(obj))
        assert (str(e), e.kind) == (message, "field")
    policy = with_(POLICY, until=2**32 - 1, windows=[[2**32 - 20, 2**32 - 1, 600, 1]])
    assert wire.parse("policy", codec.encode(policy)) == policy
    policy = with_(POLICY, until=2**32 - 1, windows=[[2**32 - 20, 2**32, 600, 1]])
    assert str(raises(ProtocolError, wire.parse, "policy", codec.encode(policy))).startswith("field windows[0]:")
