"""Validation of what arrives on the city link (docs/protocol.md, "City link").

Pure functions: bytes in, checked records or a BatchError out. Every error
carries a short `reason` (a fixed word, used as a metric label) and a
sentence naming the field (for the log)."""

from __future__ import annotations

import io
import json
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

try:
    # orjson, made for fast JSON, decodes a version 2 body in a quarter of
    # the standard library's time: the city's largest cost per record. What
    # it refuses and the standard library reads (NaN, 1e400, a lone
    # surrogate, a BOM) and the integers beyond 64 bits it reads as floats
    # all fail the fast path's checks and take the standard library's path,
    # which words the refusal; what both read, they read alike
    # (tests/test_citylink_plain.py).
    from orjson import loads as _loads
except ImportError:  # the library is optional: the standard one gives the same results
    from json import loads as _loads

from protocol.codec import MAX_DEPTH, MAX_STRING, MAX_TIME, ProtocolError, check_values, decode, valid_name, value_fault

CITY_ROOT = "preau/v1/city/"
MAX_BATCH_RECORDS = 200
MAX_BATCH_BYTES = 256 * 1024
# A record's seq is a per-gateway counter that is never reused: it must not
# wrap in the city's lifetime, and stays exact in JSON, int64 and JavaScript.
MAX_RECORD_SEQ = 2**53 - 1
MAX_GATEWAY_ID = 64  # characters
MAX_ACK_BYTES = 1024  # an ack is some 60 bytes
# "telemetry": a room's readings aggregated per interval by the gateway;
# "audit": the gateway's audit log (overrides set and cleared, commands),
# so supervision sees why a school's rooms were closed or opened.
Kind = Literal["state", "evt", "ack", "decision", "telemetry", "audit"]
KINDS: tuple[str, ...] = get_args(Kind)
GATEWAY_ROOM = "gateway"

# Every reason a payload or record can be refused for; the metrics list them
# all (at zero) so a dashboard sees the series before the first incident.
BATCH_REASONS = (
    "too_large",
    "not_json",
    "not_object",
    "version",
    "bad_topic",
    "school_mismatch",
    "bad_field",
    "too_many_records",
    "bad_frame",  # a version 2 batch whose compression or layout cannot be read
)
RECORD_REASONS = (
    "record_not_object",
    "record_seq",
    "record_room",
    "record_kind",
    "record_at",
    "record_body",
)
GATEWAY_REASONS = ("gateway_state",)
REASONS = BATCH_REASONS + RECORD_REASONS + GATEWAY_REASONS


