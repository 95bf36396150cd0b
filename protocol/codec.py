# Préau protocol v1, the whole contract (docs/protocol.md): what the board
# receives (protocol/wire.py, re-exported here) and the checks of what boards
# publish (`state`, `evt`, `tele`, `ack`), used by the gateway and the city.
# Pure, and portable like wire.py, but the board never imports it: what only
# a server needs (the bounds of every value, the nesting, the text) is here.
import json

from .wire import (  # noqa: F401 - re-exported: one import for the gateway and the city
    COMMANDS,
    MAX_BOARD_PAYLOAD,
    MAX_DURATION_S,
    MAX_GRACE_S,
    MAX_WINDOWS,
    ROOT,
    ProtocolError,
    V,
    _fault,
    _field,
    _is,
    check_cmd,
    check_policy,
    topic,
    valid_name,
)
from .wire import decode as _decode_json
from .wire import encode as _encode_board

# valid_name as a regular expression, for the web APIs' schemas (OpenAPI).
NAME_PATTERN = r"^[a-z0-9-]{1,32}$"

LEAVES = ("state", "evt", "tele", "cmd", "ack", "policy")
SESSION_STATES = ("idle", "requesting", "active")

# The bounds (docs/protocol.md, "Bounds"): what a board can produce, with
# room to spare. Beyond them a value is a fault, not data; within them every
# number is exact in a double and fits a 64-bit column. wire.py writes the
# two it checks on the board (MAX_TIME, MAX_COUNT: both uint32) as one
# literal.
MAX_COUNT = 2**32 - 1  # boot, seq, req, outbox, dropped: uint32, as the outbox keeps its counters in flash
MAX_TIME = 2**32 - 1  # Unix seconds: until 2106
MAX_UPTIME_MS = 2**40 - 1  # 34 years; a board restarts itself after 6 idle days, if its gateway answers
MAX_SPAN_S = 86400  # a session's seconds: the board caps it at 4 h, plus at most 15 min of grace
MAX_LAMP_H = 999999  # a lamp lasts about 20,000 h; PJLink counts to 99,999
MAX_PPM = 65535  # CO2 sensors report a 16-bit word (SCD4x: valid to 40,000)
MAX_READING = 1000000  # any kit reading, either sign: no classroom sensor reads beyond
MAX_NUMBER = 2**53 - 1  # any number anywhere: exact in every JSON parser (JavaScript's too)
MAX_TEXT = 128  # a word or a short sentence (cmd.rejected carries 120 characters)
MAX_STRING = MAX_BOARD_PAYLOAD  # any string or field name anywhere
MAX_NAMES = 16  # devices, sensors: names of 1-32 characters
MAX_READINGS = 16  # entries in `air`
MAX_DEPTH = 4  # containers, the payload itself included: events need 3 (data.sensors), policies 3 (windows[i])

# A field's rule for _check: a kind of wire.py ("true or false", "an
# object"), a (lo, hi) integer range, TEXT or NAMES.
COUNT = (0, MAX_COUNT)
SEQ = (1, MAX_COUNT)
SPAN = (0, MAX_SPAN_S)
UPTIME = (0, MAX_UPTIME_MS)
TEXT = "a string of at most %d characters" % MAX_TEXT
NAMES = "a list of at most %d names of 1 to 32 characters" % MAX_NAMES


def _check(obj, name, rule, required=True):
    # obj[name] checked against its rule; None when absent and not required.
    if type(rule) is tuple:
        return _field(obj, name, "an integer", required, rule[0], rule[1])
    if rule == TEXT:
        value = _field(obj, name, "a string", required)
        ok = value is None or len(value) <= MAX_TEXT
    elif rule == NAMES:
        value = _field(obj, name, "a list", required)
        ok = value is None or len(value) <= MAX_NAMES and all(isinstance(n, str) and 1 <= len(n) <= 32 for n in value)
    else:
        return _field(obj, name, rule, required)
    if not ok:
        raise ProtocolError("field %s: expected %s" % (name, rule))
    return value


