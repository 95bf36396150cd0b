"""Configuration, the fixed decision rule and the command line: no broker
except where a test says so."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_gateway.api import ApiSettings
from edge_gateway.config import Config, ConfigError
from edge_gateway.gateway import Gateway, GatewayError
from edge_gateway.main import main
from edge_gateway.rules import PolicyState, command
from protocol.codec import check_cmd, check_policy

EXAMPLE = """
school = "0341234a"
gateway_id = "gw-0341234a"
db = "gateway.sqlite"

[school_broker]
host = "127.0.0.1"
port = 1883
username = "gateway"
password = "secret"

[http]
bind = "0.0.0.0:8080"

[policy]
zone = "C"
commune = "Montpellier"

[rooms.cm2-b]
wifi = "allowed"
sessions = true

[rooms.bcd]
wifi = "never"
sessions = false
"""


def write(tmp_path, text, name="school.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_example_loads_with_defaults_and_db_next_to_the_file(tmp_path):
    c = Config.load(write(tmp_path, EXAMPLE))
    assert c.school == "0341234a" and c.gateway_id == "gw-0341234a"
    assert c.db == str(tmp_path / "gateway.sqlite")
    assert c.school_broker.username == "gateway" and c.city_broker is None
    assert c.rooms["bcd"].sessions is False and c.rooms["cm2-b"].wifi == "allowed"
    assert c.http_bind == "0.0.0.0:8080"
    assert c.policy.zone == "C" and c.policy.timezone == "Europe/Paris"


@pytest.mark.parametrize(
    "change, message",
    [
        (('wifi = "allowed"', 'wifi = "yes"'), 'school.toml: rooms.cm2-b.wifi: expected "allowed" or "never", got "yes"'),
        (("sessions = true", 'sessions = "true"'), 'school.toml: rooms.cm2-b.sessions: expected true or false, got "true"'),
        (('zone = "C"', 'zone = "D"'), "school.toml:16: policy.zone: expected one of: \"A\", \"B\", \"C\"; got \"D\""),
        (('school = "0341234a"', 'school = "0341234A"'), "school.toml: school: expected 1-32 characters"),
        (("port = 1883", "port = 0"), "school.toml: school_broker.port: expected an integer 1..65535, got 0"),
        (("[rooms.bcd]", "[rooms.Salle_1]"), "school.toml: rooms.Salle_1: room name must be"),
        (("sessions = false", "sesions = false"), "school.toml: rooms.bcd.sesions: unknown key"),
        (('host = "127.0.0.1"\n', ""), "school.toml: school_broker.host: missing"),
        (('bind = "0.0.0.0:8080"', 'bind = "8080"'), 'school.toml: http.bind: expected "host:port"'),
        (("[school_broker]", "[school_brokr]"), "school.toml: school_brokr: unknown key"),
        (("[rooms.cm2-b]", "[rooms.gateway]"), "school.toml: rooms.gateway: room name must be"),
        (('db = "gateway.sqlite"', "db = ["), "school.toml: not valid TOML"),
        (('school = "0341234a"', 'school = "0341234a"\nschool_name = "x\\u0007"'),
         "school.toml: school_name: expected at most 100 printable characters"),
        (('school = "0341234a"', 'school = "0341234a"\nschool_name = "' + "é" * 101 + '"'),
         "school.toml: school_name: expected at most 100 printable characters"),
        (('school = "0341234a"', 'school = "0341234a"\nschool_name = ""'),
         "school.toml: school_name: expected a non-empty string"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path, change, message):
    with pytest.raises(ConfigError) as e:
        Config.load(write(tmp_path, EXAMPLE.replace(*change)))
    assert str(e.value).startswith(message)


def test_missing_file_and_dict_source():
    with pytest.raises(ConfigError, match="nowhere.toml: no such file"):
        Config.load("/nonexistent/nowhere.toml")
    with pytest.raises(ConfigError, match="^demo: rooms: missing table"):
        Config.from_dict({"school": "s", "gateway_id": "g", "db": ":memory:", "school_broker": {"host": "h"}}, source="demo")


def test_api_token_required_from_env_or_file(tmp_path):
    c = Config.load(write(tmp_path, EXAMPLE))
    with pytest.raises(ConfigError, match="http.token: missing and PREAU_GATEWAY_TOKEN is not set"):
        ApiSettings.from_config(c, {})
    assert ApiSettings.from_config(c, {"PREAU_GATEWAY_TOKEN": "t0k"}).token == "t0k"
    c2 = Config.load(write(tmp_path, EXAMPLE.replace('bind = "0.0.0.0:8080"', 'bind = "0.0.0.0:8080"\ntoken = "f1le"')))
    assert ApiSettings.from_config(c2, {}).token == "f1le"


TUESDAY_0900 = datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()


def test_decisions_and_commands_follow_the_codec(tmp_path):
    c = Config.load(write(tmp_path, EXAMPLE.replace('[rooms.bcd]', '[rooms.cp-a]\nwifi = "never"\n\n[rooms.bcd]')))
    state = PolicyState.build(c)
    grant = command(state.decide("cm2-b", TUESDAY_0900 + 0.7), "g-000042", 3, TUESDAY_0900 + 0.7)
    # class time 08:30-11:45, at most 5400 s: the grant runs to 10:30
    assert check_cmd(grant) == {"v": 1, "id": "g-000042", "cmd": "grant", "req": 3, "duration_s": 5400,
                                "ap": True, "projector": True, "grace_s": 120, "now": int(TUESDAY_0900)}
    assert state.decide("cp-a", TUESDAY_0900).ap is False and state.decide("cp-a", TUESDAY_0900).grant
    deny = check_cmd(command(state.decide("bcd", TUESDAY_0900), "g-000043", 5, TUESDAY_0900))
    assert deny["cmd"] == "deny" and deny["reason"] == "room_disabled" and deny["text"]
    lunch = command(state.decide("cm2-b", TUESDAY_0900 + 3 * 3600), "g-44", 6, 0)  # 12:00
    assert lunch["cmd"] == "deny" and lunch["reason"] == "period_no_sessions"
    assert state.decide("nowhere", TUESDAY_0900).reason == "unknown_room"
    policy = check_policy(state.offline_policy("cm2-b", TUESDAY_0900))
    assert policy["start"] is True and policy["ap"] is False and policy["windows"]
    assert state.offline_policy("bcd", TUESDAY_0900)["start"] is False


@given(wifi=st.sampled_from(["allowed", "never"]), sessions=st.booleans(),
       now=st.floats(TUESDAY_0900 - 400 * 86400, TUESDAY_0900 + 400 * 86400))
def test_access_point_only_with_a_granted_session_in_a_wifi_room(wifi, sessions, now):
    c = Config.from_dict({"school": "s", "gateway_id": "g", "db": ":memory:", "school_broker": {"host": "h"},
                          "policy": {"zone": "C"}, "rooms": {"r": {"wifi": wifi, "sessions": sessions}}})
    d = PolicyState.build(c).decide("r", now)
    assert not d.grant or sessions
    assert not d.ap or (d.grant and wifi == "allowed")
    check_cmd(command(d, "g-1", 1, now))


def test_cli_bad_config_exits_2_with_file_and_key(tmp_path, capsys):
    p = write(tmp_path, EXAMPLE.replace('wifi = "allowed"', 'wifi = "yes"'))
    assert main(["--config", str(p)]) == 2
    assert 'school.toml: rooms.cm2-b.wifi: expected "allowed" or "never", got "yes"' in capsys.readouterr().err


def test_cli_without_token_refuses_to_start(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PREAU_GATEWAY_TOKEN", raising=False)
    assert main(["--config", str(write(tmp_path, EXAMPLE))]) == 2
    assert "PREAU_GATEWAY_TOKEN" in capsys.readouterr().err


def test_unreachable_school_broker_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from devkit.brokers import free_port

    port = free_port()  # nothing listens there
    text = EXAMPLE.replace("port = 1883", f"port = {port}")
    with pytest.raises(GatewayError, match=f"school broker 127.0.0.1:{port} unreachable after 1 attempts"):
        Gateway(Config.load(write(tmp_path, text)), connect_attempts=1).start()
    monkeypatch.setenv("PREAU_GATEWAY_TOKEN", "t0k")
    assert main(["--config", str(write(tmp_path, text)), "--connect-attempts", "1"]) == 1
    assert "unreachable" in capsys.readouterr().err


@pytest.mark.broker
def test_refused_credentials_are_permanent(tmp_path):
    from devkit.brokers import Mosquitto

    strict = Mosquitto(extra_config="allow_anonymous false\n").start()  # the last setting wins
    try:
        text = EXAMPLE.replace("port = 1883", f"port = {strict.port}")
        with pytest.raises(GatewayError, match="refused us"):
            Gateway(Config.load(write(tmp_path, text)), connect_attempts=1).start()
    finally:
        strict.stop()