class BatchError(ProtocolError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# Not frozen: a frozen dataclass sets each field through object.__setattr__,
# which made building a record cost four times as much, at 60,000 records a
# second. Nothing changes a record once it is built.
@dataclass(slots=True)
class Record:
    seq: int
    room: str
    kind: str
    at: float
    body: dict
    # The body's JSON text as the gateway stored it (a version 2 batch
    # carries it so): the city may store it without encoding it again.
    # None from a version 1 batch. Not part of a record's identity.
    raw: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BadRecord:
    """A record refused on its own. `seq` is kept when it was readable, so the
    store can set the record aside and the ack can pass over it (see store)."""

    seq: int | None
    reason: str
    message: str
    raw: object


# Wire versions of a records batch: 1 is the JSON envelope of
# docs/protocol.md "City link", 2 the compact, compressed one (below). The
# city lists the versions it reads in each ack; a gateway sends version 1
# until an ack lists a newer one it speaks.
SUPPORTED_VERSIONS: tuple[int, ...] = (1, 2)
MAX_EPOCH = 32  # characters


@dataclass
class Batch:
    school: str
    gateway: str
    records: list[Record] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    # The gateway database's epoch: a fresh gateway (a new SD card) draws a
    # new one, so its seqs, which start again at 1, never meet the old ones.
    # "" for a gateway that predates epochs.
    epoch: str = ""
    version: int = 1
    # Seq ranges (inclusive) the gateway no longer has and will never send:
    # telemetry evicted when its space ran out, or the answer to a gap
    # request for records already gone. The city records them as dropped
    # and acknowledges past them.
    dropped: list[tuple[int, int]] = field(default_factory=list)


def city_topic(school: str, leaf: str) -> str:
    return CITY_ROOT + school + "/" + leaf


def parse_city_topic(topic: str) -> tuple[str, str]:
    """`preau/v1/city/{school}/{leaf}` -> (school, leaf)."""
    if not topic.startswith(CITY_ROOT):
        raise BatchError("bad_topic", "topic %s: not under %s" % (topic, CITY_ROOT))
    parts = topic[len(CITY_ROOT):].split("/")
    if len(parts) != 2 or not valid_name(parts[0]):
        raise BatchError("bad_topic", "topic %s: expected %s{school}/{leaf} with a valid school name" % (topic, CITY_ROOT))
    return parts[0], parts[1]


def _decode(raw: bytes, depth: int | None) -> dict:
    """decode(), its faults as batch reasons; then, with `depth`, the bounds
    of every value (check_values) as a bad field."""
    try:
        obj = decode(raw, None)
    except ProtocolError as e:
        # decode() only fails on these three; a missing or mistyped `v` is a version fault
        reason = e.kind if e.kind in ("not_json", "not_object") else "version"
        raise BatchError(reason, str(e)) from None
    if depth is not None:
        try:
            check_values(obj, depth)
        except ProtocolError as e:
            raise BatchError("bad_field", str(e)) from None
    return obj


def _seq(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RECORD_SEQ:
        return value
    return None


# The city's largest cost per record was the walk of every value of every
# body (check_values). A version 2 batch carries each body's JSON text: when
# that text is no longer than MAX_STRING (so no string or name in it is) and
# holds no \u escape of a surrogate (the only way a text decoded from UTF-8
# holds one), what is left to check is the numbers and the nesting, which a
# lighter walk does. Anything it doubts gets the full walk, for its message.
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_MAX_NUMBER = 2**53 - 1


def plain_body(text: str, body: object, depth: int = MAX_DEPTH) -> bool:
    if len(text) > MAX_STRING or _SURROGATE.search(text) or type(body) is not dict:
        return False
    todo = [(body, depth)]
    while todo:
        value, level = todo.pop()
        if level < 1:
            return False
        for item in (value.values() if type(value) is dict else value):  # type: ignore[union-attr]
            kind = type(item)
            if kind is int or kind is float:
                if not -_MAX_NUMBER <= item <= _MAX_NUMBER:  # also false for NaN
                    return False
            elif kind is dict or kind is list:
                todo.append((item, level - 1))
    return True


def parse_record(item: object, text: str | None = None) -> Record | BadRecord:
    """One record of a batch; `text`, when the batch carried the body as
    text (version 2), lets a plain body skip the walk of its values."""
    if not isinstance(item, dict):
        return BadRecord(None, "record_not_object", "record: expected an object, got %s" % type(item).__name__, item)
    seq = _seq(item.get("seq"))
    if seq is None:
        return BadRecord(None, "record_seq", "field seq: expected an integer 1..%d, got %s" % (MAX_RECORD_SEQ, _shown(item.get("seq"))), item)
    room = item.get("room")
    if not isinstance(room, str) or not valid_name(room):
        return BadRecord(seq, "record_room", "record %d: field room: expected [a-z0-9-]{1,32}, got %s" % (seq, _shown(room)), item)
    kind = item.get("kind")
    if kind not in KINDS:
        return BadRecord(seq, "record_kind", "record %d: field kind: expected one of %s, got %s" % (seq, "/".join(KINDS), _shown(kind)), item)
    at = item.get("at")
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not 0 <= at <= MAX_TIME:  # also false for NaN
        return BadRecord(seq, "record_at", "record %d: field at: expected Unix seconds 0..%d, got %s" % (seq, MAX_TIME, _shown(at)), item)
    body = item.get("body")
    if not isinstance(body, dict):
        return BadRecord(seq, "record_body", "record %d: field body: expected an object, got %s" % (seq, type(body).__name__), item)
    try:
        if text is None or not plain_body(text, body):
            check_values(body)  # a board payload's bounds: one bad body costs only its record
    except ProtocolError as e:
        return BadRecord(seq, "record_body", "record %d: body: %s" % (seq, e), item)
    return Record(seq, room, kind, float(at), body)


# Deeper than any body the contract accepts (MAX_DEPTH),
# well within what CPython's JSON decoder reads (about 990 levels).
CUT_DEPTH = 100
# CPython refuses to read an integer of more than 4300 digits (a guard against
# quadratic conversion); no number the contract accepts has more than 20.
MAX_NUMBER_CHARS = 4000
_NUMBER_BYTES = frozenset(b"0123456789+-.eE")

def defuse(raw: bytes, depth: int = CUT_DEPTH, digits: int = MAX_NUMBER_CHARS) -> bytes | None:
    """`raw` with what CPython's JSON decoder refuses the whole payload for
    made readable, or None when there is none: each array or object nested
    deeper than `depth` becomes null, each number longer than `digits`
    characters becomes 1e999 (infinity, refused by the contract's bounds).
    Iterative, on the bytes: the nesting is what a broken or hostile sender
    controls."""
    pieces: list[bytes] = []
    kept = level = 0
    cut_at: int | None = None
    number_at: int | None = None
    in_string = escaped = False
    for i, c in enumerate(raw + b" "):  # the space ends a number at the end
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:  # quote
                in_string = False
            continue
        if c in _NUMBER_BYTES:
            if number_at is None:
                number_at = i
            continue
        if number_at is not None:
            if i - number_at > digits and cut_at is None:
                pieces += [raw[kept:number_at], b"1e999"]
                kept = i
            number_at = None
        if c == 0x22:
            in_string = True
        elif c in b"[{":
            if level == depth and cut_at is None:
                cut_at = i
            level += 1
        elif c in b"]}":
            level -= 1
            if level == depth and cut_at is not None:
                pieces += [raw[kept:cut_at], b"null"]
                kept, cut_at = i + 1, None
    if not pieces:
        return None
    pieces.append(raw[kept:])
    return b"".join(pieces)


def _envelope(topic_school: str, obj: dict, version: int) -> Batch:
    """The batch's own fields, version 1's object or version 2's header."""
    school = obj.get("school")
    if not isinstance(school, str):
        raise BatchError("bad_field", "field school: expected a string, got %s" % _shown(school))
    if school != topic_school:
        raise BatchError("school_mismatch", "field school: %s is not the topic's school %r" % (_shown(school), topic_school))
    gateway = obj.get("gateway")
    if not isinstance(gateway, str) or not 1 <= len(gateway) <= MAX_GATEWAY_ID or value_fault(gateway):
        raise BatchError("bad_field", "field gateway: expected a string of 1 to %d characters, got %s" % (MAX_GATEWAY_ID, _shown(gateway)))
    epoch = obj.get("epoch", "")
    if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH or (epoch and not valid_name(epoch)):
        raise BatchError("bad_field", "field epoch: expected [a-z0-9-]{1,%d}, got %s" % (MAX_EPOCH, _shown(epoch)))
    dropped = _ranges(obj.get("dropped", []), "dropped")
    return Batch(school, gateway, epoch=epoch, version=version, dropped=dropped)


def parse_batch(topic_school: str, raw: bytes) -> Batch:
    """Check a batch received on `preau/v1/city/{topic_school}/records`,
    version 1 (JSON, its first byte `{`) or 2 (compact, its first byte 0x02).

    A fault in the envelope refuses the whole batch (BatchError); a fault in
    one record refuses only that record (Batch.bad), the others are kept."""
    if len(raw) > MAX_BATCH_BYTES:
        raise BatchError("too_large", "payload: %d bytes, limit %d" % (len(raw), MAX_BATCH_BYTES))
    if raw[:1] == V2_MAGIC:
        return _parse_v2(topic_school, bytes(raw))
    try:
        obj = _decode(raw, None)  # the records are checked one by one, below
    except BatchError as e:
        # A record nested 40,000 deep, or with a number of thousands of
        # digits, makes the JSON decoder refuse the whole batch: that part is
        # made readable (defuse), and the record checks below refuse that
        # record alone, by its seq, so the rest of the batch is stored and
        # the link never stalls on it.
        readable = defuse(raw) if e.reason == "not_json" else None
        if readable is None:
            raise
        obj = _decode(readable, None)
    batch = _envelope(topic_school, obj, 1)
    records = obj.get("records")
    if not isinstance(records, list):
        raise BatchError("bad_field", "field records: expected a list, got %s" % type(records).__name__)
    if len(records) > MAX_BATCH_RECORDS:
        raise BatchError("too_many_records", "field records: %d records, limit %d" % (len(records), MAX_BATCH_RECORDS))
    for item in records:
        checked = parse_record(item)
        if isinstance(checked, Record):
            batch.records.append(checked)
        else:
            batch.bad.append(checked)
    return batch


# Version 2: the compact batch ----------------------------------------------------
#
# One byte 0x02 (a version 1 batch is JSON, so its first byte is `{`), one
# byte naming the compression, then the compressed content:
#
#   varint n, header: n bytes of JSON {"v": 2, "school", "gateway",
#       "epoch"?, "dropped"?, "rooms": [...], "kinds": [...],
#       "seq": first seq, "at": first at in milliseconds}
#   varint count (<= MAX_BATCH_RECORDS), then one column after another:
#   count varints: seq - previous seq (the first: - header seq)
#   count varints: index into rooms
#   count varints: index into kinds
#   count zigzag varints: at - previous at, in milliseconds
#   count varints: body length in bytes
#   the bodies, UTF-8 JSON as the gateway stored them, one after another
#
# Columns compress better than rows: the deltas are small and alike, the
# bodies sit next to each other. The content is never more than
# MAX_BATCH_BYTES once decompressed, as a version 1 batch: a small payload
# that would inflate beyond it (a compression bomb) is refused unread.

V2_MAGIC = b"\x02"
COMPRESSION_NONE = 0
COMPRESSION_ZLIB = 1
COMPRESSION_ZSTD = 2
COMPRESSION_ZSTD_DICT1 = 3  # zstd with protocol/citylink-v2-d1.zdict
COMPRESSIONS = (COMPRESSION_NONE, COMPRESSION_ZLIB, COMPRESSION_ZSTD, COMPRESSION_ZSTD_DICT1)
# What a gateway sends (docs/benchmarks.md, "Uplink"): the trained dictionary
# halves what zlib leaves of a small live batch and still wins on a full one.
DEFAULT_COMPRESSION = COMPRESSION_ZSTD_DICT1
ZSTD_LEVEL = 9  # a 200-record batch encodes in about 0.4 ms on the bench machine (docs/benchmarks.md)
MAX_DECOMPRESSED = MAX_BATCH_BYTES
_VARINT_BYTES = 10
# The dictionary is part of the contract: a new one is a new compression
# code (and file), never an edit of this one.
DICT1_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "citylink-v2-d1.zdict")
_dict1 = None


def zstd_dict1():
    """The trained dictionary of compression 3 (zstandard.ZstdCompressionDict)."""
    global _dict1
    if _dict1 is None:
        import zstandard

        with open(DICT1_PATH, "rb") as f:
            _dict1 = zstandard.ZstdCompressionDict(f.read())
    return _dict1


def _compress(data: bytes, compression: int) -> bytes:
    if compression == COMPRESSION_NONE:
        return data
    if compression == COMPRESSION_ZLIB:
        return zlib.compress(data, 9)
    import zstandard

    if compression == COMPRESSION_ZSTD:
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    if compression == COMPRESSION_ZSTD_DICT1:
        return _zstd_dict1_compressor().compress(data)
    raise ValueError("unknown compression %r" % (compression,))


_dict1_cctx = None


def _zstd_dict1_compressor():
    global _dict1_cctx
    if _dict1_cctx is None:
        import zstandard

        # no content size or checksum in the frame: MQTT and TLS keep the bytes whole
        _dict1_cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=zstd_dict1(), write_content_size=False,
                                               write_checksum=False, write_dict_id=False)
    return _dict1_cctx


