"""The compact batch (version 2, docs/protocol.md "City link"): what a
gateway encodes, the city's parse_batch reads back the same, whatever the
compression; garbage and compression bombs are refused with a reason,
never a crash, never more memory than MAX_DECOMPRESSED; version 1 batches
read as before."""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import citylink
from protocol.citylink import (
    COMPRESSIONS,
    KINDS,
    MAX_DECOMPRESSED,
    BatchError,
    Record,
    encode_batch,
    parse_batch,
)

SCHOOL = "0341234a"
GATEWAY = "gw-0341234a"
EPOCH = "9f2c4e1a0b7d3e55"


@dataclass(frozen=True)
class Out:
    seq: int
    room: str
    kind: str
    at: float
    body: str | dict


names = st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
           | st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False) | text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                      max_leaves=12)
# Depth: the body is 1; check_values allows MAX_DEPTH (4) levels in all.
bodies = st.dictionaries(text, st.one_of(scalars, st.lists(scalars, max_size=4),
                                         st.dictionaries(text, st.lists(scalars, max_size=3), max_size=3)), max_size=6)


@st.composite
def batches(draw):
    n = draw(st.integers(0, 40))
    first = draw(st.integers(1, 2**40))
    seqs, seq = [], first
    for _ in range(n):
        seqs.append(seq)
        seq += draw(st.integers(1, 3000))
    at0 = draw(st.integers(0, (2**32 - 1) * 1000 - 10**9))
    records = []
    for s in seqs:
        at = draw(st.integers(at0, at0 + 10**9)) / 1000  # to the millisecond, as on the wire
        records.append(Out(s, draw(names), draw(st.sampled_from(KINDS)), at, draw(bodies)))
    dropped = draw(st.lists(st.tuples(st.integers(1, 2**40), st.integers(0, 100)).map(lambda t: (t[0], t[0] + t[1])),
                            max_size=5))
    epoch = draw(st.just("") | st.from_regex(r"[a-z0-9]{16}", fullmatch=True))
    return records, dropped, epoch


def expected(records):
    return [Record(r.seq, r.room, r.kind, r.at, r.body if isinstance(r.body, dict) else json.loads(r.body))
            for r in records]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from(COMPRESSIONS))
def test_v2_round_trip_gives_the_same_records(batch, compression):
    records, dropped, epoch = batch
    raw = encode_batch(SCHOOL, GATEWAY, records, epoch=epoch, dropped=dropped, version=2, compression=compression)
    assert raw[:1] == b"\x02" and raw[1] == compression
    parsed = parse_batch(SCHOOL, raw)
    assert parsed.bad == []
    assert parsed.records == expected(records)
    assert (parsed.school, parsed.gateway, parsed.epoch, parsed.version) == (SCHOOL, GATEWAY, epoch, 2)
    assert parsed.dropped == dropped


@settings(max_examples=100, deadline=None)
@given(batches())
def test_v1_encoding_round_trips_too(batch):
    records, dropped, epoch = batch
    raw = encode_batch(SCHOOL, GATEWAY, records, epoch=epoch, dropped=dropped, version=1)
    assert raw[:1] == b"{"
    parsed = parse_batch(SCHOOL, raw)
    assert parsed.bad == [] and parsed.records == expected(records)
    assert (parsed.epoch, parsed.version, parsed.dropped) == (epoch, 1, dropped)


def test_bodies_travel_as_stored_and_the_city_gets_the_text():
    stored = '{"v":1,"boot":7,"seq":4,"type":"button","data":{"press":"short"}}'
    raw = encode_batch(SCHOOL, GATEWAY, [Out(41, "cm2-b", "evt", 1763900001.25, stored)], version=2)
    (record,) = parse_batch(SCHOOL, raw).records
    assert record.raw == stored and record.body == json.loads(stored) and record.at == 1763900001.25
    # Version 1 splices the stored text into the JSON envelope, unparsed.
    v1 = encode_batch(SCHOOL, GATEWAY, [Out(41, "cm2-b", "evt", 1763900001.25, stored)], version=1)
    assert stored.encode() in v1
    assert json.loads(v1)["records"][0]["at"] == 1763900001.25


