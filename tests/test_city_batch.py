"""City link validation (protocol.citylink): each malformed payload is refused
with its own reason, a bad record only costs itself, nothing else raises."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.citylink import (
    MAX_BATCH_RECORDS,
    MAX_RECORD_SEQ,
    REASONS,
    BadRecord,
    BatchError,
    parse_batch,
    parse_city_topic,
    parse_gateway_state,
    truncate,
)


def record(seq, room="cm2-b", kind="evt", at=1763900001.25, body=None):
    return {"seq": seq, "room": room, "kind": kind, "at": at, "body": body if body is not None else {"v": 1}}


def payload(records=(), school="0341234a", **extra):
    return json.dumps({"v": 1, "school": school, "gateway": "gw-0341234a", "records": list(records), **extra}).encode()


def test_a_good_batch_keeps_every_record():
    batch = parse_batch("0341234a", payload([record(1), record(2, room="gateway", kind="decision")]))
    assert [r.seq for r in batch.records] == [1, 2]
    assert batch.bad == [] and batch.gateway == "gw-0341234a"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"\xff\xfe not utf-8", "not_json"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"school": "0341234a", "records": []}', "version"),
        (json.dumps({"v": 2, "school": "0341234a", "gateway": "g", "records": []}).encode(), "version"),
        (payload(school="0349999z"), "school_mismatch"),
        (json.dumps({"v": 1, "school": 7, "gateway": "g", "records": []}).encode(), "bad_field"),
        (json.dumps({"v": 1, "school": "0341234a", "records": []}).encode(), "bad_field"),
        (json.dumps({"v": 1, "school": "0341234a", "gateway": "g", "records": {}}).encode(), "bad_field"),
        (payload([record(i) for i in range(1, MAX_BATCH_RECORDS + 2)]), "too_many_records"),
        (b"x" * (256 * 1024 + 1), "too_large"),
        (json.dumps({"v": 1, "school": "0341234a", "gateway": "g\ud800", "records": []}).encode(), "bad_field"),
    ],
)
def test_a_bad_envelope_refuses_the_batch_with_its_reason(raw, reason):
    with pytest.raises(BatchError) as caught:
        parse_batch("0341234a", raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "bad, reason, seq_kept",
    [
        ("not a record", "record_not_object", None),
        (record(0), "record_seq", None),
        (record(True), "record_seq", None),
        (record("3"), "record_seq", None),
        (record(3.0), "record_seq", None),
        (record(2**53), "record_seq", None),
        (record(2**63), "record_seq", None),
        (record(3, room="CM2 B"), "record_room", 3),
        (record(3, room=""), "record_room", 3),
        (record(3, kind="tele"), "record_kind", 3),
        (record(3, at="noon"), "record_at", 3),
        (record(3, at=float("nan")), "record_at", 3),
        (record(3, at=float("inf")), "record_at", 3),
        (record(3, at=-1), "record_at", 3),
        (record(3, at=2**32), "record_at", 3),
        (record(3, body=[1]), "record_body", 3),
        (record(3, body={"v": 1, "t": float("nan")}), "record_body", 3),
        (record(3, body={"v": 1, "boot": 2**63}), "record_body", 3),
        (record(3, body={"v": 1, "fw": "\udc00"}), "record_body", 3),
        (record(3, body={"v": 1, "x": [[[[1]]]]}), "record_body", 3),
    ],
)
def test_a_bad_record_is_refused_alone(bad, reason, seq_kept):
    batch = parse_batch("0341234a", payload([record(1), bad, record(2)]))
    assert [r.seq for r in batch.records] == [1, 2]
    assert [(b.reason, b.seq) for b in batch.bad] == [(reason, seq_kept)]


def test_topics():
    assert parse_city_topic("preau/v1/city/0341234a/records") == ("0341234a", "records")
    for bad in ("preau/v1/city/UPPER/records", "preau/v1/other/x/records", "preau/v1/city/a/b/records"):
        with pytest.raises(BatchError) as caught:
            parse_city_topic(bad)
        assert caught.value.reason == "bad_topic"


def test_gateway_state():
    state = parse_gateway_state("0341234a", b'{"v": 1, "online": false, "gateway": "gw-1"}')
    assert (state.school, state.online, state.gateway) == ("0341234a", False, "gw-1")
    assert parse_gateway_state("0341234a", b"") is None  # a cleared retained message
    with pytest.raises(BatchError) as caught:
        parse_gateway_state("0341234a", b'{"v": 1, "online": "yes"}')
    assert caught.value.reason == "gateway_state"


def test_truncate_keeps_log_lines_short():
    assert truncate(b"x" * 5000) == "x" * 200 + "…"
    assert truncate(b"\xff" * 3) == "\ufffd" * 3
    assert truncate({"a": 1}) == '{"a": 1}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
records_like = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.integers(-2, 5) | json_values,
        "room": st.sampled_from(["cm2-b", "gateway", "", "X"]) | json_values,
        "kind": st.sampled_from(["state", "evt", "ack", "decision", "tele"]) | json_values,
        "at": st.floats() | json_values,
        "body": st.dictionaries(st.text(max_size=4), json_values, max_size=3) | json_values,
    },
)
batches_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1"]),
        "school": st.sampled_from(["0341234a", "other"]) | json_values,
        "gateway": st.sampled_from(["gw-1"]) | json_values,
        "records": st.lists(records_like | json_values, max_size=6) | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), batches_like.map(lambda b: json.dumps(b).encode()), json_values.map(lambda v: json.dumps(v).encode())))
def test_any_payload_is_checked_or_refused_with_a_known_reason(raw):
    try:
        batch = parse_batch("0341234a", raw)
    except BatchError as e:
        assert e.reason in REASONS and str(e)
        return
    for bad in batch.bad:
        assert isinstance(bad, BadRecord) and bad.reason in REASONS and bad.message
    for good in batch.records:
        assert 1 <= good.seq <= MAX_RECORD_SEQ and good.kind in ("state", "evt", "ack", "decision") and isinstance(good.body, dict)
        json.dumps(good.body, allow_nan=False, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("records", [b"[" * 40_000 + b"]" * 40_000, b"[" + b"[" * 40_000 + b"]" * 40_000 + b"]"])
def test_records_nested_40000_deep_cost_only_themselves(records):
    """The JSON decoder refuses the whole payload for them; the contract
    defuses that part (protocol.citylink.defuse) and refuses the record alone."""
    raw = b'{"v": 1, "school": "0341234a", "gateway": "g", "records": ' + records[:-1] + b', ' + json.dumps(
        record(7)).encode() + b"]}"
    b = parse_batch("0341234a", raw)
    assert [r.seq for r in b.records] == [7]
    assert [x.reason for x in b.bad] == ["record_not_object"]
