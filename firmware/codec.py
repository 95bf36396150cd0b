# Préau protocol v1 codec (docs/protocol.md owns the contract). Pure: runs
# unchanged on the board, in the MicroPython VM and under CPython. Every check
# raises ProtocolError with a sentence naming the field, so the caller can log
# and count a clear reason and carry on.
import json

V = 1
ROOT = "preau/v1/"
MAX_BOARD_PAYLOAD = 1024
LEAVES = ("state", "evt", "tele", "cmd", "ack", "policy")
COMMANDS = ("grant", "deny", "end", "identify", "time", "reboot")
EVENT_TYPES = (
    "boot",
    "button",
    "lesson.requested",
    "session.started",
    "session.denied",
    "session.ended",
    "ap.changed",
    "cmd.rejected",
)
SESSION_STATES = ("idle", "requesting", "active")
MAX_DURATION_S = 14400


class ProtocolError(ValueError):
    # `kind` classifies the fault for counters, so callers never parse the
    # sentence: "not_json", "not_object", "version", "too_large", "topic",
    # or the class default "field".
    kind = "field"


def _fault(message, kind):
    e = ProtocolError(message)
    e.kind = kind
    return e


def valid_name(name):
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return False
    for c in name:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "-"):
            return False
    return True


def topic(school, room, leaf):
    return ROOT + school + "/" + room + "/" + leaf


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


def encode(obj):
    return json.dumps(obj).encode()


def decode(raw):
    """bytes -> dict with v == 1, or ProtocolError."""
    try:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = bytes(raw).decode()
        obj = json.loads(raw)
    except (ValueError, UnicodeError) as e:
        raise _fault("payload: not UTF-8 JSON (%s)" % e, "not_json")
    if not isinstance(obj, dict):
        raise _fault("payload: expected a JSON object", "not_object")
    _field(obj, "v", "int")
    if obj["v"] != V:
        raise _fault("field v: unsupported version %r" % obj["v"], "version")
    return obj


def _is(value, kind):
    is_bool = value is True or value is False
    if kind == "int":
        return isinstance(value, int) and not is_bool
    if kind == "uint":
        return isinstance(value, int) and not is_bool and value >= 0
    if kind == "num":
        return isinstance(value, (int, float)) and not is_bool
    if kind == "bool":
        return is_bool
    if kind == "str":
        return isinstance(value, str)
    if kind == "obj":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    if kind == "uint?":
        return value is None or _is(value, "uint")
    raise ValueError(kind)


_EXPECT = {
    "int": "an integer",
    "uint": "an integer >= 0",
    "num": "a number",
    "bool": "true or false",
    "str": "a string",
    "obj": "an object",
    "list": "a list",
    "uint?": "an integer >= 0 or null",
}


def _field(obj, name, kind, required=True):
    if name not in obj:
        if required:
            raise ProtocolError("field %s: missing" % name)
        return None
    value = obj[name]
    if not _is(value, kind):
        raise ProtocolError("field %s: expected %s, got %r" % (name, _EXPECT[kind], value))
    return value


def _range(obj, name, lo, hi):
    value = obj[name]
    if not lo <= value <= hi:
        raise ProtocolError("field %s: %r outside %d..%d" % (name, value, lo, hi))


def check_cmd(obj):
    cid = _field(obj, "id", "str")
    if not 1 <= len(cid) <= 32:  # pyright: ignore[reportArgumentType]  # required: never None
        raise ProtocolError("field id: expected 1 to 32 characters")
    cmd = _field(obj, "cmd", "str")
    if cmd not in COMMANDS:
        raise ProtocolError("field cmd: unknown command %r" % cmd)
    _field(obj, "now", "uint", cmd == "time")
    if cmd == "grant":
        _field(obj, "req", "uint")
        _field(obj, "duration_s", "int")
        _range(obj, "duration_s", 1, MAX_DURATION_S)
        _field(obj, "ap", "bool")
        _field(obj, "projector", "bool")
    elif cmd == "deny":
        _field(obj, "req", "uint")
        _field(obj, "reason", "str")
        _field(obj, "text", "str", False)
    elif cmd == "identify":
        if _field(obj, "seconds", "int", False) is not None:
            _range(obj, "seconds", 1, 60)
    return obj