def test_a_bad_record_in_a_v2_batch_costs_only_that_record():
    records = [Out(1, "cm2-b", "evt", 1.0, '{"v":1}'), Out(2, "cm2-b", "evt", 2.0, '{"v":1,"x":[[[[[1]]]]]}'),
               Out(3, "Bad Room", "evt", 3.0, '{"v":1}'), Out(4, "cm2-b", "nope", 4.0, '{"v":1}'),
               Out(5, "cm2-b", "evt", 5.0, 'not json'), Out(6, "cm2-b", "evt", 6.0, '[1]'),
               Out(7, "cm2-b", "evt", 7.0, '{"v":1,"n":1e999}'), Out(8, "cm2-b", "evt", 8.0, "[" * 5000 + "]" * 5000),
               Out(9, "cm2-b", "evt", 9.0, '{"v":%s}' % ("9" * 5000)), Out(10, "cm2-b", "evt", 10.0, '{"ok":true}')]
    batch = parse_batch(SCHOOL, encode_batch(SCHOOL, GATEWAY, records, version=2))
    assert [r.seq for r in batch.records] == [1, 10]
    assert [(b.seq, b.reason) for b in batch.bad] == [
        (2, "record_body"), (3, "record_room"), (4, "record_kind"), (5, "record_body"), (6, "record_body"),
        (7, "record_body"), (8, "record_body"), (9, "record_body")]


def test_envelope_faults_refuse_the_whole_v2_batch():
    ok = [Out(1, "cm2-b", "evt", 1.0, "{}")]
    with pytest.raises(BatchError) as e:
        parse_batch("other", encode_batch(SCHOOL, GATEWAY, ok, version=2))
    assert e.value.reason == "school_mismatch"
    with pytest.raises(BatchError) as e:
        parse_batch(SCHOOL, encode_batch(SCHOOL, GATEWAY, ok, epoch="NOT VALID", version=2))
    assert e.value.reason == "bad_field"
    with pytest.raises(BatchError) as e:
        parse_batch(SCHOOL, b"\x02\x09" + b"x" * 20)
    assert e.value.reason == "version"
    with pytest.raises(BatchError) as e:
        parse_batch(SCHOOL, b"\x02")
    assert e.value.reason == "bad_frame"


def _content(header: dict, count: int, columns: bytes = b"", bodies: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    out = bytearray()
    citylink._put_varint(out, len(h))
    out += h
    citylink._put_varint(out, count)
    return bytes(out) + columns + bodies


HEAD = {"v": 2, "school": SCHOOL, "gateway": GATEWAY, "rooms": ["cm2-b"], "kinds": ["evt"], "seq": 1, "at": 0}


def test_hand_made_frames_are_refused_with_their_reason():
    cases = {
        "too_many_records": _content(HEAD, 201),
        "bad_frame": _content(HEAD, 2, b"\x00"),  # truncated columns
    }
    for reason, content in cases.items():
        with pytest.raises(BatchError) as e:
            parse_batch(SCHOOL, b"\x02\x00" + content)
        assert e.value.reason == reason
    # A body length beyond the content, a varint that never ends, bytes after the last body.
    for content in (_content(HEAD, 1, b"\x00\x00\x00\x00\x7f", b"{}"),
                    _content(HEAD, 1, b"\xff" * 11),
                    _content(HEAD, 1, b"\x00\x00\x00\x00\x02", b"{}trailing")):
        with pytest.raises(BatchError) as e:
            parse_batch(SCHOOL, b"\x02\x00" + content)
        assert e.value.reason == "bad_frame"
    # An index beyond the room list is that record's fault only.
    batch = parse_batch(SCHOOL, b"\x02\x00" + _content(HEAD, 1, b"\x00\x05\x00\x00\x02", b"{}"))
    assert [b.reason for b in batch.bad] == ["record_room"]


def test_compression_bombs_are_refused_unread():
    # 200 MB of zeros compress to ~200 KB with zlib; far more with zstd.
    zeros = b"\x00" * (200 * 1024 * 1024)
    zbomb = b"\x02\x01" + zlib.compress(zeros, 9)
    assert len(zbomb) <= citylink.MAX_BATCH_BYTES
    with pytest.raises(BatchError) as e:
        parse_batch(SCHOOL, zbomb)
    assert e.value.reason == "too_large"
    for compression, cctx in ((2, zstandard.ZstdCompressor(level=3)),
                              (3, zstandard.ZstdCompressor(level=3, dict_data=citylink.zstd_dict1()))):
        bomb = b"\x02" + bytes([compression]) + cctx.compress(zeros)
        assert len(bomb) < 64 * 1024
        with pytest.raises(BatchError) as e:
            parse_batch(SCHOOL, bomb)
        assert e.value.reason == "too_large"
    # Just at the bound is read (and then refused for what it holds, not for its size).
    at_bound = zstandard.ZstdCompressor().compress(b"\x00" * MAX_DECOMPRESSED)
    with pytest.raises(BatchError) as e:
        parse_batch(SCHOOL, b"\x02\x02" + at_bound)
    assert e.value.reason != "too_large"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(COMPRESSIONS))
