# The protocol as the board needs it (docs/protocol.md owns the contract):
# topics, encoding, and the checks of what the board receives (`cmd`,
# `policy`). Pure: runs on the board, in the MicroPython VM and under CPython.
# The checks of what boards publish live in codec.py, which the gateway and
# the city import and the board never loads: about 4 KB of heap saved.
# Every check raises ProtocolError with a sentence naming the field.
#
# It stays loaded on the board, so it is written for heap: loaded from .mpy,
# every line of bytecode, function, identifier and long string is RAM
# (bench/module_heap.py measures it). Hence one `_field` that also checks
# ranges, and kinds that are their own error texts. valid_name lives here
# too: a module of its own cost more (the qstrs of its names stay in the
# interned-string pool for ever, which the school day's peak felt).
import json

V = 1
ROOT = "preau/v1/"
MAX_BOARD_PAYLOAD = 1024
COMMANDS = ("grant", "deny", "end", "identify", "time", "reboot", "update", "committed_to")
MAX_DURATION_S = 14400
MAX_GRACE_S = 900
MAX_WINDOWS = 48


def valid_name(name):
    # A school, room or topic name (docs/protocol.md): 1-32 of a-z 0-9 -.
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return False
    for c in name:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "-"):
            return False
    return True


class ProtocolError(ValueError):
    # `kind` classifies the fault for counters, so callers never parse the
    # sentence: "not_json", "not_object", "version", "too_large", "topic",
    # or the class default "field".
    kind = "field"


def _fault(message, kind):
    e = ProtocolError(message)
    e.kind = kind
    return e


def topic(school, room, leaf):
    return ROOT + school + "/" + room + "/" + leaf


def encode(obj):
    return json.dumps(obj).encode()


def decode(raw):
    # bytes -> dict with v == 1, or ProtocolError.
    try:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = bytes(raw).decode()
        obj = json.loads(raw)
    except ValueError as e:  # UnicodeError is one
        raise _fault("payload: not UTF-8 JSON (%s)" % e, "not_json")
    if not isinstance(obj, dict):
        raise _fault("payload: expected a JSON object", "not_object")
    if _field(obj, "v", "an integer") != V:
        raise _fault("field v: unsupported version %r" % obj["v"], "version")
    return obj


# A kind of value is the text an error shows for it ("field ap: expected true
# or false, got 1"): one string both for the check and for the sentence.
# JSON true/false is never an integer, although isinstance(True, int) holds.
def _is(value, kind):
    if value is True or value is False:
        return kind == "true or false"
    if kind == "a string":
        return isinstance(value, str)
    if kind == "an object":
        return isinstance(value, dict)
    if kind == "a list":
        return isinstance(value, list)
    if kind == "an integer":
        return isinstance(value, int)
    if kind == "an integer >= 0 or null" and value is None:
        return True
    return kind[:15] == "an integer >= 0" and isinstance(value, int) and value >= 0


def _field(obj, name, kind, required=True, lo=None, hi=None):
    # obj[name], checked against `kind` and the range lo..hi; None when
    # absent and not required.
    if name not in obj:
        if required:
            raise ProtocolError("field %s: missing" % name)
        return None
    value = obj[name]
    if not _is(value, kind):
        raise ProtocolError("field %s: expected %s, got %r" % (name, kind, value))
    if lo is not None and not lo <= value <= hi:
        raise ProtocolError("field %s: %r outside %d..%d" % (name, value, lo, hi))
    return value


def check_cmd(obj):
    if not 1 <= len(_field(obj, "id", "a string")) <= 32:  # pyright: ignore[reportArgumentType]  # required: never None
        raise ProtocolError("field id: expected 1 to 32 characters")
    cmd = _field(obj, "cmd", "a string")
    if cmd not in COMMANDS:
        raise ProtocolError("field cmd: unknown command %r" % cmd)
    # Unix seconds and a request's seq (a counter) are uint32: the bounds
    # of docs/protocol.md, MAX_TIME and MAX_COUNT in codec.py. One literal
    # here: one constant object, no interned name on the board.
    _field(obj, "now", "an integer", cmd == "time", 0, 0xFFFFFFFF)
    if cmd == "grant":
        _field(obj, "req", "an integer", True, 1, 0xFFFFFFFF)
        _field(obj, "duration_s", "an integer", True, 1, MAX_DURATION_S)
        _field(obj, "ap", "true or false")
        _field(obj, "projector", "true or false")
        _field(obj, "grace_s", "an integer", False, 0, MAX_GRACE_S)
    elif cmd == "deny":
        _field(obj, "req", "an integer", True, 1, 0xFFFFFFFF)
        _field(obj, "reason", "a string")
        _field(obj, "text", "a string", False)
    elif cmd == "identify":
        _field(obj, "seconds", "an integer", False, 1, 60)
    elif cmd == "update":
        # the signed manifest's http:// address on the gateway (docs/ota.md);
        # the updater checks the rest
        _field(obj, "manifest_url", "a string")
    elif cmd == "committed_to":
        # the gateway has the room's events up to (boot, seq) stored
        _field(obj, "boot", "an integer", True, 0, 0xFFFFFFFF)
        _field(obj, "seq", "an integer", True, 0, 0xFFFFFFFF)
    return obj


def check_policy(obj):
    _field(obj, "start", "true or false")
    _field(obj, "max_s", "an integer", True, 0, MAX_DURATION_S)
    _field(obj, "ap", "true or false")
    _field(obj, "cap_s", "an integer", False, 60, MAX_DURATION_S)
    _field(obj, "until", "an integer", False, 0, 0xFFFFFFFF)
    windows = _field(obj, "windows", "a list", False) or ()
    if len(windows) > MAX_WINDOWS:
        raise ProtocolError("field windows: %d windows, limit %d" % (len(windows), MAX_WINDOWS))
    last_end = 0
    for i, w in enumerate(windows):
        if not (isinstance(w, list) and len(w) == 4 and _is(w[0], "an integer >= 0") and _is(w[1], "an integer >= 0")
                and _is(w[2], "an integer >= 0") and _is(w[3], "an integer >= 0") and w[3] < 2):  # 1.0 is no 1
            raise ProtocolError("field windows[%d]: expected [start, end, max_s, ap 0/1]" % i)
        if w[1] <= w[0] or w[0] < last_end or w[2] > MAX_DURATION_S or w[1] > 0xFFFFFFFF:
            raise ProtocolError("field windows[%d]: empty, overlapping or too long" % i)
        last_end = w[1]
    return obj


def parse(leaf, raw):
    # Decode and validate a payload the board receives (`cmd` or `policy`).
    if len(raw) > MAX_BOARD_PAYLOAD:
        raise _fault("payload: %d bytes, limit %d" % (len(raw), MAX_BOARD_PAYLOAD), "too_large")
    return (check_policy if leaf == "policy" else check_cmd)(decode(raw))
