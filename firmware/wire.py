# The protocol as the board needs it (docs/protocol.md owns the contract):
# topics, encoding, and the checks of what the board receives (`cmd`,
# `policy`). Pure: runs on the board, in the MicroPython VM and under CPython.
# The checks of what boards publish live in codec.py, which the gateway and
# the city import and the board never loads: about 4 KB of heap saved.
# Every check raises ProtocolError with a sentence naming the field.
import json

V = 1
ROOT = "preau/v1/"
MAX_BOARD_PAYLOAD = 1024
COMMANDS = ("grant", "deny", "end", "identify", "time", "reboot")
MAX_DURATION_S = 14400
MAX_GRACE_S = 900


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
        if _field(obj, "grace_s", "int", False) is not None:
            _range(obj, "grace_s", 0, MAX_GRACE_S)
    elif cmd == "deny":
        _field(obj, "req", "uint")
        _field(obj, "reason", "str")
        _field(obj, "text", "str", False)
    elif cmd == "identify":
        if _field(obj, "seconds", "int", False) is not None:
            _range(obj, "seconds", 1, 60)
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


def parse(leaf, raw):
    """Decode and validate a payload the board receives (`cmd` or `policy`)."""
    if len(raw) > MAX_BOARD_PAYLOAD:
        raise _fault("payload: %d bytes, limit %d" % (len(raw), MAX_BOARD_PAYLOAD), "too_large")
    return (check_policy if leaf == "policy" else check_cmd)(decode(raw))
