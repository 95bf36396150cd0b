"""The policy engine inside the running gateway: the whole decision path
(real firmware on a simulated board -> real broker -> gateway -> grant),
overrides with their audit trail, roles, explanations, and configuration
reloads that never replace a working configuration with a broken one."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from devkit.sim.classroom import SimClassroom
from devkit.testing import Board, school_clock, wait_for
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config, ConfigError
from edge_gateway.gateway import Gateway
from protocol.codec import check_policy
from tests.helpers import Peer, await_for

SCHOOL = "0341234a"
PARIS = ZoneInfo("Europe/Paris")
DIRECTOR = {"Authorization": "Bearer director-token-0123456789"}
VIEWER = {"Authorization": "Bearer viewer-token-0123456789"}

CONFIG = """
school = "0341234a"
gateway_id = "gw-0341234a"
db = "gateway.sqlite"

[school_broker]
host = "127.0.0.1"
port = {port}

[policy]
zone = "C"
commune = "Montpellier"

[rooms.cm2-b]
wifi = "allowed"

[rooms.cp-a]
wifi = "never"
"""


def write_config(tmp_path, port: int, extra: str = "") -> str:
    """school.toml for the locked school broker on `port` (devkit/school.py):
    its fleet file and broker files where `mosquitto` wrote them."""
    from devkit.school import LockedSchool

    school = next((s for s in LockedSchool.running if s.port == port), None)
    path = tmp_path / "school.toml"
    text = CONFIG.replace("{port}", str(port))
    if school is not None:
        text = text.replace(
            'db = "gateway.sqlite"\n',
            f'db = "gateway.sqlite"\nfleet = "{school.fleet_file}"\n[broker]\ndir = "{school.files.dir}"\n'
            f'listen = "127.0.0.1:{port}"\n')
    path.write_text(text + extra)
    return str(path)


@pytest.fixture
def gateway(mosquitto, tmp_path):
    path = write_config(tmp_path, mosquitto.port)
    gw = Gateway(Config.load(path), clock=school_clock("2026-11-24T09:00:00+01:00"), reconnect_max_s=1).start()
    gw.config_path = path
    yield gw
    gw.stop()


@pytest.fixture
def api(gateway):
    settings = ApiSettings(token="director-token-0123456789", viewer_token="viewer-token-0123456789",
                           config_path=gateway.config_path)
    return TestClient(create_app(gateway, settings))


def test_press_to_grant_through_a_real_broker_with_the_real_firmware(gateway, mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")

    async def scenario():
        sim = SimClassroom(mosquitto.board_config("cm2-b"),
                           storage=str(tmp_path / "board"))
        sim.start()
        # the gateway gives the booting board its clock and its offline policy
        await await_for(lambda: sim.app.clock.time() is not None, what="time from the gateway")
        await await_for(lambda: sim.app.session.windows is not None, what="offline policy windows")
        await sim.press(0.2)
        started = (await await_for(lambda: peer.events("session.started"), what="grant"))[0]["data"]
        assert started["source"] == "gateway" and started["ap"] is True and started["duration_s"] == 5400
        await await_for(lambda: sim.relay, what="relay on")
        await sim.press(2.3)
        await await_for(lambda: not sim.relay, what="relay off after the long press")
        await sim.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        peer.close()


def test_offline_board_applies_the_windows_it_was_given(gateway, mosquitto, tmp_path):
    """The gateway goes away: a press in class time starts a session alone,
    with the access point the window allows."""

    async def scenario():
        sim = SimClassroom(mosquitto.board_config("cm2-b") | {
                            "request_timeout_ms": 300}, storage=str(tmp_path / "board"))
        sim.start()
        await await_for(lambda: sim.app.clock.time() is not None and sim.app.session.windows is not None,
                        what="time and windows")
        await asyncio.to_thread(gateway.stop)  # the Pi is unplugged
        await sim.press(0.2)
        await await_for(lambda: sim.app.session.state == "active", what="offline start")
        assert sim.app.session.source == "offline" and sim.relay  # 09:00 Tuesday: class time, AP allowed
        await sim.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_deny_override_reaches_the_board_and_is_audited(gateway, mosquitto, api):
    board = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b").connect()
    try:
        before = wait_for(lambda: board.policy, what="retained policy")
        r = api.post("/api/overrides", headers=DIRECTOR, json={
            "scope": "room", "room": "cm2-b", "effect": "deny", "minutes": 120,
            "who": "direction", "why": "Évaluation nationale sur papier"})
        assert r.status_code == 201, r.text
        override = r.json()
        assert override["id"] == "o-000001" and override["effect"] == "deny"
        # the offline policy was published again without this morning's windows
        after = wait_for(lambda: board.policy != before and board.policy, what="republished policy")
        assert check_policy(after)["windows"][0][0] >= gateway.clock() + 7100
        deny = board.cmd_for(board.request())
        assert deny["cmd"] == "deny" and deny["reason"] == "override_deny"
        assert deny["text"] == "Séances suspendues par la direction : Évaluation nationale sur papier."
        explained = api.get("/api/policy/explain", params={"room": "cm2-b"}, headers=VIEWER).json()
        assert explained["grant"] is False and explained["reason"] == "override_deny" and explained["text_en"]
        assert [o["id"] for o in api.get("/api/overrides", headers=VIEWER).json()] == ["o-000001"]
        # cancelled: granted again
        assert api.delete("/api/overrides/o-000001", params={"who": "direction"}, headers=DIRECTOR).status_code == 200
        assert api.delete("/api/overrides/o-000001", params={"who": "direction"}, headers=DIRECTOR).status_code == 404
        assert board.cmd_for(board.request())["cmd"] == "grant"
        actions = [a["action"] for a in api.get("/api/audit", headers=DIRECTOR).json()]
        assert actions[:2] == ["override.cancel", "override.add"]
    finally:
        board.close()


def test_roles_and_bad_overrides(api):
    body = {"scope": "room", "room": "cm2-b", "effect": "allow", "ap": True, "minutes": 30,
            "who": "direction", "why": "Fête de l'école"}
    assert api.post("/api/overrides", json=body).status_code == 401
    assert api.post("/api/overrides", headers=VIEWER, json=body).status_code == 403  # the viewer only reads
    assert api.get("/api/audit", headers=VIEWER).status_code == 403
    for bad, message in [
        ({"room": "nowhere"}, "not a room of this school"),
        ({"minutes": None}, "either minutes or expires"),
        ({"effect": "allow", "ap_only": True}, "ap_only"),
        ({"minutes": 99999}, "an override lasts at most 14 days"),
        ({"scope": "school"}, "school override"),
    ]:
        r = api.post("/api/overrides", headers=DIRECTOR, json=body | bad)
        assert r.status_code == 422 and message in r.text, (bad, r.text)
    # an allow override never brings the radio to a Wi-Fi-never room
    r = api.post("/api/overrides", headers=DIRECTOR, json=body | {"room": "cp-a"})
    assert r.status_code == 201
    lunch = datetime(2026, 11, 24, 12, 0, tzinfo=PARIS).timestamp()
    d = api.get("/api/policy/explain", params={"room": "cp-a", "at": lunch}, headers=VIEWER).json()
    assert d["ap"] is False


def test_reload_applies_a_good_file_and_refuses_a_broken_one(gateway, mosquitto, api, tmp_path):
    board = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b").connect()
    try:
        wait_for(lambda: board.policy, what="retained policy")
        path = gateway.config_path
        with open(path) as f:
            good = f.read()
        # A broken file: refused with its file and key, the running rules stay.
        with open(path, "w") as f:
            f.write(good.replace('wifi = "allowed"', 'wifi = "sometimes"'))
        r = api.post("/api/config/reload", headers=DIRECTOR, json={"who": "direction"})
        assert r.status_code == 422 and "school.toml: rooms.cm2-b.wifi" in r.json()["detail"]
        assert board.cmd_for(board.request())["ap"] is True
        # A change that needs a restart is refused too.
        with open(path, "w") as f:
            f.write(good.replace('gateway_id = "gw-0341234a"', 'gateway_id = "gw-other"'))
        assert api.post("/api/config/reload", headers=DIRECTOR).status_code == 422
        # A good change: a new room, cm2-b becomes Wi-Fi never; policies go out again.
        policy_before = board.policy
        with open(path, "w") as f:
            f.write(good.replace('wifi = "allowed"', 'wifi = "never"') + '\n[rooms.ce1-c]\nwifi = "allowed"\n')
        r = api.post("/api/config/reload", headers=DIRECTOR)
        assert r.status_code == 200 and r.json()["rooms"] == ["ce1-c", "cm2-b", "cp-a"]
        wait_for(lambda: board.policy != policy_before, what="policy republished")
        assert all(w[3] == 0 for w in board.policy["windows"])
        assert board.cmd_for(board.request())["ap"] is False
        assert gateway.rooms()["ce1-c"]["online"] is None
        actions = [a["action"] for a in api.get("/api/audit", headers=DIRECTOR).json()]
        assert actions[:3] == ["config.reload", "config.rejected", "config.rejected"]
    finally:
        board.close()


def test_offline_endpoint_and_policy_size(api):
    policy = api.get("/api/policy/offline/cm2-b", headers=VIEWER).json()
    assert check_policy(policy) == policy
    assert len(json.dumps(policy, separators=(",", ":"))) <= 1024
    assert api.get("/api/policy/offline/nowhere", headers=VIEWER).status_code == 404


def test_config_error_type_is_the_gateways(tmp_path):
    path = write_config(tmp_path, 1883, '\n[[closures]]\nstart = 2026-12-01\nend = 2026-11-30\nlabel = "x"\n')
    with pytest.raises(ConfigError, match="closures"):
        Config.load(path)


def test_beyond_the_holiday_data_the_gateway_says_so(mosquitto, tmp_path, caplog):
    path = write_config(tmp_path, mosquitto.port, '\n[[closures]]\nstart = 2031-12-20\nend = 2032-01-04\n'
                                                  'label = "Vacances de Noël (arrêté rectoral)"\n')
    gw = Gateway(Config.load(path), clock=school_clock("2031-11-25T09:00:00+01:00")).start()
    try:
        assert "school-holiday data ended on 2028-08-31" in caplog.text
        assert gw.health()["calendar_covered_until"] == "2028-08-31"
        d = gw.explain("cm2-b")
        assert d.grant and "calendar_not_covered" in d.warnings  # granted, and said
        closed = gw.explain("cm2-b", datetime(2031, 12, 22, 10, 0, tzinfo=PARIS).timestamp())
        assert not closed.grant and closed.reason == "closure"  # the school's own closures still hold
    finally:
        gw.stop()


def test_the_example_school_file_runs_a_gateway(tmp_path, capsys):
    """examples/school.toml is the technician's starting point: it must load
    as a gateway configuration, not only as a policy; `preau provision`
    writes its broker's files, Mosquitto runs from them, the gateway connects."""
    import pathlib

    from devkit.brokers import Mosquitto, free_port
    from edge_gateway.provision import main as provision

    port = free_port()
    text = (pathlib.Path(__file__).parent.parent / "examples" / "school.toml").read_text()
    text = text.replace("port = 1883", f"port = {port}", 1).replace('listen = "0.0.0.0:1883"',
                                                                     f'listen = "127.0.0.1:{port}"', 1)
    path = tmp_path / "school.toml"
    path.write_text(text)
    config = Config.load(path)
    assert config.db == str(tmp_path / "gateway.sqlite") and len(config.rooms) >= 5
    room = sorted(config.rooms)[0]
    assert provision(["--config", str(path), "add", room]) == 0
    assert f'"room": "{room}"' in capsys.readouterr().out
    broker = Mosquitto(port=port, config_file=str(tmp_path / "broker" / "mosquitto.conf")).start()
    try:
        gw = Gateway(config, clock=school_clock()).start()
        try:
            assert gw.health()["ok"]
            assert set(gw.intake.keys) == {room}
            assert gw.explain(room).reason in ("granted", "room_disabled")
        finally:
            gw.stop()
    finally:
        broker.stop()
