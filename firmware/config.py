# Board configuration (config.json on the board's flash). Checked at boot:
# a missing or wrong key names itself, so a technician fixes it in one go.
import json

from .wire import _is, valid_name

# key: (kind, default); default None means required
SCHEMA = {
    "school": ("name", None),
    "room": ("name", None),
    "broker": ("str", None),
    "port": ("int", 1883),
    "user": ("str?", None),
    "password": ("str?", None),
    "board": ("str", "olimex-esp32-poe"),
    "wifi_never": ("bool", False),
    "ap_cap_s": ("int", 7200),
    "request_timeout_ms": ("int", 3000),
    "keepalive": ("int", 30),
    "tele_s": ("int", 60),
    "grace_s": ("int", 120),
    "outbox_kb": ("int", 64),
    "wdt_ms": ("int", 8000),
    "projector": ("str?", None),
    "projector_host": ("str?", None),
    "projector_password": ("str?", None),
    "projector_standby_s": ("int", 600),
    "co2_alert_ppm": ("int", 1000),
    "wifi_ssid": ("str?", None),
    "wifi_password": ("str?", None),
}
OPTIONAL_NONE = ("user", "password", "projector", "projector_host", "projector_password", "wifi_ssid", "wifi_password")
LIMITS = {"port": (1, 65535), "ap_cap_s": (60, 14400), "request_timeout_ms": (200, 30000),
          "keepalive": (5, 600), "tele_s": (5, 3600), "grace_s": (0, 900), "outbox_kb": (4, 256),
          "wdt_ms": (2000, 60000), "projector_standby_s": (60, 7200), "co2_alert_ppm": (400, 5000)}


class ConfigError(ValueError):
    pass


def _ok(kind, value):
    if kind == "name":
        return valid_name(value)
    if kind == "str":
        return isinstance(value, str) and len(value) > 0
    if kind == "str?":
        return value is None or isinstance(value, str)
    return _is(value, kind)  # int, bool: the codec's own type rules


_WHAT = {"name": "a name of 1-32 characters a-z 0-9 -", "str": "a non-empty string",
         "str?": "a string", "int": "an integer", "bool": "true or false"}


def validate(raw, where="config.json"):
    if not isinstance(raw, dict):
        raise ConfigError("%s: expected a JSON object" % where)
    cfg = {}
    for key in SCHEMA:
        kind, default = SCHEMA[key]
        if key not in raw:
            if default is None and key not in OPTIONAL_NONE:
                raise ConfigError("%s: key '%s' missing (%s)" % (where, key, _WHAT[kind]))
            cfg[key] = default
            continue
        value = raw[key]
        if not _ok(kind, value):
            raise ConfigError("%s: key '%s': expected %s, got %r" % (where, key, _WHAT[kind], value))
        if key in LIMITS:
            lo, hi = LIMITS[key]
            if not lo <= value <= hi:
                raise ConfigError("%s: key '%s': %r outside %d..%d" % (where, key, value, lo, hi))
        cfg[key] = value
    for key in raw:
        if key not in SCHEMA:
            raise ConfigError("%s: unknown key '%s'" % (where, key))
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
