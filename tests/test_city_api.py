"""City API (cloud_bridge.api) over a real SQLite store and a real PostgreSQL: the token guards
/api, the status and records say what the store holds, health and metrics
are open to loopback only."""

import json
import os
import secrets

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cloud_bridge.api import create_app
from cloud_bridge.errors import CitySettingsError
from cloud_bridge.metrics import Metrics
from cloud_bridge.settings import CitySettings
from cloud_bridge.store import CityStore
from protocol.citylink import parse_batch

SCHOOL = "0341234a"
TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BIRTH = {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5120,
         "session": "idle", "ap": False, "devices": ["button"]}


@pytest.fixture
def store(city_database):
    s = CityStore(**city_database)
    records = [
        {"seq": 1, "room": "cm2-b", "kind": "state", "at": 100.0, "body": BIRTH},
        {"seq": 2, "room": "cm2-b", "kind": "evt", "at": 101.0, "body": {
            "v": 1, "boot": 7, "seq": 1, "uptime_ms": 6000, "time": 101, "type": "session.started",
            "data": {"req": 1, "duration_s": 2700, "ap": True, "projector": True, "source": "gateway"}}},
        {"seq": 3, "room": "gateway", "kind": "decision", "at": 102.0, "body": {"grant": True}},
    ]
    raw = json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-1", "records": records}).encode()
    s.store_batch(parse_batch(SCHOOL, raw), received_at=103.0)
    s.set_gateway_state(SCHOOL, True, "gw-1", 104.0)
    yield s
    s.close()


@pytest.fixture
def metrics():
    m = Metrics()
    m.batches.inc(3)
    m.reject("school_mismatch")
    return m


@pytest.fixture
def client(store, metrics):
    with TestClient(create_app(store, CitySettings(token=TOKEN), metrics)) as c:
        yield c


@pytest.mark.parametrize("path", ["/api/status", "/api/records"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_api_needs_the_token(client, path, headers):
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_status(client):
    response = client.get("/api/status", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "schools": [{
            "school": SCHOOL, "gateway": "gw-1", "online": True, "last_seen": 104.0, "acked": 3,
            "epoch": "", "dropped": 0, "gaps": 0, "rooms": [{"room": "cm2-b", "online": True, "boot": 7, "session": "active", "ap": False,
                       "last_seen": 101.0, "fw": "0.1.0", "board": "olimex-esp32-poe"}],
        }],
        "records": 3,
    }


def records(client, **query):
    response = client.get("/api/records", params=query, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def seqs(client, **query):
    return [r["seq"] for r in records(client, **query)["records"]]


def test_records_and_their_filters(client):
    page = records(client)
    assert [r["seq"] for r in page["records"]] == [3, 2, 1] and page["next"] is None
    assert page["records"][0] == {"school": SCHOOL, "epoch": "", "seq": 3, "room": "gateway", "kind": "decision",
                                  "at": 102.0, "body": {"grant": True}, "received_at": 103.0}
    assert seqs(client, school=SCHOOL, room="cm2-b", kind="evt", limit=5) == [2]
    assert records(client, school="other") == {"records": [], "next": None}
    # [since, until) of the gateway's time: Unix seconds, or ISO 8601 with its offset
    assert seqs(client, since=101, until=102) == [2]
    assert seqs(client, since="1970-01-01T00:01:41Z", until="1970-01-01T01:01:42+01:00") == [2]
    assert seqs(client, since="101.5") == [3]


def test_records_come_in_pages_behind_a_cursor(client):
    first = records(client, limit=2)
    assert [r["seq"] for r in first["records"]] == [3, 2] and isinstance(first["next"], str)
    second = records(client, limit=2, cursor=first["next"])
    assert [r["seq"] for r in second["records"]] == [1] and second["next"] is None
    # the cursor belongs to its filters: under others it would mean nothing
    other = client.get("/api/records", params={"limit": 2, "kind": "evt", "cursor": first["next"]}, headers=AUTH)
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_paging_over_http_while_records_arrive(client, store):
    more = json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-1", "records": [
        {"seq": s, "room": "cm2-b", "kind": "decision", "at": at, "body": {"grant": False}}
        for s, at in ((4, 500.0), (5, 101.0), (6, 50.0))]}).encode()
    first = records(client, limit=1)
    store.store_batch(parse_batch(SCHOOL, more), received_at=600.0)
    seen = [r["seq"] for r in first["records"]]
    cursor = first["next"]
    while cursor:
        page = records(client, limit=1, cursor=cursor)
        seen += [r["seq"] for r in page["records"]]
        cursor = page["next"]
    # 4 is newer than the first page: not seen; 5 and 6 fall after the position reached: seen once
    assert seen == [3, 5, 2, 1, 6]


