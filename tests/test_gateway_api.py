"""The web API on a running gateway (amqtt school broker, real SQLite): the
routes and their JSON, the two roles, the bounds of every input (a bad value
is a 422 naming the field, never a 500) and overrides in local time."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from devkit.testing import Board, school_clock, wait_for
from edge_gateway.api import BODY_MAX, ApiSettings, create_app
from edge_gateway.config import Config, ConfigError
from edge_gateway.gateway import Gateway

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"
PARIS = ZoneInfo("Europe/Paris")
DIRECTOR_TOKEN = "director-token-0123456789"
AUTH = {"Authorization": f"Bearer {DIRECTOR_TOKEN}"}
VIEWER = {"Authorization": "Bearer viewer-token-0123456789"}
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=PARIS)  # devkit.testing.SCHOOL_TIME: a Tuesday in class time
OVERRIDE = {"scope": "room", "room": "cm2-b", "effect": "deny", "who": "direction", "why": "Évaluation sur papier"}


@pytest.fixture
def gateway(mosquitto, tmp_path):
    c = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "gateway_id": "gw-0341234a",
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {}},
        "policy": {"zone": "C"},
    })
    gw = Gateway(c, clock=school_clock()).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway):
    return TestClient(create_app(gateway, ApiSettings(token=DIRECTOR_TOKEN, viewer_token=VIEWER["Authorization"][7:])))


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def field_errors(response) -> dict[str, str]:
    """{field: message} of a 422 from validation."""
    assert response.status_code == 422, response.text
    return {e["loc"][-1]: e["msg"] for e in response.json()["detail"]}


def test_api_rooms_events_health_metrics(gateway, client, mosquitto):
    board = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b", boot=4).connect()
    board.event("boot", {"reset_cause": "power"})
    board.cmd_for(board.request())
    board.publish("evt", b'{"oops": }')  # signed, but not JSON
    wait_for(lambda: gateway.metrics["rejected"].get("bad_json") == 1, what="rejection counted")
    wait_for(lambda: gateway.metrics["accepted"].get("evt") == 2, what="events stored")

    assert client.get("/api/rooms").status_code == 401
    assert client.get("/api/rooms", headers={"Authorization": "Bearer wrong"}).status_code == 401
    rooms = {r["room"]: r for r in client.get("/api/rooms", headers=AUTH).json()}
    assert rooms["cm2-b"]["online"] is True and rooms["cm2-b"]["boot"] == 4 and rooms["cm2-b"]["session"] == "requesting"
    assert rooms["cp-a"]["online"] is None and rooms["cp-a"]["wifi"] == "never"

    def events(**params):
        return client.get("/api/events", params=params, headers=AUTH).json()

    wait_for(lambda: len(events()) == 2, what="events committed")
    assert [e["body"]["type"] for e in events(room="cm2-b", limit=1)] == ["lesson.requested"]
    assert client.get("/api/events", params={"room": "nowhere"}, headers=AUTH).status_code == 404

    health = client.get("/healthz")  # open: systemd and the city's monitoring probe it
    assert health.status_code == 200 and health.json()["school_broker"] is True and health.json()["database"] == "ok"

    metrics = client.get("/metrics", headers=VIEWER)
    assert metrics.headers["content-type"].startswith("text/plain")
    values = samples(metrics.text)
    assert values[("preau_gateway_messages_rejected_total", (("reason", "bad_json"),))] == 1
    assert values[("preau_gateway_decisions_total", (("cmd", "grant"),))] == 1
    assert values[("preau_gateway_messages_accepted_total", (("leaf", "evt"),))] == 2
    assert ("preau_gateway_outbox_records", ()) in values
    board.close()


def test_app_refuses_an_empty_token(gateway):
    with pytest.raises(ConfigError, match="PREAU_GATEWAY_TOKEN"):
        create_app(gateway, ApiSettings(token=""))


def test_api_rooms_show_the_projector_and_the_kits_readings(gateway, client, mosquitto):
    board = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b", boot=4).connect()
    board.publish("tele", {"v": 1, "boot": 4, "uptime_ms": 60_000, "session": "idle", "ap": False, "remaining_s": 0,
                           "outbox": 0, "dropped": 0, "projector": "cooling", "lamp_h": 1234,
                           "air": {"co2": 1180, "t": 21.4, "rh": 48.0}})
    wait_for(lambda: gateway.metrics["accepted"].get("tele") == 1, what="telemetry applied")
    rooms = {r["room"]: r for r in client.get("/api/rooms", headers=AUTH).json()}
    assert rooms["cm2-b"]["projector"] == "cooling" and rooms["cm2-b"]["lamp_h"] == 1234
    assert rooms["cm2-b"]["air"] == {"co2": 1180, "t": 21.4, "rh": 48.0}
    assert rooms["cp-a"]["projector"] is None and rooms["cp-a"]["air"] is None
    board.crash()  # its Last Will: what it said of its devices is past
    wait_for(lambda: gateway.registry.row("cm2-b")["online"] is False, timeout=30, what="last will")
    rooms = {r["room"]: r for r in client.get("/api/rooms", headers=AUTH).json()}
    assert rooms["cm2-b"]["projector"] is None and rooms["cm2-b"]["air"] is None


# roles ------------------------------------------------------------------------------------


def test_the_viewer_reads_and_only_the_director_changes(client):
    for path in ("/api/rooms", "/api/events", "/api/overrides", "/api/policy/offline/cm2-b"):
        assert client.get(path, headers=VIEWER).status_code == 200, path
        assert client.get(path).status_code == 401, path
    body = OVERRIDE | {"minutes": 30}
    for method, path, kwargs in [("POST", "/api/overrides", {"json": body}),
                                 ("DELETE", "/api/overrides/o-000001", {"params": {"who": "direction"}}),
                                 ("GET", "/api/audit", {}),
                                 ("POST", "/api/config/reload", {})]:
        assert client.request(method, path, headers=VIEWER, **kwargs).status_code == 403, path
        assert client.request(method, path, **kwargs).status_code == 401, path
    assert client.post("/api/overrides", headers=AUTH, json=body).status_code == 201
    assert client.get("/api/audit", headers=AUTH).json()[0]["action"] == "override.add"
    # not started from a file: nothing to read again
    assert client.post("/api/config/reload", headers=AUTH).status_code == 409


def test_metrics_are_open_to_the_machine_itself_only(gateway):
    app = create_app(gateway, ApiSettings(token=DIRECTOR_TOKEN))
    assert TestClient(app).get("/metrics").status_code == 401  # from the network: a token
    assert TestClient(app).get("/metrics", headers=AUTH).status_code == 200
    assert TestClient(app, client=("127.0.0.1", 50000)).get("/metrics").status_code == 200
    assert TestClient(app).get("/healthz").status_code == 200


def test_docs_of_our_own_and_the_schema_behind_a_token(client):
    # FastAPI's /docs and /redoc load their scripts from a CDN the school network may not reach:
    # /docs is a page of ours, its script shipped in the package, behind the log-in
    docs = client.get("/docs", headers=AUTH)
    assert docs.status_code == 200 and '<script src="/static/common/docs.js"' in docs.text and "cdn" not in docs.text.lower()
    assert client.get("/static/common/docs.js").status_code == 200
    assert client.get("/docs", follow_redirects=False).status_code == 303  # to the log-in form
    assert client.get("/redoc", headers=AUTH).status_code == 404
    assert client.get("/openapi.json").status_code == 401
    schema = client.get("/openapi.json", headers=VIEWER).json()
    assert "/api/overrides" in schema["paths"] and "/openapi.json" not in schema["paths"]
    assert "/login" not in schema["paths"]  # the pages are not the API


def test_the_audit_names_the_callers_role_and_token_not_a_typed_name(client):
    body = OVERRIDE | {"minutes": 30, "who": "Mme Dupont"}  # still accepted from older clients, never stored
    o = client.post("/api/overrides", headers=AUTH, json=body).json()
    assert o["who"] == "director:token-director"
    assert client.delete(f"/api/overrides/{o['id']}", headers=AUTH).status_code == 200
    audit = client.get("/api/audit", headers=AUTH).json()
    assert [(a["action"], a["who"]) for a in audit] == [("override.cancel", "director:token-director"),
                                                         ("override.add", "director:token-director")]
    assert "Dupont" not in str(audit)


# bounds -----------------------------------------------------------------------------------


def test_explain_refuses_a_time_out_of_bounds_with_422_naming_at(client):
    for at in ["1e20", "nan", "-1e308", "inf", "-inf", "0", "9e8", "4102444801", "tomorrow", "2026-11-24",
               "24/11/2026 10:00", "2026-02-30T10:00", "2026-11-24T25:00", "1999-12-31T12:00", "2100-01-01T00:00",
               "2026-11-24T10:00+25:00", "x" * 41]:
        r = client.get("/api/policy/explain", params={"room": "cm2-b", "at": at}, headers=AUTH)
        message = field_errors(r)["at"]
        assert message.startswith("at: expected Unix seconds (2000 to 2100), or a date and time like"), (at, message)


def test_override_times_out_of_bounds_are_422_naming_the_field(client):
    for bad in [1e300, -1e308, 0, True, "1e20", "lundi 8h30", "2026-11-31T08:30", [1], {"t": 1}]:
        for field in ("starts", "expires"):
            body = OVERRIDE | {"expires": NOW.timestamp() + 3600, field: bad}
            message = field_errors(client.post("/api/overrides", headers=AUTH, json=body))[field]
            assert message.startswith(f"{field}: expected Unix seconds"), (bad, message)


def test_non_finite_numbers_in_json_are_422_not_500(client):
    # Python's JSON reader takes NaN and Infinity; the answer must still be JSON.
    body = b'{"scope": "room", "room": "cm2-b", "effect": "deny", "who": "direction", "why": "x", "minutes": 5, ' \
           b'"starts": NaN}'
    r = client.post("/api/overrides", headers=AUTH | {"Content-Type": "application/json"}, content=body)
    assert "not a finite number" in field_errors(r)["starts"]
    body = body.replace(b'"starts": NaN', b'"minutes": Infinity')
    r = client.post("/api/overrides", headers=AUTH | {"Content-Type": "application/json"}, content=body)
    assert field_errors(r)["minutes"].startswith("minutes: ")


BAD_INPUTS = [  # (method, path, request arguments, the field named in the 422)
    ("GET", "/api/events", {"params": {"limit": 0}}, "limit"),
    ("GET", "/api/events", {"params": {"limit": 1001}}, "limit"),
    ("GET", "/api/events", {"params": {"limit": "1e3"}}, "limit"),
    ("GET", "/api/events", {"params": {"room": "CM2-B"}}, "room"),
    ("GET", "/api/events", {"params": {"room": "a" * 33}}, "room"),
    ("GET", "/api/audit", {"params": {"limit": -1}}, "limit"),
    ("GET", "/api/overrides", {"params": {"limit": 10**30}}, "limit"),
    ("GET", "/api/overrides", {"params": {"all": "perhaps"}}, "all"),
    ("GET", "/api/policy/explain", {"params": {"room": "cm2 b"}}, "room"),
    ("GET", "/api/policy/explain", {"params": {}}, "room"),
    ("GET", "/api/policy/offline/Salle%201", {}, "room"),
    ("DELETE", "/api/overrides/o-000001", {"params": {"who": "direction\nmairie"}}, "who"),
    ("DELETE", "/api/overrides/O_1", {"params": {"who": "direction"}}, "override_id"),
    ("DELETE", "/api/overrides/" + "o" * 41, {"params": {"who": "direction"}}, "override_id"),
    ("POST", "/api/overrides", {"json": OVERRIDE | {"minutes": 0}}, "minutes"),
    ("POST", "/api/overrides", {"json": OVERRIDE | {"minutes": 10**9}}, "minutes"),
    ("POST", "/api/overrides", {"json": OVERRIDE | {"minutes": 30, "room": "CM2-B"}}, "room"),
    ("POST", "/api/overrides", {"json": OVERRIDE | {"minutes": 30, "why": "x" * 1001}}, "why"),
    ("POST", "/api/overrides", {"json": OVERRIDE | {"minutes": 30, "who": "a\x00"}}, "who"),
    ("POST", "/api/overrides", {"json": OVERRIDE | {"minutes": 30, "scope": "city"}}, "scope"),
    ("POST", "/api/overrides", {"json": OVERRIDE | {"minutes": 30, "expiry": 3}}, "expiry"),  # a typo is no default
    ("POST", "/api/config/reload", {"json": {"who": "d" * 1001}}, "who"),
]


def test_every_input_is_bounded(client):
    for method, path, kwargs, field in BAD_INPUTS:
        r = client.request(method, path, headers=AUTH, **kwargs)
        assert field_errors(r)[field].startswith(f"{field}: "), (method, path, kwargs, r.text)


def test_minutes_or_expires_exactly_one(client):
    for body in (OVERRIDE, OVERRIDE | {"minutes": 30, "expires": NOW.timestamp() + 3600}):
        r = client.post("/api/overrides", headers=AUTH, json=body)
        assert r.status_code == 422 and "give either minutes or expires" in r.text


def test_the_gateways_rules_answer_422_with_its_sentence(client):
    # the API only parses; the 14 days, the future and the room are the gateway's rules
    for bad, message in [({"minutes": 15 * 24 * 60}, "expires: an override lasts at most 14 days"),
                         ({"expires": "2026-11-24T08:00"}, "expires: must be in the future"),
                         ({"minutes": 30, "room": "nowhere"}, "room: 'nowhere' is not a room of this school"),
                         ({"minutes": 30, "why": "  "}, "why: 1 to 200 characters")]:
        r = client.post("/api/overrides", headers=AUTH, json=OVERRIDE | bad)
        assert r.status_code == 422 and r.json()["detail"].startswith(message), (bad, r.text)


def test_a_body_beyond_the_limit_is_413(client):
    r = client.post("/api/overrides", headers=AUTH, json=OVERRIDE | {"minutes": 30, "why": "x" * BODY_MAX})
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted as it comes
        for _ in range(BODY_MAX // 1000 + 2):
            yield b" " * 1000

    r = client.post("/api/overrides", headers=AUTH | {"Content-Type": "application/json"}, content=chunks())
    assert r.status_code == 413


# times as people write them ---------------------------------------------------------------


def test_override_in_the_schools_local_time(client, gateway):
    r = client.post("/api/overrides", headers=AUTH,
                    json=OVERRIDE | {"starts": "2026-11-24 10:00", "expires": "2026-11-24T11:45"})
    assert r.status_code == 201, r.text
    o = r.json()
    assert o["starts"] == datetime(2026, 11, 24, 10, 0, tzinfo=PARIS).timestamp()
    assert o["expires"] == datetime(2026, 11, 24, 11, 45, tzinfo=PARIS).timestamp()
    # the gateway decides by it: at 10:30 the room is refused
    d = client.get("/api/policy/explain", params={"room": "cm2-b", "at": "2026-11-24T10:30"}, headers=AUTH).json()
    assert d["reason"] == "override_deny" and d["at"] == datetime(2026, 11, 24, 10, 30, tzinfo=PARIS).timestamp()
    assert [x["id"] for x in client.get("/api/overrides", headers=AUTH).json()] == [o["id"]]


def test_override_with_an_offset_or_unix_seconds(client):
    r = client.post("/api/overrides", headers=AUTH,
                    json=OVERRIDE | {"starts": "2026-11-24T09:30Z", "expires": "2026-11-24T12:00:30.5+00:00"})
    assert r.status_code == 201, r.text
    assert r.json()["starts"] == datetime(2026, 11, 24, 9, 30, tzinfo=UTC).timestamp()
    assert r.json()["expires"] == datetime(2026, 11, 24, 12, 0, 30, 500000, tzinfo=UTC).timestamp()
    # Unix seconds, as a number or as the text a form sends
    unix = NOW.timestamp() + 7200
    for expires in (unix, str(unix)):
        r = client.post("/api/overrides", headers=AUTH, json=OVERRIDE | {"expires": expires})
        assert r.status_code == 201 and r.json()["expires"] == unix, r.text


def test_local_times_across_the_clock_changes_read_as_the_periods_are():
    from edge_gateway.overrides_input import parse_moment, to_unix

    def unix(text: str) -> float:
        return to_unix(parse_moment(text), "Europe/Paris")

    # spring: 02:30 never shows, it is the jump (03:00 summer time)
    assert unix("2027-03-28T02:30") == datetime(2027, 3, 28, 1, 0, tzinfo=UTC).timestamp()
    # autumn: 02:30 shows twice, the first pass (still summer time)
    assert unix("2026-10-25 02:30") == datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()
    assert unix("2026-10-25T02:30+01:00") == datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp()


def test_an_unknown_query_parameter_is_refused_not_ignored(gateway):
    client = TestClient(create_app(gateway, ApiSettings(token=DIRECTOR_TOKEN)))
    assert client.get("/api/overrides", params={"al": "true"}).status_code == 401  # the token first
    r = client.get("/api/overrides", params={"al": "true"}, headers=AUTH)
    assert r.status_code == 422 and "al" in r.text and "unknown query parameter" in r.text
    assert client.get("/api/overrides", params={"all": "true"}, headers=AUTH).status_code == 200