def _decompress(data: bytes, compression: int) -> bytes:
    """At most MAX_DECOMPRESSED bytes out, whatever the input claims."""
    if compression == COMPRESSION_NONE:
        return data if len(data) <= MAX_DECOMPRESSED else data[:MAX_DECOMPRESSED + 1]
    if compression == COMPRESSION_ZLIB:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, MAX_DECOMPRESSED + 1)
        except zlib.error as e:
            raise BatchError("bad_frame", "zlib content: %s" % e) from None
        if not d.eof and len(out) <= MAX_DECOMPRESSED:
            raise BatchError("bad_frame", "zlib content: truncated")
    else:
        import zstandard

        dctx = zstandard.ZstdDecompressor(dict_data=zstd_dict1() if compression == COMPRESSION_ZSTD_DICT1 else None)
        try:
            # A stream reader, read to a bound: a frame that claims (or holds)
            # gigabytes costs this many bytes, never what it claims.
            with dctx.stream_reader(io.BytesIO(data), read_across_frames=False) as reader:
                out = reader.read(MAX_DECOMPRESSED + 1)
        except zstandard.ZstdError as e:
            raise BatchError("bad_frame", "zstd content: %s" % e) from None
    if len(out) > MAX_DECOMPRESSED:
        raise BatchError("too_large", "version 2 batch: more than %d bytes once decompressed" % MAX_DECOMPRESSED)
    return out