def test_garbage_after_the_v2_byte_is_refused_never_a_crash(garbage, compression):
    try:
        batch = parse_batch(SCHOOL, b"\x02" + bytes([compression]) + garbage)
    except BatchError as e:
        assert e.reason in citylink.BATCH_REASONS
    else:
        assert batch.version == 2


def test_mutated_real_batches_are_refused_or_read_never_a_crash():
    from bench.uplink import school_day

    records = school_day(rooms=3, hours=2)
    rng = random.Random(5)
    for compression in COMPRESSIONS:
        raw = bytearray(encode_batch(SCHOOL, GATEWAY, records[:60], epoch=EPOCH, version=2, compression=compression))
        for _ in range(300):
            mutated = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(2, len(mutated))
                mutated[i] = rng.randrange(256)
            if rng.random() < 0.2:
                del mutated[rng.randrange(2, len(mutated)):]
            try:
                batch = parse_batch(SCHOOL, bytes(mutated))
            except BatchError as e:
                assert e.reason in citylink.BATCH_REASONS
            else:
                assert len(batch.records) + len(batch.bad) <= citylink.MAX_BATCH_RECORDS


def test_the_dictionary_is_the_one_the_contract_names():
    # A new dictionary is a new compression code, never an edit of this file:
    # a city and a gateway of different releases must read each other.
    import hashlib

    with open(citylink.DICT1_PATH, "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == DICT1_SHA256


DICT1_SHA256 = "13375bc8f709ce891e85f4e044c80456d9d010cae93329f96003ac90bae63d90"


def test_a_first_stage_gateway_batch_reads_as_before():
    """A gateway of the first stage (no epoch, no dropped, `at` a float, each
    body encoded again): the city reads it as version 1, epoch ""."""
    raw = json.dumps({"v": 1, "school": SCHOOL, "gateway": GATEWAY, "records": [
        {"seq": 41, "room": "cm2-b", "kind": "evt", "at": 1763900001.2534567,
         "body": {"v": 1, "boot": 7, "seq": 4, "type": "button", "data": {"press": "short"}}}]}).encode()
    batch = parse_batch(SCHOOL, raw)
    assert (batch.version, batch.epoch, batch.dropped, batch.bad) == (1, "", [], [])
    assert batch.records == [Record(41, "cm2-b", "evt", 1763900001.2534567,
                                    {"v": 1, "boot": 7, "seq": 4, "type": "button", "data": {"press": "short"}})]
    assert batch.records[0].raw is None


def test_acks_old_and_new():
    assert citylink.parse_ack(SCHOOL, b'{"v":1,"school":"0341234a","acked":7}') == citylink.CityAck(7, "", (1,))
    ack = citylink.parse_ack(SCHOOL, citylink.encode_city_ack(SCHOOL, 7, EPOCH))
    assert ack == citylink.CityAck(7, EPOCH, citylink.SUPPORTED_VERSIONS) and 2 in ack.versions