@pytest.mark.parametrize("query", [{"limit": 1001}, {"limit": 0}, {"kind": "tele"}, {"room": "CM2"},
                                   {"school": "x" * 33}, {"since": "noon"}, {"since": "2026-12-03T09:00:00"},
                                   {"until": "2026-13-03T09:00:00+01:00"}, {"since": -1}, {"until": 2**33},
                                   {"since": "1900-01-01T00:00:00Z"}, {"cursor": "not a cursor"},
                                   {"cursor": "bm90LWpzb24"}, {"cursor": "WzEsMSwiYSIsIiIsMS41LCJ4Il0"},
                                   {"cursor": "x" * 401}])
def test_records_refuses_bad_queries(client, query):
    response = client.get("/api/records", params=query, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(query))]


def test_health_and_metrics_are_open_on_loopback_only(store, metrics):
    app = create_app(store, CitySettings(token=TOKEN), metrics)
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        assert local.get("/healthz").json() == {"ok": True, "database": True, "broker": False}
        text = local.get("/metrics").text
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("preau_city_batches_total", ())] == 3
    assert samples[("preau_city_rejected_total", (("reason", "school_mismatch"),))] == 1
    assert samples[("preau_city_rejected_total", (("reason", "not_json"),))] == 0
    assert samples[("preau_city_internal_errors_total", ())] == 0
    assert samples[("preau_city_broker_connected", ())] == 0
    assert "# TYPE preau_city_records_stored_total counter" in text
    with TestClient(app, client=("192.0.2.7", 40000)) as remote:
        assert remote.get("/metrics").status_code == 401
        assert remote.get("/healthz").status_code == 401
        assert remote.get("/metrics", headers=AUTH).status_code == 200


def test_a_database_that_cannot_be_read_answers_503_not_500(store, metrics):
    if not store.path:
        pytest.skip("a file removed under the service: SQLite's case")
    os.remove(store.path)  # under the running service: readers find no tables
    app = create_app(store, CitySettings(token=TOKEN), metrics)
    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        for path in ("/api/status", "/api/records", "/api/kits"):
            response = client.get(path, headers=AUTH)
            assert response.status_code == 503 and "cannot be read" in response.json()["detail"]
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["database"] is False