def _put_varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varint(self) -> int:
        n = shift = 0
        data, pos = self.data, self.pos
        for i in range(_VARINT_BYTES):
            if pos + i >= len(data):
                raise BatchError("bad_frame", "version 2 batch: truncated at byte %d" % (pos + i))
            b = data[pos + i]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                self.pos = pos + i + 1
                return n
            shift += 7
        raise BatchError("bad_frame", "version 2 batch: a number longer than %d bytes at byte %d" % (_VARINT_BYTES, pos))

    def varints(self, n: int) -> list[int]:
        """n varints: a column, read without a call each (the times in
        milliseconds take two or three bytes); anything odd (a number cut
        short, or too long) is worded by varint()."""
        data, pos, out = self.data, self.pos, []
        end = len(data)
        for _ in range(n):
            if pos < end and data[pos] < 0x80:
                out.append(data[pos])
                pos += 1
                continue
            value = shift = 0
            i = pos
            while i < end and i - pos < _VARINT_BYTES:
                b = data[i]
                value |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
            else:
                self.pos = pos
                self.varint()  # raises, naming the fault
            out.append(value)
            pos = i
        self.pos = pos
        return out

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise BatchError("bad_frame", "version 2 batch: %d bytes wanted at byte %d, %d left"
                             % (n, self.pos, len(self.data) - self.pos))
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _body_text(body: str | bytes | dict) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")