def check_state(obj):
    online = _field(obj, "online", "bool")
    _field(obj, "boot", "uint")
    if online:
        _field(obj, "fw", "str")
        _field(obj, "board", "str")
        _field(obj, "uptime_ms", "uint")
        if _field(obj, "session", "str") not in SESSION_STATES:
            raise ProtocolError("field session: unknown state %r" % obj["session"])
        _field(obj, "ap", "bool")
        _field(obj, "devices", "list")
    else:
        _field(obj, "reason", "str", False)
    return obj


_EVT_DATA = {
    "boot": (("reset_cause", "str"),),
    "button": (("press", "str"),),
    "lesson.requested": (("req", "uint"),),
    "session.started": (("req", "uint"), ("duration_s", "uint"), ("ap", "bool"), ("projector", "bool"), ("source", "str")),
    "session.denied": (("req", "uint"), ("reason", "str"), ("source", "str")),
    "session.ended": (("reason", "str"), ("ran_s", "uint")),
    "ap.changed": (("on", "bool"), ("reason", "str")),
    "cmd.rejected": (("reason", "str"),),
}


def check_evt(obj):
    _field(obj, "boot", "uint")
    seq = _field(obj, "seq", "int")
    if seq < 1:  # pyright: ignore[reportOptionalOperand]  # required: never None
        raise ProtocolError("field seq: expected >= 1, got %r" % seq)
    _field(obj, "uptime_ms", "uint")
    _field(obj, "time", "uint?")
    kind = _field(obj, "type", "str")
    if kind not in _EVT_DATA:
        raise ProtocolError("field type: unknown event type %r" % kind)
    data = _field(obj, "data", "obj")
    for name, k in _EVT_DATA[kind]:
        try:
            _field(data, name, k)
        except ProtocolError as e:
            raise ProtocolError("data." + str(e)[6:])
    _field(obj, "replay", "bool", False)
    return obj


def check_ack(obj):
    _field(obj, "id", "str")
    ok = _field(obj, "ok", "bool")
    _field(obj, "boot", "uint")
    if ok:
        _field(obj, "result", "str", False)
    else:
        _field(obj, "error", "str")
    return obj


def check_tele(obj):
    _field(obj, "boot", "uint")
    _field(obj, "uptime_ms", "uint")
    _field(obj, "session", "str")
    _field(obj, "ap", "bool")
    return obj


MAX_WINDOWS = 48


def check_policy(obj):
    _field(obj, "start", "bool")
    _field(obj, "max_s", "int")
    _range(obj, "max_s", 0, MAX_DURATION_S)
    _field(obj, "ap", "bool")
    if _field(obj, "cap_s", "int", False) is not None:
        _range(obj, "cap_s", 60, MAX_DURATION_S)
    _field(obj, "until", "uint", False)
    windows = _field(obj, "windows", "list", False)
    if windows is not None:
        if len(windows) > MAX_WINDOWS:
            raise ProtocolError("field windows: %d windows, limit %d" % (len(windows), MAX_WINDOWS))
        last_end = 0
        for i, w in enumerate(windows):
            if not (isinstance(w, list) and len(w) == 4 and _is(w[0], "uint") and _is(w[1], "uint")
                    and _is(w[2], "uint") and w[3] in (0, 1) and not (w[3] is True or w[3] is False)):
                raise ProtocolError("field windows[%d]: expected [start, end, max_s, ap 0/1]" % i)
            if w[1] <= w[0] or w[0] < last_end or w[2] > MAX_DURATION_S:
                raise ProtocolError("field windows[%d]: empty, overlapping or too long" % i)
            last_end = w[1]
    return obj


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
