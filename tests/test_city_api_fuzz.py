"""Every city API route, fuzzed from its own OpenAPI schema (schemathesis):
with the operator's token, over a store that holds ordinary records and the
nasty ones a database written before the city bounded values may hold
(bodies nested 900 and 5,000 deep, NaN, lone surrogates, integers of 5,000
digits, bodies that are not objects or not JSON, bytes that are not UTF-8),
no generated query, valid or not, makes a route answer 500; bad values
answer 422; every answer matches the schema."""

import json
import secrets
import sqlite3

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from cloud_bridge.api import create_app
from cloud_bridge.settings import CitySettings
from cloud_bridge.store import CityStore
from protocol.citylink import parse_batch

SCHOOL = "0341234a"
TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 40  # per route and generation mode

BIRTH = {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5120,
         "session": "idle", "ap": False, "devices": ["button"]}
ATTACH = {"v": 1, "boot": 7, "seq": 2, "uptime_ms": 6000, "time": 101, "type": "kit.attached",
          "data": {"kit": "air-co2-01", "sensors": ["scd4x"]}}
# Body texts as an older city could have stored them (it wrote json.dumps
# with NaN allowed, and bounded nothing), and worse.
OLD_BODIES = [
    '{"x": ' + "[" * 900 + "]" * 900 + "}",  # json reads it, the API's serializer cannot write it
    '{"x": ' + "[" * 5000 + "]" * 5000 + "}",  # json cannot read it
    '{"x": NaN, "y": Infinity}',
    '{"x": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"x": ' + "9" * 5000 + "}",
    '{"x": 100000000000000000000000000000}',
    "[1, 2]",
    "null",
    '"text"',
    "{not json",
    "",
]


def fill(store: CityStore) -> None:
    records = [
        {"seq": 1, "room": "cm2-b", "kind": "state", "at": 100.0, "body": BIRTH},
        {"seq": 2, "room": "cm2-b", "kind": "evt", "at": 101.0, "body": ATTACH},
        {"seq": 3, "room": "gateway", "kind": "decision", "at": 102.0, "body": {"grant": True}},
        {"seq": 4, "room": "cm2-b", "kind": "telemetry", "at": 103.0, "body": {
            "v": 1, "interval_s": 300, "n": 10, "co2_ppm": [612, 745.5, 903], "projector": "on", "odd": [1, "x", None]}},
        {"seq": 5, "room": "gateway", "kind": "audit", "at": 104.0, "body": {"override": "closed", "room": "cm2-b"}},
    ]
    raw = json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-1", "records": records}).encode()
    store.store_batch(parse_batch(SCHOOL, raw), received_at=103.0)
    store.set_gateway_state(SCHOOL, True, "gw-1", 104.0)
    # Straight into the file, as an older version or another program left it.
    db = sqlite3.connect(store.path, isolation_level=None)
    for i, body in enumerate(OLD_BODIES, start=10):
        db.execute("INSERT INTO records (school, seq, room, kind, at, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (SCHOOL, i, "ce1", "evt", 200.0 + i, body, 300.0))
    db.execute("INSERT INTO records (school, seq, room, kind, at, body, received_at) "
               "VALUES (?, 99, 'ce1', 'ack', 1e308, CAST(x'7b2278223a22ff227d' AS TEXT), -1.5)", (SCHOOL,))
    db.execute("INSERT INTO rooms (school, room, online, boot, last_seen, session, ap, fw, board, live_seq) "
               "VALUES ('0679999z', 'ce1', 1, 9223372036854775807, -1e308, 'odd', 1, CAST(x'ff00fe' AS TEXT), '', 5)")
    db.execute("INSERT INTO schools (school, gateway, online, last_seen, acked) "
               "VALUES ('0679999z', NULL, NULL, NULL, 0)")
    db.execute("INSERT INTO kits (kit, school, room, attached, sensors, since, last_seen, boot) "
               "VALUES ('weather', '0679999z', 'ce1', 1, '{not a list', 1.0, 2.0, NULL)")
    db.execute("INSERT INTO kits (kit, school, room, attached, sensors, since, last_seen, boot) "
               "VALUES ('light-01', '0679999z', 'ce1', 0, '[1, \"bh1750\", null]', 1.0, 2.0, 3)")
    db.close()


@pytest.fixture(scope="module")
def city_app(tmp_path_factory):
    store = CityStore(str(tmp_path_factory.mktemp("city") / "city.db"))
    fill(store)
    yield create_app(store, CitySettings(token=TOKEN))
    store.close()


ROUTES = [("GET", "/api/status"), ("GET", "/api/records"), ("GET", "/api/kits"), ("GET", "/healthz"),
          ("GET", "/metrics"), ("GET", "/api/schools/{school}/rooms/{room}/telemetry"),
          ("GET", "/api/telemetry/latest"), ("GET", "/api/schools/{school}/audit")]


@pytest.fixture(scope="module")
def city_schema(city_app):
    # The token is given with every call (below), so the security header is
    # not one of the generated (or broken) parameters.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    return schemathesis.openapi.from_asgi("/openapi.json", city_app, config=config, headers=AUTH)


def test_every_route_is_fuzzed(city_schema):
    operations = [result.ok() for result in city_schema.get_all_operations()]
    assert sorted((op.method.upper(), op.path) for op in operations) == sorted(ROUTES)


# Valid queries everywhere; invalid ones where there is a parameter to break.
CASES = [(method, path, GenerationMode.POSITIVE) for method, path in ROUTES] + [
    ("GET", "/api/records", GenerationMode.NEGATIVE), ("GET", "/api/kits", GenerationMode.NEGATIVE),
    ("GET", "/api/schools/{school}/rooms/{room}/telemetry", GenerationMode.NEGATIVE),
    ("GET", "/api/telemetry/latest", GenerationMode.NEGATIVE),
    ("GET", "/api/schools/{school}/audit", GenerationMode.NEGATIVE)]


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{path}-{mode.value}" for _, path, mode in CASES])
def test_no_generated_request_makes_a_route_fail(city_schema, method, path, mode):
    # Valid queries (positive) and invalid ones (negative), each with the
    # token: the checks include "not a server error" and "the answer matches
    # the schema"; invalid values must be refused (422).
    operation = city_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case):
        if mode is GenerationMode.POSITIVE and case.query:
            # An opaque cursor is only valid as the API gave it: a generated one
            # is refused (422), as tests/test_city_api.py checks.
            case.query.pop("cursor", None)
        response = case.call_and_validate(headers=AUTH)
        assert response.status_code != 500

    run()


def test_the_stored_oddities_are_answered_not_failed(city_app):
    with TestClient(city_app) as client:
        records = client.get("/api/records", params={"limit": 1000}, headers=AUTH)
        assert records.status_code == 200
        bodies = {r["seq"]: r["body"] for r in records.json()["records"]}
        assert bodies[1] == BIRTH
        assert all(set(bodies[seq]) == {"unreadable"} for seq in range(10, 10 + len(OLD_BODIES)))
        assert bodies[99] == {"x": "\ufffd"}  # bytes that are not UTF-8, replaced
        status = client.get("/api/status", headers=AUTH)
        assert status.status_code == 200
        kits = {k["kit"]: k for k in client.get("/api/kits", headers=AUTH).json()}
        assert kits["weather"]["sensors"] == [] and kits["light-01"]["sensors"] == ["bh1750"]
        assert client.get("/api/records", params={"limit": "1e3"}, headers=AUTH).status_code == 422
        refused = client.get("/api/records", params={"kind": "tele"}, headers=AUTH)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "kind"]