def _at_ms(at: float) -> int:
    return int(round(at * 1000))


def _json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_batch(school: str, gateway: str, records: Sequence, *, epoch: str = "",
                 dropped: Iterable[tuple[int, int]] = (), version: int = 1,
                 compression: int = DEFAULT_COMPRESSION) -> bytes:
    """A records batch, as a gateway publishes it. `records` have `seq`,
    `room`, `kind`, `at` and `body`: the JSON text as stored (str or bytes),
    spliced in as it is, or an object. In seq order. `at` goes on the wire
    as it is in version 1, to the millisecond in version 2 (a gateway stores
    it so)."""
    ranges = [list(r) for r in dropped]
    if version == 1:
        head = {"v": 1, "school": school, "gateway": gateway}
        if epoch:
            head["epoch"] = epoch
        if ranges:
            head["dropped"] = ranges
        parts = []
        for r in records:
            # `at` as stored, to the digit: a record resent after an upgrade
            # is the same record the city holds, not a conflict.
            parts.append('{"seq":%d,"room":%s,"kind":%s,"at":%s,"body":%s}' % (
                r.seq, _json(r.room), _json(r.kind), _json(r.at),
                r.body if isinstance(r.body, str) else _body_text(r.body).decode("utf-8", "surrogatepass")))
        return (_json(head)[:-1] + ',"records":[' + ",".join(parts) + "]}").encode("utf-8", "surrogatepass")
    if version != 2:
        raise ValueError("unknown batch version %r" % (version,))
    rooms: dict[str, int] = {}
    kinds: dict[str, int] = {}
    seqs = bytearray()
    room_col = bytearray()
    kind_col = bytearray()
    ats = bytearray()
    lengths = bytearray()
    bodies = []
    first_seq = records[0].seq if records else 0
    first_at = _at_ms(records[0].at) if records else 0
    prev_seq, prev_at = first_seq, first_at
    for r in records:
        if r.seq < prev_seq:
            raise ValueError("records must be in seq order")
        _put_varint(seqs, r.seq - prev_seq)
        prev_seq = r.seq
        _put_varint(room_col, rooms.setdefault(r.room, len(rooms)))
        _put_varint(kind_col, kinds.setdefault(r.kind, len(kinds)))
        at = _at_ms(r.at)
        _put_varint(ats, _zigzag(at - prev_at))
        prev_at = at
        body = _body_text(r.body)
        _put_varint(lengths, len(body))
        bodies.append(body)
    head: dict = {"v": 2, "school": school, "gateway": gateway}
    if epoch:
        head["epoch"] = epoch
    if ranges:
        head["dropped"] = ranges
    head |= {"rooms": list(rooms), "kinds": list(kinds), "seq": first_seq, "at": first_at}
    header = _json(head).encode("utf-8", "surrogatepass")
    content = bytearray()
    _put_varint(content, len(header))
    content += header
    _put_varint(content, len(records))
    content += seqs + room_col + kind_col + ats + lengths
    content += b"".join(bodies)
    return V2_MAGIC + bytes([compression]) + _compress(bytes(content), compression)


