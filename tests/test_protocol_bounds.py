"""The codec decides what is valid, once, for the gateway and the city
(docs/protocol.md, "Bounds"). CPython only: hypothesis, and what only
CPython's json lets through (NaN, lone surrogates, RecursionError). The
bounds of each field are unit-tested in tests/portable/test_codec.py, which
also runs in the MicroPython VM."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec, wire
from protocol.citylink import (
    MAX_RECORD_SEQ,
    REASONS,
    BatchError,
    parse_batch,
    parse_city_ack,
    parse_gateway_state,
    truncate,
)
from protocol.codec import ProtocolError

STATE = {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5120,
         "session": "idle", "ap": False, "devices": ["button", "led", "ap_relay"]}
EVT = {"v": 1, "boot": 7, "seq": 4, "uptime_ms": 61300, "time": 1763900001, "type": "session.started",
       "data": {"req": 3, "duration_s": 2700, "ap": True, "projector": True, "source": "gateway"}}
KIT = {"v": 1, "boot": 7, "seq": 5, "uptime_ms": 61400, "time": None, "type": "kit.attached",
       "data": {"kit": "kit-07", "sensors": ["scd4x", "bh1750"]}}
TELE = {"v": 1, "boot": 7, "uptime_ms": 120000, "session": "active", "ap": True, "remaining_s": 2580, "outbox": 0,
        "dropped": 0, "projector": "on", "lamp_h": 1234, "air": {"co2": 1180, "t": 21.4, "rh": 48.2}}
ACK = {"v": 1, "id": "g-000042", "ok": True, "boot": 7, "result": "started"}
GRANT = {"v": 1, "id": "g-000042", "cmd": "grant", "req": 3, "duration_s": 2700, "ap": True, "projector": True,
         "now": 1763900001}
POLICY = {"v": 1, "start": True, "max_s": 2700, "ap": False, "cap_s": 7200, "until": 1764072800,
          "windows": [[1763914200, 1763926200, 5400, 1], [1763932200, 1763943000, 5400, 1]]}
VALID = [("state", STATE), ("evt", EVT), ("evt", KIT), ("tele", TELE), ("ack", ACK), ("cmd", GRANT), ("policy", POLICY)]


def strings_of(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings_of(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_of(v)
    elif isinstance(obj, str):
        yield obj


def numbers_of(obj):
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            yield from numbers_of(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def depth_of(obj):
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list):
        return 1 + max((depth_of(v) for v in obj), default=0)
    return 0


def assert_storable(obj, depth=codec.MAX_DEPTH):
    """What an accepted payload promises the gateway's and the city's stores."""
    json.dumps(obj, allow_nan=False, ensure_ascii=False).encode("utf-8")  # raises on NaN, lone surrogates
    for n in numbers_of(obj):
        assert -(2**53) <= n <= 2**53, n  # exact in a double, inside int64
    assert depth_of(obj) <= depth


# Values a JSON parser lets through: big integers, floats for integers, NaN
# and infinities, lone surrogates, long strings, nesting.
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31, 2**32, 2**40, 2**53, 2**62, 2**63, 2**64, 10**30, -1, 0, 1]),
    st.floats(),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1.0, 1e300]),
    st.text(max_size=10),
    st.sampled_from(["\ud800", "a\udfff", "\udbff\udfff"]),
    st.integers(129, 1100).map(lambda n: "x" * n),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.just("\ud800"), inner, max_size=3),
    max_leaves=12,
)


@st.composite
def mutated_payloads(draw):
    """A valid payload with a few fields (known ones, data's, new ones) set to
    hostile values; encoded the way a hostile client would: json.dumps writes
    NaN, Infinity and escaped lone surrogates without complaint."""
    leaf, base = draw(st.sampled_from(VALID))
    obj = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        target = obj
        if isinstance(obj.get("data"), dict) and draw(st.booleans()):
            target = obj["data"]
        # an unknown field half the time: only the bounds of every value stand in its way
        name = draw(st.sampled_from(["extra", "x", "note"]) | st.sampled_from(sorted(target) + ["v"]))
        target[name] = draw(hostile_values)
    return leaf, json.dumps(obj).encode()


def nested(depth, inner=b"1"):
    return b'{"v": 1, "x": ' + b"[" * depth + inner + b"]" * depth + b"}"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads())
def test_whatever_parse_accepts_is_storable(case):
    leaf, raw = case
    try:
        obj = codec.parse(leaf, raw)
    except ProtocolError as e:
        assert e.kind in ("not_json", "not_object", "version", "too_large", "field") and str(e)
        return
    assert_storable(obj)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(codec.LEAVES), st.one_of(
    st.binary(max_size=1100),
    st.integers(0, 600).map(nested),
    st.integers(0, 400).map(lambda n: b'{"v": 1, "x": ' + b'{"a": ' * n + b"1" + b"}" * n + b"}"),
    hostile_values.map(lambda v: json.dumps(v).encode()),
))
def test_parse_raises_only_protocol_errors(leaf, raw):
    try:
        obj = codec.parse(leaf, raw)
    except ProtocolError:
        return
    assert_storable(obj)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["cmd", "policy"]), st.one_of(st.binary(max_size=1100), mutated_payloads().map(lambda c: c[1])))
def test_the_boards_parse_raises_only_protocol_errors(leaf, raw):
    try:
        wire.parse(leaf, raw)
    except ProtocolError:
        pass


@pytest.mark.parametrize("depth", [1500, 40_000])
def test_decode_refuses_what_json_cannot_parse_as_not_json(depth):
    # json.loads itself raises RecursionError a thousand levels down.
    e = pytest.raises(ProtocolError, codec.decode, nested(depth)).value
    assert e.kind == "not_json"
    e = pytest.raises(ProtocolError, codec.decode, nested(900)).value
    assert (str(e), e.kind) == ("field x: containers nested too deep", "field")


@pytest.mark.parametrize("leaf, base, name", [("state", STATE, "fw"), ("evt", KIT, "data"), ("ack", ACK, "result"),
                                              ("tele", TELE, "projector"), ("cmd", GRANT, "id"), ("policy", POLICY, "x")])
def test_a_lone_surrogate_is_refused(leaf, base, name):
    # "\ud800" is valid JSON and a valid Python str, but no UTF-8 encoder,
    # SQLite or PostgreSQL text column takes it.
    obj = dict(base)
    obj[name] = {"sensors": ["\ud800"]} if name == "data" else "g-\udc00"
    raw = json.dumps(obj).encode()
    assert b"\\ud" in raw
    e = pytest.raises(ProtocolError, codec.parse, leaf, raw).value
    assert e.kind == "field" and "lone surrogate" in str(e), str(e)
    # a surrogate pair is one character, and welcome
    obj[name] = "\U0001F600" if name != "data" else base["data"]
    assert codec.parse(leaf, json.dumps(obj).encode()) == obj


def test_a_lone_surrogate_in_a_field_name_is_refused():
    raw = json.dumps(dict(EVT, **{"\ud800": 1})).encode()
    assert str(pytest.raises(ProtocolError, codec.parse, "evt", raw).value) == "payload: field name: a string with a lone surrogate"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_python_json_constants_are_refused(constant):
    for raw in (json.dumps(EVT)[:-1] + ', "extra": %s}' % constant,
                json.dumps(TELE).replace('"t": 21.4', '"t": %s' % constant),
                json.dumps(GRANT).replace('"now": 1763900001', '"now": %s' % constant)):
        leaf = "evt" if "seq" in raw else "tele" if "air" in raw else "cmd"
        e = pytest.raises(ProtocolError, codec.parse, leaf, raw.encode()).value
        assert e.kind == "field", str(e)


def test_the_servers_encode_refuses_what_is_not_json():
    for bad in (float("nan"), float("inf"), {"t": -float("inf")}, {"text": "\ud800"}):
        with pytest.raises(ValueError):
            codec.encode(bad)
    # UTF-8, as the contract says: a French deny text is not escaped
    deny = {"v": 1, "id": "g-1", "cmd": "deny", "req": 5, "reason": "closed", "text": "Salle fermée"}
    assert "fermée".encode() in codec.encode(deny)
    assert codec.parse("cmd", codec.encode(deny)) == deny
    # the bytes of an ASCII payload are the board's own encoding
    assert codec.encode(GRANT) == wire.encode(GRANT)


# -- same (room, boot, seq): duplicate or conflict -----------------------------


def test_a_replay_is_the_same_event():
    replay = dict(EVT, replay=True)
    reordered = dict(reversed(list(EVT.items())))
    assert codec.same_event(EVT, replay) and codec.same_event(EVT, reordered)
    assert codec.same_event(EVT, json.loads(codec.encode(EVT)))
    assert codec.event_digest(EVT) == codec.event_digest(replay) and len(codec.event_digest(EVT)) == 32
    assert codec.same_event(dict(EVT, replay=False), replay)


@pytest.mark.parametrize("change", [
    {"type": "session.denied", "data": {"req": 3, "reason": "closed", "source": "gateway"}},
    {"data": dict(EVT["data"], duration_s=2699)},
    {"uptime_ms": 61301},
    {"time": None},
    {"boot": 8},
    {"extra": 1},
])
def test_a_different_meaning_under_the_same_number_is_a_conflict(change):
    other = dict(EVT, **change)
    assert not codec.same_event(EVT, other)
    assert codec.event_digest(EVT) != codec.event_digest(other)


# -- the city link -----------------------------------------------------------------


def batch(records, **extra):
    return json.dumps({"v": 1, "school": "0341234a", "gateway": "gw-0341234a", "records": records, **extra}).encode()


def record(seq, body=None, **extra):
    return {"seq": seq, "room": "cm2-b", "kind": "evt", "at": 1763900001.25, "body": EVT if body is None else body, **extra}


def test_a_record_nested_40000_deep_is_refused_alone():
    raw = b'{"v": 1, "school": "0341234a", "gateway": "g", "records": [' + b"[" * 40_000 + b"]" * 40_000 + b"]}"
    b = parse_batch("0341234a", raw)
    assert b.records == [] and [x.reason for x in b.bad] == ["record_not_object"]


def test_an_envelope_nested_40000_deep_is_not_json():
    raw = b"[" * 40_000 + b"]" * 40_000
    e = pytest.raises(BatchError, parse_batch, "0341234a", raw).value
    assert e.reason in ("not_json", "not_object")


def test_a_body_beyond_the_bounds_costs_only_its_record():
    deep = dict(EVT, extra=[[[[1]]]])
    bodies = [dict(EVT, boot=2**40), dict(EVT, extra=2**63), dict(EVT, fw="\ud800"), deep, dict(EVT, t=float("nan"))]
    b = parse_batch("0341234a", batch([record(1)] + [record(i + 2, body) for i, body in enumerate(bodies)] + [record(9)]))
    assert [r.seq for r in b.records] == [1, 2, 9]  # boot 2**40 fits JSON and int64; the city's check_evt refuses it
    assert [(x.seq, x.reason) for x in b.bad] == [(3, "record_body"), (4, "record_body"), (5, "record_body"), (6, "record_body")]
    for bad in b.bad:
        truncate(bad.raw, 4000).encode("utf-8")  # what the store keeps of it is valid text
    with pytest.raises(ProtocolError):
        codec.check_evt(b.records[1].body)


@pytest.mark.parametrize("seq", [2**53, 2**63, 2**64, 10**30, -(2**63), 1.0, float("nan")])
def test_a_record_seq_beyond_the_bound_is_a_bad_record_not_an_exception(seq):
    b = parse_batch("0341234a", batch([record(1), record(seq), record(2)]))
    assert [r.seq for r in b.records] == [1, 2]
    assert [(x.seq, x.reason) for x in b.bad] == [(None, "record_seq")]


def test_the_record_seq_bound_itself_is_accepted():
    assert [r.seq for r in parse_batch("0341234a", batch([record(MAX_RECORD_SEQ)])).records] == [2**53 - 1]


@pytest.mark.parametrize("at", [-1, 2**32, 1e300, float("inf"), float("nan"), "now", None, True])
def test_a_record_at_beyond_the_bound_is_a_bad_record(at):
    b = parse_batch("0341234a", batch([record(1, at=at)]))
    assert [(x.seq, x.reason) for x in b.bad] == [(1, "record_at")]


@pytest.mark.parametrize("gateway", ["\ud800", "g" * 65, "", 7])
def test_a_bad_gateway_id_refuses_the_batch(gateway):
    raw = json.dumps({"v": 1, "school": "0341234a", "gateway": gateway, "records": []}).encode()
    assert pytest.raises(BatchError, parse_batch, "0341234a", raw).value.reason == "bad_field"


def test_gateway_state_bounds():
    for raw in (b'{"v": 1, "online": true, "x": NaN}', b'{"v": 1, "online": true, "gateway": "\\ud800"}',
                b'{"v": 1, "online": true, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        assert pytest.raises(BatchError, parse_gateway_state, "0341234a", raw).value.reason == "gateway_state"


def test_the_citys_ack():
    assert parse_city_ack("0341234a", b'{"v": 1, "school": "0341234a", "acked": 41}') == 41
    assert parse_city_ack("0341234a", b'{"v": 1, "school": "0341234a", "acked": 0}') == 0
    for raw, reason in ((b'{"v": 1, "school": "0341234a", "acked": 9007199254740992}', "bad_field"),
                        (b'{"v": 1, "school": "0341234a", "acked": 41.0}', "bad_field"),
                        (b'{"v": 1, "school": "0341234a", "acked": -1}', "bad_field"),
                        (b'{"v": 1, "school": "0341234a", "acked": NaN}', "bad_field"),
                        (b'{"v": 1, "school": "other", "acked": 41}', "school_mismatch"),
                        (b'{"v": 1, "school": "0341234a", "acked": 41, "x": [[[[[1]]]]]}', "bad_field"),
                        (b"{", "not_json"), (b"[]", "not_object"), (b'{"v": 2}', "version"),
                        (b" " * 2000, "too_large")):
        assert pytest.raises(BatchError, parse_city_ack, "0341234a", raw).value.reason == reason, raw


def test_truncate_is_always_valid_text():
    assert truncate("a\ud800b") == "a\\ud800b"
    assert truncate(["\udfff"]) == '["\\udfff"]'
    deep = []
    for _ in range(100_000):
        deep = [deep]
    assert truncate(deep) == "(list nested too deep to show)"


hostile_records = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.integers(-2, 5) | st.sampled_from([2**53 - 1, 2**53, 2**63]) | hostile_values,
        "room": st.sampled_from(["cm2-b", "gateway", "", "\ud800"]) | hostile_values,
        "kind": st.sampled_from(["state", "evt", "ack", "decision"]) | hostile_values,
        "at": st.floats() | st.sampled_from([0, 2**32 - 1, 2**32, 1763900001.25]) | hostile_values,
        "body": st.sampled_from([EVT, STATE, ACK, GRANT]) | st.dictionaries(st.text(max_size=4), hostile_values, max_size=3),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.lists(hostile_records | hostile_values, max_size=5).map(batch),
    hostile_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 900).map(lambda n: batch([record(1, {"v": 1, "x": json.loads("[" * n + "]" * n)})])),
))
def test_parse_batch_raises_only_batch_errors_and_keeps_only_storable_records(raw):
    try:
        b = parse_batch("0341234a", raw)
    except BatchError as e:
        assert e.reason in REASONS
        return
    for r in b.records:
        assert 1 <= r.seq <= MAX_RECORD_SEQ and 0 <= r.at <= codec.MAX_TIME
        assert_storable(r.body)
    for bad in b.bad:
        assert bad.reason in REASONS
        assert bad.seq is None or 1 <= bad.seq <= MAX_RECORD_SEQ
        truncate(bad.raw, 4000).encode("utf-8")
        bad.message.encode("utf-8")