def value_fault(value, depth=0):
    """What JSON parsers let through but encoders, databases or the protocol
    refuse, anywhere in `value`: a number beyond +-MAX_NUMBER (NaN and
    Infinity included), a string or field name longer than MAX_STRING or
    holding a lone surrogate ("\\ud800": UTF-8, SQLite and PostgreSQL
    refuse it; CPython only, MicroPython cannot tell), containers nested
    more than `depth` deep. A short sentence, or None when all is well.
    A loop, not recursion: the nesting is what an attacker controls."""
    todo = [(value, depth)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                return "a string of %d characters, limit %d" % (len(value), MAX_STRING)
            try:
                value.encode()
            except UnicodeError:
                return "a string with a lone surrogate"
        elif isinstance(value, (int, float)):
            if not -MAX_NUMBER <= value <= MAX_NUMBER:  # also false for NaN
                return "a number beyond +-2**53"
        elif isinstance(value, (dict, list)):
            if depth < 1:
                return "containers nested too deep"
            for item in value:
                if isinstance(value, dict):
                    todo.append((item, 0))  # the name
                    item = value[item]
                todo.append((item, depth - 1))
        elif value is not None and value is not True and value is not False:
            return "a value JSON cannot carry"
    return None


def check_values(obj, depth=MAX_DEPTH):
    """obj, a decoded payload, if value_fault finds nothing in it (the
    payload itself counts as one level of `depth`); otherwise ProtocolError,
    kind "field", naming the top-level field."""
    for name in obj:
        fault = value_fault(name)
        if fault:
            raise ProtocolError("payload: field name: %s" % fault)
        fault = value_fault(obj[name], depth - 1)
        if fault:
            raise ProtocolError("field %s: %s" % (name, fault))
    return obj


def decode(raw, depth: int | None = MAX_DEPTH):
    """bytes -> dict with v == 1, or ProtocolError: wire.decode, then
    check_values(obj, depth). With depth None the caller checks the values
    itself (a city batch, record by record)."""
    try:
        obj = _decode_json(raw)
    except RuntimeError as e:  # RecursionError: deeper than CPython's json parses
        raise _fault("payload: not UTF-8 JSON (%s)" % e, "not_json") from None
    return obj if depth is None else check_values(obj, depth)


try:
    json.dumps(0, allow_nan=False)
except TypeError:  # MicroPython's json (the portable tests in its VM): the board's encode
    encode = _encode_board
else:

    def encode(obj):
        """obj -> UTF-8 JSON bytes. ValueError for what is not JSON or not
        UTF-8: NaN, Infinity, a lone surrogate."""
        return json.dumps(obj, allow_nan=False, ensure_ascii=False).encode()


def parse_topic(t):
    """Split a school-broker topic into (school, room, leaf)."""
    if isinstance(t, (bytes, bytearray)):
        t = bytes(t).decode()
    if not t.startswith(ROOT):
        raise _fault("topic %s: not under %s" % (t, ROOT), "topic")
    parts = t[len(ROOT):].split("/")
    if len(parts) != 3:
        raise _fault("topic %s: expected %s{school}/{room}/{leaf}" % (t, ROOT), "topic")
    school, room, leaf = parts
    if not valid_name(school):
        raise _fault("topic %s: bad school name" % t, "topic")
    if not valid_name(room):
        raise _fault("topic %s: bad room name" % t, "topic")
    if leaf not in LEAVES:
        raise _fault("topic %s: unknown leaf %s" % (t, leaf), "topic")
    return school, room, leaf


def _session(obj):
    if _field(obj, "session", "a string") not in SESSION_STATES:
        raise ProtocolError("field session: unknown state %r" % obj["session"])


def check_state(obj):
    online = _field(obj, "online", "true or false")
    _check(obj, "boot", COUNT)
    if online:
        _check(obj, "fw", TEXT)
        _check(obj, "board", TEXT)
        _check(obj, "uptime_ms", UPTIME)
        _session(obj)
        _field(obj, "ap", "true or false")
        _check(obj, "devices", NAMES)
    else:
        _check(obj, "reason", TEXT, False)
    return obj


_EVT_DATA = {
    "boot": (("reset_cause", TEXT),),
    "button": (("press", TEXT),),
    "lesson.requested": (("req", SEQ),),
    "session.started": (("req", SEQ), ("duration_s", SPAN), ("ap", "true or false"), ("projector", "true or false"), ("source", TEXT)),
    "session.denied": (("req", SEQ), ("reason", TEXT), ("source", TEXT)),
    "session.ended": (("reason", TEXT), ("ran_s", SPAN)),
    "session.extended": (("req", SEQ), ("added_s", SPAN), ("ap", "true or false"), ("source", TEXT)),
    "ap.changed": (("on", "true or false"), ("reason", TEXT)),
    "cmd.rejected": (("reason", TEXT),),
    "projector.changed": (("state", TEXT),),
    "projector.fault": (("error", TEXT),),
    "kit.attached": (("kit", TEXT), ("sensors", NAMES)),
    "kit.detached": (("kit", TEXT),),
    "kit.fault": (("sensor", TEXT), ("error", TEXT)),
    "air.alert": (("co2", (0, MAX_PPM)), ("on", "true or false")),
}
EVENT_TYPES = tuple(_EVT_DATA)
# Optional data fields: checked when present.
_EVT_OPTIONAL = {
    "lesson.requested": (("extend", "true or false"), ("remaining_s", SPAN)),
    "session.denied": (("extend", "true or false"),),
    "projector.changed": (("lamp_h", (0, MAX_LAMP_H)),),
}


def _evt_plain(obj):
    # The common case, a well-formed event, in one pass with no call per
    # field (the gateway and the city check every event): True only when
    # the full checks below accept it (held to them by
    # tests/test_codec_fast.py). Anything else takes the full checks, which
    # name the fault.
    boot = obj.get("boot")
    seq = obj.get("seq")
    uptime = obj.get("uptime_ms")
    kind = obj.get("type")
    data = obj.get("data")
    if (type(boot) is not int or type(seq) is not int or type(uptime) is not int or type(kind) is not str
            or type(data) is not dict or "time" not in obj):
        return False
    if not (0 <= boot <= MAX_COUNT and 1 <= seq <= MAX_COUNT and 0 <= uptime <= MAX_UPTIME_MS):
        return False
    t = obj["time"]
    if t is not None and (type(t) is not int or not 0 <= t <= MAX_TIME):
        return False
    replay = obj.get("replay", False)
    if replay is not True and replay is not False:
        return False
    rules = _EVT_DATA.get(kind)
    if rules is None:
        return False
    for required, named in ((True, rules), (False, _EVT_OPTIONAL.get(kind, ()))):
        for name, rule in named:
            if name not in data:
                if required:
                    return False
                continue
            value = data[name]
            if type(rule) is tuple:
                if type(value) is not int or not rule[0] <= value <= rule[1]:
                    return False
            elif rule == TEXT:
                if type(value) is not str or len(value) > MAX_TEXT:
                    return False
            elif value is not True and value is not False or rule != "true or false":
                return False  # NAMES, or not a boolean: the full check
    return True


def check_evt(obj):
    return obj if _evt_plain(obj) else _check_evt_full(obj)


def _check_evt_full(obj):
    _check(obj, "boot", COUNT)
    _check(obj, "seq", SEQ)
    _check(obj, "uptime_ms", UPTIME)
    if _field(obj, "time", "an integer >= 0 or null") is not None:
        _check(obj, "time", (0, MAX_TIME))
    kind = _field(obj, "type", "a string")
    if kind not in _EVT_DATA:
        raise ProtocolError("field type: unknown event type %r" % kind)
    data = _field(obj, "data", "an object")
    try:
        for name, rule in _EVT_DATA[kind]:
            _check(data, name, rule)
        for name, rule in _EVT_OPTIONAL.get(kind, ()):
            _check(data, name, rule, False)
    except ProtocolError as e:
        raise ProtocolError("data." + str(e)[6:]) from None
    _field(obj, "replay", "true or false", False)
    return obj


def event_digest(obj):
    """What an event means, as 32 bytes: equal digests for two events with
    the same (room, boot, seq) make a true duplicate (a QoS 1 redelivery, or
    the same event resent with `replay`, which is ignored here); different
    ones a conflict: two events under one number (a board whose boot counter
    was not saved, or a forgery), to count and log, never to merge. Every
    other field counts, unknown ones too. `obj` has passed check_evt. The
    gateway may store the digest beside the event to compare later; CPython
    only (hashlib, sorted keys)."""
    import hashlib

    meaning = {name: obj[name] for name in obj if name != "replay"}
    text = json.dumps(meaning, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).digest()


def same_event(a, b):
    """True when two checked events mean the same (see event_digest)."""
    return event_digest(a) == event_digest(b)


def check_ack(obj):
    if not 1 <= len(_field(obj, "id", "a string")) <= 32:  # pyright: ignore[reportArgumentType]  # required: never None
        raise ProtocolError("field id: expected 1 to 32 characters")
    ok = _field(obj, "ok", "true or false")
    _check(obj, "boot", COUNT)
    if ok:
        _check(obj, "result", TEXT, False)
    else:
        _check(obj, "error", TEXT)
    return obj


def check_tele(obj):
    _check(obj, "boot", COUNT)
    _check(obj, "uptime_ms", UPTIME)
    _session(obj)
    _field(obj, "ap", "true or false")
    _check(obj, "remaining_s", SPAN, False)
    _check(obj, "outbox", COUNT, False)
    _check(obj, "dropped", COUNT, False)
    _check(obj, "lamp_h", (0, MAX_LAMP_H), False)
    _check(obj, "projector", TEXT, False)
    air = _field(obj, "air", "an object", False) or {}
    if len(air) > MAX_READINGS:
        raise ProtocolError("field air: %d readings, limit %d" % (len(air), MAX_READINGS))
    for name in air:
        value = air[name]
        if not (1 <= len(name) <= 8 and isinstance(value, (int, float)) and not isinstance(value, bool)
                and -MAX_READING <= value <= MAX_READING):
            raise ProtocolError("field air: %r is not a short name with a reading" % (name,))
    return obj


# How an event moves the room's session (docs/protocol.md, "Events"); the
# city's live view uses the same table.
SESSION_AFTER = {
    "lesson.requested": "requesting",
    "session.started": "active",
    "session.denied": "idle",
    "session.ended": "idle",
    "boot": "idle",
}


def session_after(event):
    """The room's session once this event is applied, or None if it does not
    move it. An extension asked for, or refused, leaves the session running."""
    if event["data"].get("extend"):
        return None
    return SESSION_AFTER.get(event["type"])


CHECKS = {
    "state": check_state,
    "evt": check_evt,
    "tele": check_tele,
    "cmd": check_cmd,
    "ack": check_ack,
    "policy": check_policy,
}


def parse(leaf, raw):
    """Decode and validate a payload received on `leaf`."""
    if len(raw) > MAX_BOARD_PAYLOAD:
        raise _fault("payload: %d bytes, limit %d" % (len(raw), MAX_BOARD_PAYLOAD), "too_large")
    return CHECKS[leaf](decode(raw))