def _parse_v2(topic_school: str, raw: bytes) -> Batch:
    if len(raw) < 2:
        raise BatchError("bad_frame", "version 2 batch: %d bytes, no compression byte" % len(raw))
    compression = raw[1]
    if compression not in COMPRESSIONS:
        raise BatchError("version", "version 2 batch: unknown compression %d" % compression)
    content = _decompress(raw[2:], compression)
    reader = _Reader(content)
    header_raw = reader.take(reader.varint())
    try:
        head = json.loads(header_raw)
    except (ValueError, RecursionError) as e:
        raise BatchError("bad_frame", "version 2 batch: header not JSON (%s)" % truncate(str(e), 80)) from None
    if not isinstance(head, dict):
        raise BatchError("bad_frame", "version 2 batch: header not an object")
    if head.get("v") != 2:
        raise BatchError("version", "version 2 batch: header v is %s" % _shown(head.get("v")))
    try:
        check_values(head, 3)  # the header, its lists, a dropped range
    except ProtocolError as e:
        raise BatchError("bad_field", "version 2 batch: header: %s" % e) from None
    batch = _envelope(topic_school, head, 2)
    rooms, kinds = head.get("rooms"), head.get("kinds")
    if not isinstance(rooms, list) or not isinstance(kinds, list):
        raise BatchError("bad_field", "version 2 batch: header rooms and kinds: expected lists")
    seq = head.get("seq")
    at = head.get("at")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_RECORD_SEQ:
        raise BatchError("bad_field", "version 2 batch: header seq: expected an integer 0..%d, got %s"
                         % (MAX_RECORD_SEQ, _shown(seq)))
    if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at <= MAX_TIME * 1000:
        raise BatchError("bad_field", "version 2 batch: header at: expected milliseconds 0..%d, got %s"
                         % (MAX_TIME * 1000, _shown(at)))
    count = reader.varint()
    if count > MAX_BATCH_RECORDS:
        raise BatchError("too_many_records", "version 2 batch: %d records, limit %d" % (count, MAX_BATCH_RECORDS))
    seq_deltas, room_ix, kind_ix, at_deltas, lengths = (reader.varints(count) for _ in range(5))
    pos = reader.pos
    reader.take(sum(lengths))  # every body there, or the frame is refused
    # The names are checked once per batch, not once per record; a record
    # whose envelope or body the fast path doubts takes the full check
    # (parse_record), which words the refusal.
    good_rooms = [r if isinstance(r, str) and valid_name(r) else None for r in rooms]
    good_kinds = [k if k in KINDS else None for k in kinds]
    n_rooms, n_kinds = len(rooms), len(kinds)
    records, bad = batch.records, batch.bad
    max_at = MAX_TIME * 1000
    for i in range(count):
        seq += seq_deltas[i]
        zigzag = at_deltas[i]
        at += (zigzag >> 1) ^ -(zigzag & 1)  # _unzigzag, inline
        text = content[pos:pos + lengths[i]]
        pos += lengths[i]
        ri, ki = room_ix[i], kind_ix[i]
        room = good_rooms[ri] if ri < n_rooms else None
        kind = good_kinds[ki] if ki < n_kinds else None
        if room is not None and kind is not None and seq <= MAX_RECORD_SEQ and 0 <= at <= max_at:
            try:
                body_text = text.decode("utf-8")
                body = _loads(text)
            except (UnicodeDecodeError, ValueError, RecursionError):
                pass  # worded below
            else:
                if type(body) is dict and plain_body(body_text, body):
                    records.append(Record(seq, room, kind, at / 1000, body, body_text))
                    continue
        checked = _check_v2(seq, rooms, kinds, ri, ki, at, text)
        if isinstance(checked, Record):
            records.append(checked)
        else:
            bad.append(checked)
    if reader.pos != len(content):
        raise BatchError("bad_frame", "version 2 batch: %d bytes after the last body" % (len(content) - reader.pos))
    return batch


