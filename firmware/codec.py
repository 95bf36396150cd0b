# Préau protocol v1, the whole contract (docs/protocol.md): what the board
# receives (firmware/wire.py, re-exported here) and the checks of what boards
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
    _range,
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
    "session.extended": (("req", "uint"), ("added_s", "uint"), ("ap", "bool"), ("source", "str")),
    "ap.changed": (("on", "bool"), ("reason", "str")),
    "cmd.rejected": (("reason", "str"),),
    "projector.changed": (("state", "str"),),
    "projector.fault": (("error", "str"),),
    "kit.attached": (("kit", "str"), ("sensors", "list")),
    "kit.detached": (("kit", "str"),),
    "kit.fault": (("sensor", "str"), ("error", "str")),
    "air.alert": (("co2", "uint"), ("on", "bool")),
}
EVENT_TYPES = tuple(_EVT_DATA)
# Optional data fields: checked when present.
_EVT_OPTIONAL = {
    "lesson.requested": (("extend", "bool"), ("remaining_s", "uint")),
    "session.denied": (("extend", "bool"),),
    "projector.changed": (("lamp_h", "uint"),),
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
    try:
        for name, k in _EVT_DATA[kind]:
            _field(data, name, k)
        for name, k in _EVT_OPTIONAL.get(kind, ()):
            _field(data, name, k, False)
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
