"""The web API on a running gateway (amqtt school broker, real SQLite)."""

import pytest
from fastapi.testclient import TestClient

from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config, ConfigError
from edge_gateway.service import Gateway
from devkit.testing import Board, school_clock, wait_for

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"
AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def gateway(amqtt_broker, tmp_path):
    c = Config.from_dict({
        "school": SCHOOL, "gateway_id": "gw-0341234a", "db": str(tmp_path / "gw.sqlite"),
        "school_broker": {"host": amqtt_broker.host, "port": amqtt_broker.port},
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {}},
        "policy": {"zone": "C"},
    })
    gw = Gateway(c, clock=school_clock()).start()
    yield gw
    gw.stop()


def test_api_rooms_events_health_metrics(gateway, amqtt_broker):
    board = Board(amqtt_broker.host, amqtt_broker.port, SCHOOL, "cm2-b", boot=4).connect()
    board.event("boot", {"reset_cause": "power"})
    board.cmd_for(board.request())
    board.publish("evt", b"{oops")
    wait_for(lambda: gateway.metrics["rejected"].get("bad_json") == 1, what="rejection counted")
    client = TestClient(create_app(gateway, ApiSettings(token="s3cret")))

    assert client.get("/api/rooms").status_code == 401
    assert client.get("/api/rooms", headers={"Authorization": "Bearer wrong"}).status_code == 401
    rooms = {r["room"]: r for r in client.get("/api/rooms", headers=AUTH).json()}
    assert rooms["cm2-b"]["online"] is True and rooms["cm2-b"]["boot"] == 4 and rooms["cm2-b"]["session"] == "requesting"
    assert rooms["cp-a"]["online"] is None and rooms["cp-a"]["wifi"] == "never"

    events = client.get("/api/events", params={"room": "cm2-b", "limit": 1}, headers=AUTH).json()
    assert [e["body"]["type"] for e in events] == ["lesson.requested"]
    assert len(client.get("/api/events", headers=AUTH).json()) == 2
    assert client.get("/api/events", params={"room": "nowhere"}, headers=AUTH).status_code == 404

    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["school_broker"] is True

    text = client.get("/metrics").text
    assert 'preau_gateway_messages_rejected_total{reason="bad_json"} 1' in text
    assert 'preau_gateway_decisions_total{cmd="grant"} 1' in text
    assert 'preau_gateway_messages_accepted_total{leaf="evt"} 2' in text
    assert "preau_gateway_outbox_records " in text
    board.close()


def test_app_refuses_an_empty_token(gateway):
    with pytest.raises(ConfigError, match="PREAU_GATEWAY_TOKEN"):
        create_app(gateway, ApiSettings(token=""))


def test_api_rooms_show_the_projector_and_the_kits_readings(gateway, amqtt_broker):
    board = Board(amqtt_broker.host, amqtt_broker.port, SCHOOL, "cm2-b", boot=4).connect()
    board.publish("tele", {"v": 1, "boot": 4, "uptime_ms": 60_000, "session": "idle", "ap": False, "remaining_s": 0,
                           "outbox": 0, "dropped": 0, "projector": "cooling", "lamp_h": 1234,
                           "air": {"co2": 1180, "t": 21.4, "rh": 48.0}})
    wait_for(lambda: gateway.metrics["accepted"].get("tele") == 1, what="telemetry applied")
    client = TestClient(create_app(gateway, ApiSettings(token="s3cret")))
    rooms = {r["room"]: r for r in client.get("/api/rooms", headers=AUTH).json()}
    assert rooms["cm2-b"]["projector"] == "cooling" and rooms["cm2-b"]["lamp_h"] == 1234
    assert rooms["cm2-b"]["air"] == {"co2": 1180, "t": 21.4, "rh": 48.0}
    assert rooms["cp-a"]["projector"] is None and rooms["cp-a"]["air"] is None
    board.crash()  # its Last Will: what it said of its devices is past
    wait_for(lambda: gateway.registry.row("cm2-b")["online"] is False, timeout=30, what="last will")
    rooms = {r["room"]: r for r in client.get("/api/rooms", headers=AUTH).json()}
    assert rooms["cm2-b"]["projector"] is None and rooms["cm2-b"]["air"] is None