def _check_v2(seq: int, rooms: list, kinds: list, ri: int, ki: int, at: int, text: bytes) -> Record | BadRecord:
    """One version 2 record by the full check, as version 1's are read."""
    item: dict = {"seq": seq if seq <= MAX_RECORD_SEQ else None,
                  "room": rooms[ri] if ri < len(rooms) else None,
                  "kind": kinds[ki] if ki < len(kinds) else None,
                  "at": at / 1000}
    try:
        body_text = text.decode("utf-8")
        item["body"] = json.loads(body_text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        # The envelope's faults first, as version 1 reports them; then the body's.
        checked = parse_record(item | {"body": {}})
        if isinstance(checked, Record):
            checked = BadRecord(checked.seq, "record_body", "record %d: body: not JSON (%s)"
                                % (checked.seq, truncate(str(e), 80)), item | {"body": truncate(text)})
        return checked
    checked = parse_record(item, body_text)
    if isinstance(checked, Record):
        checked = Record(checked.seq, checked.room, checked.kind, checked.at, checked.body, body_text)
    return checked


@dataclass(frozen=True)
class GatewayState:
    school: str
    online: bool
    gateway: str | None


def parse_gateway_state(topic_school: str, raw: bytes) -> GatewayState | None:
    """The retained `preau/v1/city/{school}/gateway`. None for an empty
    payload: that is how a retained message is cleared, not an error."""
    if not raw:
        return None
    try:
        obj = _decode(raw, MAX_DEPTH)
    except BatchError as e:
        raise BatchError("gateway_state", str(e)) from None
    online = obj.get("online")
    if not isinstance(online, bool):
        raise BatchError("gateway_state", "field online: expected true or false, got %s" % _shown(online))
    gateway = obj.get("gateway")
    if gateway is not None and (not isinstance(gateway, str) or not 1 <= len(gateway) <= MAX_GATEWAY_ID or value_fault(gateway)):
        raise BatchError("gateway_state", "field gateway: expected a string of 1 to %d characters, got %s" % (MAX_GATEWAY_ID, _shown(gateway)))
    return GatewayState(topic_school, online, gateway)


MAX_RANGES = 64


def _ranges(value: object, name: str) -> list[tuple[int, int]]:
    """[[first, last], ...]: at most MAX_RANGES inclusive seq ranges."""
    if not isinstance(value, list) or len(value) > MAX_RANGES:
        raise BatchError("bad_field", "field %s: expected a list of at most %d [first, last] ranges, got %s" % (name, MAX_RANGES, _shown(value)))
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            raise BatchError("bad_field", "field %s: expected [first, last], got %s" % (name, _shown(item)))
        first, last = _seq(item[0]), _seq(item[1])
        if first is None or last is None or first > last:
            raise BatchError("bad_field", "field %s: expected seqs 1..%d with first <= last, got %s" % (name, MAX_RECORD_SEQ, _shown(item)))
        out.append((first, last))
    return out


@dataclass(frozen=True)
class GapRequest:
    """The city's `preau/v1/city/{school}/gaps`: seq ranges it misses."""

    school: str
    epoch: str
    ranges: list[tuple[int, int]]


def encode_gaps(school: str, epoch: str, ranges: list[tuple[int, int]]) -> bytes:
    return json.dumps({"v": 1, "school": school, "epoch": epoch, "ranges": [list(r) for r in ranges[:MAX_RANGES]]},
                      separators=(",", ":")).encode()


def parse_gaps(topic_school: str, raw: bytes) -> GapRequest:
    if len(raw) > MAX_ACK_BYTES * 4:
        raise BatchError("too_large", "payload: %d bytes, limit %d" % (len(raw), MAX_ACK_BYTES * 4))
    obj = _decode(raw, MAX_DEPTH)
    if obj.get("school") != topic_school:
        raise BatchError("school_mismatch", "field school: expected %r, got %s" % (topic_school, _shown(obj.get("school"))))
    epoch = obj.get("epoch", "")
    if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH:
        raise BatchError("bad_field", "field epoch: expected a string of at most %d characters, got %s" % (MAX_EPOCH, _shown(epoch)))
    return GapRequest(topic_school, epoch, _ranges(obj.get("ranges"), "ranges"))


@dataclass(frozen=True)
class CityAck:
    acked: int
    epoch: str = ""
    versions: tuple[int, ...] = (1,)


def encode_city_ack(school: str, acked: int, epoch: str = "", versions: tuple[int, ...] = SUPPORTED_VERSIONS) -> bytes:
    """What the city publishes on `preau/v1/city/{school}/ack`."""
    body: dict = {"v": 1, "school": school, "acked": acked, "versions": list(versions)}
    if epoch:
        body["epoch"] = epoch
    return json.dumps(body, separators=(",", ":")).encode()


def parse_ack(topic_school: str, raw: bytes) -> CityAck:
    """The city's ack in full: the highest contiguous seq stored for `epoch`
    and the batch versions the city reads (1 when it does not say)."""
    acked = parse_city_ack(topic_school, raw)
    obj = _decode(raw, MAX_DEPTH)
    epoch = obj.get("epoch", "")
    if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH:
        raise BatchError("bad_field", "field epoch: expected a string of at most %d characters, got %s" % (MAX_EPOCH, _shown(epoch)))
    versions = obj.get("versions", [1])
    if not isinstance(versions, list) or not versions or len(versions) > 16 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 255 for v in versions):
        raise BatchError("bad_field", "field versions: expected a list of 1 to 16 integers 1..255, got %s" % _shown(versions))
    return CityAck(acked, epoch, tuple(versions))


