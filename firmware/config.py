# Board configuration (config.json on the board's flash). Checked at boot:
# a missing or wrong key names itself, so a technician fixes it in one go.
# Loaded at boot only, but its heap counts in the boot peak: one table, kinds
# that are their own error texts (as in wire.py), no per-kind dicts.
import json

from protocol.wire import MAX_DURATION_S, _is, valid_name

try:  # the built-in: the VM freezes a Python binascii over it (7 KB of heap)
    from ubinascii import unhexlify
except ImportError:  # CPython
    from binascii import unhexlify

NAME = "a name of 1-32 characters a-z 0-9 -"
TEXT = "a non-empty string"
# "a string" here: a string or null, absent means null.
# (key, kind, default[, lo, hi]); default None: required, unless "a string".
SCHEMA = (
    ("school", NAME, None),
    ("room", NAME, None),
    ("broker", TEXT, None),
    ("port", "an integer", 1883, 1, 65535),
    ("user", "a string", None),
    ("password", "a string", None),
    ("board", TEXT, "olimex-esp32-poe"),
    ("wifi_never", "true or false", False),
    ("ap_cap_s", "an integer", 7200, 60, MAX_DURATION_S),
    ("request_timeout_ms", "an integer", 3000, 200, 30000),
    ("keepalive", "an integer", 30, 5, 600),
    ("tele_s", "an integer", 60, 5, 3600),
    ("grace_s", "an integer", 120, 0, 900),
    ("outbox_kb", "an integer", 64, 4, 256),
    ("wdt_ms", "an integer", 8000, 2000, 60000),
    ("projector", "a string", None),
    ("projector_host", "a string", None),
    ("projector_password", "a string", None),
    ("projector_standby_s", "an integer", 600, 60, 7200),
    ("co2_alert_ppm", "an integer", 1000, 400, 5000),
    ("wifi_ssid", "a string", None),
    ("wifi_password", "a string", None),
    ("key", "a string", None),  # the board's MAC key (protocol/mac.py): 64 hex characters
)


class ConfigError(ValueError):
    pass


def validate(raw, where="config.json"):
    if not isinstance(raw, dict):
        raise ConfigError("%s: expected a JSON object" % where)
    cfg = {}
    for spec in SCHEMA:
        key, kind, value = spec[0], spec[1], spec[2]
        if key in raw:
            value = raw[key]
            if kind == NAME:
                ok = valid_name(value)
            elif kind == TEXT:
                ok = isinstance(value, str) and len(value) > 0
            elif kind == "a string":
                ok = value is None or isinstance(value, str)
            else:
                ok = _is(value, kind)  # an integer, true or false: the protocol's own rules
            if not ok:
                raise ConfigError("%s: key '%s': expected %s, got %r" % (where, key, kind, value))
            if len(spec) > 3 and not spec[3] <= value <= spec[4]:  # pyright: ignore[reportOperatorIssue]  # an integer: checked above
                raise ConfigError("%s: key '%s': %r outside %d..%d" % (where, key, value, spec[3], spec[4]))
        elif value is None and kind != "a string":
            raise ConfigError("%s: key '%s' missing (%s)" % (where, key, kind))
        cfg[key] = value
    for key in raw:
        if key not in cfg:
            raise ConfigError("%s: unknown key '%s'" % (where, key))
    if cfg["projector"] == "pjlink" and not cfg["projector_host"]:
        raise ConfigError("%s: key 'projector_host' missing (a PJLink projector is reached over the network)" % where)
    key = cfg["key"]
    if key is not None:
        # 32 bytes from `preau provision`. Not echoed: a wrong key is often
        # most of the right one, and the console is no place for it.
        try:
            key = unhexlify(key)
        except ValueError:  # not hexadecimal, or an odd length
            key = b""
        if len(key) != 32:
            raise ConfigError("%s: key 'key': expected 64 hexadecimal characters (from preau provision)" % where)
    return cfg


def load(path="config.json"):
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise ConfigError("%s: cannot read (%s)" % (path, e))
    except ValueError as e:
        raise ConfigError("%s: not valid JSON (%s)" % (path, e))
    return validate(raw, path)