@pytest.mark.parametrize("query", [{"limt": 5}, {"school": SCHOOL, "shcool": SCHOOL}])
def test_unknown_query_parameters_are_refused(client, query):
    response = client.get("/api/records", params=query, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("token", [None, "", "short"])
def test_no_app_without_a_real_token(store, token):
    with pytest.raises(CitySettingsError, match="PREAU_CITY_TOKEN"):
        create_app(store, CitySettings(token=token))


def test_no_unauthenticated_documentation(client):
    # FastAPI's pages load their scripts from a CDN and need no token; the
    # description needs the operator's token (or a log-in: tests/test_city_pages.py)
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    schema = client.get("/openapi.json", headers=AUTH).json()
    assert "/api/records" in schema["paths"] and "/openapi.json" not in schema["paths"]
    names = {p["name"] for p in schema["paths"]["/api/records"]["get"]["parameters"]}
    assert names == {"school", "room", "kind", "since", "until", "limit", "cursor"}
    assert client.get("/openapi.json", params={"x": 1}, headers=AUTH).status_code == 422


def telemetry(seq, room, at, co2, lamp_h=1234, epoch_room=None):
    return {"seq": seq, "room": room, "kind": "telemetry", "at": at, "body": {
        "v": 1, "interval_s": 300, "n": 10, "co2_ppm": [co2 - 100, co2, co2 + 100], "temp_c": [20.0, 20.5, 21.0],
        "projector": "on", "lamp_h": lamp_h, "ap": True}}


@pytest.fixture
def readings_client(store, metrics):
    records = [telemetry(4, "cm2-b", 1000.0, 700), telemetry(5, "ce1", 1000.0, 500),
               telemetry(6, "cm2-b", 1300.0, 900, lamp_h=1235), telemetry(7, "cm2-b", 1600.0, 1100, lamp_h=1236),
               {"seq": 8, "room": "gateway", "kind": "audit", "at": 1700.0,
                "body": {"v": 1, "action": "override.set", "scope": "school", "wifi": "never", "until": 2000}},
               {"seq": 9, "room": "gateway", "kind": "audit", "at": 1800.0,
                "body": {"v": 1, "action": "override.cleared", "scope": "school"}}]
    raw = json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-1", "records": records}).encode()
    result = store.store_batch(parse_batch(SCHOOL, raw), received_at=1900.0)
    assert (result.stored, result.telemetry, result.acked) == (6, 4, 9)
    with TestClient(create_app(store, CitySettings(token=TOKEN), metrics)) as c:
        yield c


def test_a_rooms_telemetry_series(readings_client):
    url = f"/api/schools/{SCHOOL}/rooms/cm2-b/telemetry"
    series = readings_client.get(url, headers=AUTH).json()
    assert [r["at"] for r in series] == [1000.0, 1300.0, 1600.0]  # oldest first
    assert series[0] == {"school": SCHOOL, "room": "cm2-b", "at": 1000.0, "interval_s": 300.0, "n": 10, "readings": {
        "co2_ppm": {"min": 600, "mean": 700, "max": 800}, "temp_c": {"min": 20.0, "mean": 20.5, "max": 21.0},
        "projector": "on", "lamp_h": 1234, "ap": True}}
    window = readings_client.get(url, params={"since": 1300, "until": 1600}, headers=AUTH).json()
    assert [r["at"] for r in window] == [1300.0]
    assert [r["at"] for r in readings_client.get(url, params={"limit": 2}, headers=AUTH).json()] == [1300.0, 1600.0]
    assert readings_client.get(f"/api/schools/{SCHOOL}/rooms/cp/telemetry", headers=AUTH).json() == []
    # Telemetry is stored as records too: acked, listed, never a room's live state.
    assert seqs(readings_client, kind="telemetry") == [7, 6, 5, 4]


def test_the_latest_reading_of_each_room(readings_client):
    latest = readings_client.get("/api/telemetry/latest", headers=AUTH).json()
    assert [(r["room"], r["at"], r["readings"]["lamp_h"]) for r in latest] == [("ce1", 1000.0, 1234),
                                                                              ("cm2-b", 1600.0, 1236)]
    assert readings_client.get("/api/telemetry/latest", params={"school": "other"}, headers=AUTH).json() == []
    assert len(readings_client.get("/api/telemetry/latest", params={"school": SCHOOL}, headers=AUTH).json()) == 2


def test_the_schools_audit_log(readings_client):
    audit = readings_client.get(f"/api/schools/{SCHOOL}/audit", headers=AUTH).json()
    assert [(a["seq"], a["body"]["action"]) for a in audit] == [(9, "override.cleared"), (8, "override.set")]
    assert audit[1]["body"]["wifi"] == "never" and audit[1]["epoch"] == ""
    assert [a["seq"] for a in readings_client.get(f"/api/schools/{SCHOOL}/audit", params={"until": 1750},
                                                  headers=AUTH).json()] == [8]


@pytest.mark.parametrize("path, query", [
    (f"/api/schools/{SCHOOL}/rooms/cm2-b/telemetry", {"since": -1}),
    (f"/api/schools/{SCHOOL}/rooms/cm2-b/telemetry", {"until": "noon"}),
    (f"/api/schools/{SCHOOL}/rooms/cm2-b/telemetry", {"limit": 0}),
    (f"/api/schools/{SCHOOL}/rooms/cm2-b/telemetry", {"sinec": 5}),
    ("/api/schools/UPPER/rooms/cm2-b/telemetry", {}),
    (f"/api/schools/{SCHOOL}/rooms/CM2/telemetry", {}),
    ("/api/telemetry/latest", {"room": "cm2-b"}),
    ("/api/telemetry/latest", {"school": "NOT A SCHOOL"}),
    (f"/api/schools/{SCHOOL}/audit", {"limit": 1001}),
    (f"/api/schools/{SCHOOL}/audit", {"kind": "audit"}),
    ("/api/schools/x%20y/audit", {}),
])
def test_the_new_routes_refuse_bad_and_unknown_queries(readings_client, path, query):
    assert readings_client.get(path, params=query, headers=AUTH).status_code == 422


@pytest.mark.parametrize("path", [f"/api/schools/{SCHOOL}/rooms/cm2-b/telemetry", "/api/telemetry/latest",
                                  f"/api/schools/{SCHOOL}/audit"])
def test_the_new_routes_need_the_token(readings_client, path):
    assert readings_client.get(path).status_code == 401
    assert readings_client.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