def parse_city_ack(topic_school: str, raw: bytes) -> int:
    """The city's `preau/v1/city/{school}/ack`: the highest contiguous record
    seq stored (0 before the first), for the gateway. BatchError (a
    ProtocolError) with a reason of BATCH_REASONS otherwise."""
    if len(raw) > MAX_ACK_BYTES:
        raise BatchError("too_large", "payload: %d bytes, limit %d" % (len(raw), MAX_ACK_BYTES))
    obj = _decode(raw, MAX_DEPTH)
    if obj.get("school") != topic_school:
        raise BatchError("school_mismatch", "field school: expected %r, got %s" % (topic_school, _shown(obj.get("school"))))
    acked = obj.get("acked")
    if not isinstance(acked, int) or isinstance(acked, bool) or not 0 <= acked <= MAX_RECORD_SEQ:
        raise BatchError("bad_field", "field acked: expected an integer 0..%d, got %s" % (MAX_RECORD_SEQ, _shown(acked)))
    return acked


def truncate(raw: object, limit: int = 200) -> str:
    """A payload made safe and short for a log line or a text column: valid
    UTF-8 whatever it holds (a lone surrogate comes out escaped)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        text = bytes(raw[: limit + 1]).decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw[: limit + 1]
    else:
        try:
            text = json.dumps(raw)[: limit + 1]
        except (TypeError, ValueError):
            text = repr(raw)[: limit + 1]
        except RecursionError:  # a record nested as deep as json parses
            text = "(%s nested too deep to show)" % type(raw).__name__
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(value: object) -> str:
    """A value for an error message: JSON, short, valid UTF-8."""
    return truncate(json.dumps(value[:41]) if isinstance(value, str) else value, 40)
