# Board configuration checks (firmware/config.py): CPython and the MicroPython VM.
from firmware.config import ConfigError, validate

from ._util import raises

GOOD = {"school": "0341234a", "room": "cm2-b", "broker": "192.0.2.10"}


def test_defaults_filled_in():
    cfg = validate(dict(GOOD))
    assert cfg["port"] == 1883 and cfg["ap_cap_s"] == 7200 and cfg["wifi_never"] is False
    assert cfg["board"] == "olimex-esp32-poe" and cfg["user"] is None and cfg["request_timeout_ms"] == 3000


def test_each_error_names_its_key():
    cases = [
        ({"room": "cm2-b", "broker": "x"}, "key 'school' missing"),
        (dict(GOOD, school="Ecole 1"), "key 'school': expected a name"),
        (dict(GOOD, port="1883"), "key 'port': expected an integer"),
        (dict(GOOD, port=True), "key 'port': expected an integer"),
        (dict(GOOD, port=70000), "key 'port': 70000 outside 1..65535"),
        (dict(GOOD, wifi_never=1), "key 'wifi_never': expected true or false"),
        (dict(GOOD, ap_cap_s=999999), "key 'ap_cap_s'"),
        (dict(GOOD, colour="blue"), "unknown key 'colour'"),
        ([1, 2], "expected a JSON object"),
    ]
    for raw, message in cases:
        e = raises(ConfigError, validate, raw, "config.json")
        assert message in str(e), (message, str(e))
        assert str(e).startswith("config.json")


def test_credentials_are_optional_strings():
    cfg = validate(dict(GOOD, user="cm2-b", password="s3cret"))
    assert cfg["user"] == "cm2-b" and cfg["password"] == "s3cret"
    raises(ConfigError, validate, dict(GOOD, password=1234))


def test_pjlink_projector_needs_its_address():
    from firmware.config import ConfigError, validate

    base = {"school": "s1", "room": "r1", "broker": "gw", "projector": "pjlink"}
    e = raises(ConfigError, validate, base)
    assert "projector_host" in str(e)
    assert validate(dict(base, projector_host="10.0.0.12"))["projector_host"] == "10.0.0.12"
