# Préau protocol v1, the whole contract (docs/protocol.md): what the board
# receives (protocol/wire.py, re-exported here) and the checks of what boards
# publish (`state`, `evt`, `tele`, `ack`), used by the gateway and the city.
# Pure, and portable like wire.py, but the board never imports it.
from .wire import (  # noqa: F401 - re-exported: one import for the gateway and the city
    COMMANDS,
    MAX_BOARD_PAYLOAD,
    MAX_DURATION_S,
    MAX_GRACE_S,
    MAX_WINDOWS,
    ROOT,
    V,
    ProtocolError,
    _fault,
    _field,
    _is,
    check_cmd,
    check_policy,
    decode,
    encode,
    topic,
    valid_name,
)

LEAVES = ("state", "evt", "tele", "cmd", "ack", "policy")
SESSION_STATES = ("idle", "requesting", "active")


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


def check_state(obj):
    online = _field(obj, "online", "true or false")
    _field(obj, "boot", "an integer >= 0")
    if online:
        _field(obj, "fw", "a string")
        _field(obj, "board", "a string")
        _field(obj, "uptime_ms", "an integer >= 0")
        if _field(obj, "session", "a string") not in SESSION_STATES:
            raise ProtocolError("field session: unknown state %r" % obj["session"])
        _field(obj, "ap", "true or false")
        _field(obj, "devices", "a list")
    else:
        _field(obj, "reason", "a string", False)
    return obj


_EVT_DATA = {
    "boot": (("reset_cause", "a string"),),
    "button": (("press", "a string"),),
    "lesson.requested": (("req", "an integer >= 0"),),
    "session.started": (("req", "an integer >= 0"), ("duration_s", "an integer >= 0"), ("ap", "true or false"), ("projector", "true or false"), ("source", "a string")),
    "session.denied": (("req", "an integer >= 0"), ("reason", "a string"), ("source", "a string")),
    "session.ended": (("reason", "a string"), ("ran_s", "an integer >= 0")),
    "session.extended": (("req", "an integer >= 0"), ("added_s", "an integer >= 0"), ("ap", "true or false"), ("source", "a string")),
    "ap.changed": (("on", "true or false"), ("reason", "a string")),
    "cmd.rejected": (("reason", "a string"),),
    "projector.changed": (("state", "a string"),),
    "projector.fault": (("error", "a string"),),
    "kit.attached": (("kit", "a string"), ("sensors", "a list")),
    "kit.detached": (("kit", "a string"),),
    "kit.fault": (("sensor", "a string"), ("error", "a string")),
    "air.alert": (("co2", "an integer >= 0"), ("on", "true or false")),
}
EVENT_TYPES = tuple(_EVT_DATA)
# Optional data fields: checked when present.
_EVT_OPTIONAL = {
    "lesson.requested": (("extend", "true or false"), ("remaining_s", "an integer >= 0")),
    "session.denied": (("extend", "true or false"),),
    "projector.changed": (("lamp_h", "an integer >= 0"),),
}


def check_evt(obj):
    _field(obj, "boot", "an integer >= 0")
    seq = _field(obj, "seq", "an integer")
    if seq < 1:  # pyright: ignore[reportOptionalOperand]  # required: never None
        raise ProtocolError("field seq: expected >= 1, got %r" % seq)
    _field(obj, "uptime_ms", "an integer >= 0")
    _field(obj, "time", "an integer >= 0 or null")
    kind = _field(obj, "type", "a string")
    if kind not in _EVT_DATA:
        raise ProtocolError("field type: unknown event type %r" % kind)
    data = _field(obj, "data", "an object")
    try:
        for name, k in _EVT_DATA[kind]:
            _field(data, name, k)
        for name, k in _EVT_OPTIONAL.get(kind, ()):
            _field(data, name, k, False)
    except ProtocolError as e:
        raise ProtocolError("data." + str(e)[6:])
    _field(obj, "replay", "true or false", False)
    return obj


def check_ack(obj):
    _field(obj, "id", "a string")
    ok = _field(obj, "ok", "true or false")
    _field(obj, "boot", "an integer >= 0")
    if ok:
        _field(obj, "result", "a string", False)
    else:
        _field(obj, "error", "a string")
    return obj


def check_tele(obj):
    _field(obj, "boot", "an integer >= 0")
    _field(obj, "uptime_ms", "an integer >= 0")
    if _field(obj, "session", "a string") not in SESSION_STATES:
        raise ProtocolError("field session: unknown state %r" % obj["session"])
    _field(obj, "ap", "true or false")
    for name in ("remaining_s", "outbox", "dropped", "lamp_h"):
        _field(obj, name, "an integer >= 0", False)
    _field(obj, "projector", "a string", False)
    air = _field(obj, "air", "an object", False) or {}
    for name in air:
        value = air[name]
        if not (len(name) <= 8 and isinstance(value, (int, float)) and not isinstance(value, bool)):
            raise ProtocolError("field air: %r is not a short name with a number" % (name,))
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
