"""Every route of the gateway's web API, fuzzed from its own OpenAPI schema
(schemathesis, on hypothesis) against a running gateway: amqtt school
broker, real SQLite holding a board's events, an override and an audit
trail, the configuration read from a file (so a reload really reads it),
the director's token. Whatever the input: no 5xx, and a 2xx body is what
the schema says.

The schema's random rooms and times are rarely a configured room or a
moment the override rules accept, so two properties aim at the paths
behind: explanations for the school's rooms at any moment of the century,
in every written form, and overrides a director could plausibly type.

(One pytest test loops over the operations rather than schemathesis's
`from_fixture(...).parametrize()`: its lazy mode touches a pytest node
attribute that pytest 9 no longer has.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import response_schema_conformance

from devkit.testing import SCHOOL_TIME, Board, school_clock, wait_for
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from edge_gateway.overrides_input import EARLIEST_S, LATEST_S

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"
TOKEN = "director-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 100  # per route, valid and invalid inputs together
PARIS = ZoneInfo("Europe/Paris")
ROUTES = {"GET /api/rooms", "GET /api/events", "GET /api/policy/explain", "GET /api/policy/offline/{room}",
          "GET /api/overrides", "POST /api/overrides", "DELETE /api/overrides/{override_id}", "GET /api/audit",
          "POST /api/config/reload", "GET /healthz", "GET /metrics"}

CONFIG = """
school = "0341234a"
gateway_id = "gw-0341234a"
db = "gateway.sqlite"

[school_broker]
host = "127.0.0.1"
port = {port}

[policy]
zone = "C"

[rooms.cm2-b]
wifi = "allowed"

[rooms.cp-a]
wifi = "never"
"""


@pytest.fixture
def gateway(mosquitto, tmp_path):
    path = tmp_path / "school.toml"
    path.write_text(CONFIG.replace("{port}", str(mosquitto.port)).replace(
        'db = "gateway.sqlite"\n', f'db = "gateway.sqlite"\nfleet = "{mosquitto.fleet_file}"\n'))
    gw = Gateway(Config.load(path), clock=school_clock()).start()
    gw.config_path = str(path)
    board = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b", boot=3).connect()
    try:
        board.event("boot", {"reset_cause": "power"})
        board.cmd_for(board.request())
        board.publish("evt", b'{"oops": }')  # signed, not JSON
        wait_for(lambda: gw.metrics["accepted"].get("evt") == 2 and gw.metrics["rejected"].get("bad_json") == 1,
                 what="events stored")
        asyncio.run(gw.add_override(scope="room", room="cm2-b", effect="deny", who="direction", why="Évaluation",
                                    expires=gw.clock() + 3600, starts=None, ap=False, ap_only=False))
    finally:
        board.close()
    yield gw
    gw.stop()


@pytest.fixture
def app(gateway):
    return create_app(gateway, ApiSettings(token=TOKEN, viewer_token="viewer-token-0123456789",
                                           config_path=gateway.config_path))


def test_no_input_makes_a_route_fail(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= ROUTES  # none lost on the way
    for operation in operations:
        # valid inputs by the schema, and invalid ones (wrong types, out of bounds, missing)
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=cases)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def answers(case):
            response = case.call(headers=AUTH)
            unhealthy = case.path == "/healthz" and response.status_code == 503  # an answer, not a failure
            assert response.status_code < 500 or unhealthy, (case.method, case.formatted_path, case.query, case.body,
                                                             response.text[:500])
            if response.status_code < 300:
                case.validate_response(response, checks=[response_schema_conformance])

        answers()


# aimed properties ------------------------------------------------------------------------

FORMS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")
OFFSETS = ("", "Z", "+01:00", "+02:00", "-05:30", "+14:00")
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def written(moment: datetime, form: str, offset: str) -> str:
    return moment.strftime(form) + offset


def wall_times(lo: datetime, hi: datetime):
    """Wall-clock times as a person writes them, seconds at most."""
    return st.datetimes(min_value=lo, max_value=hi).map(lambda d: d.replace(microsecond=0))


def test_explain_answers_for_every_room_at_any_moment(app):
    client = TestClient(app)

    @given(room=st.sampled_from(["cm2-b", "cp-a"]),
           wall=st.one_of(wall_times(datetime(2000, 1, 2), datetime(2099, 12, 30)),
                          # the clock changes of a school year, to the minute
                          wall_times(datetime(2026, 10, 25, 1), datetime(2026, 10, 25, 4)),
                          wall_times(datetime(2027, 3, 28, 1), datetime(2027, 3, 28, 4))),
           form=st.sampled_from(FORMS), offset=st.sampled_from(OFFSETS))
    @SETTINGS
    def explains(room, wall, form, offset):
        text = written(wall, form, offset)
        r = client.get("/api/policy/explain", params={"room": room, "at": text}, headers=AUTH)
        assert r.status_code == 200, (text, r.text)
        at = r.json()["at"]
        wall = datetime.fromisoformat(text)  # what the text says, to its last written digit
        if offset:
            assert at == wall.timestamp()
            return
        # the school's wall time, read as the periods are: the first instant
        # the clock shows it, or the jump when it never shows
        shown = datetime.fromtimestamp(at, PARIS).replace(tzinfo=None)
        if wall.replace(tzinfo=PARIS).astimezone(UTC).astimezone(PARIS).replace(tzinfo=None) == wall:
            assert shown == wall, text
            assert datetime.fromtimestamp(at - 3600, PARIS).replace(tzinfo=None) != wall, (text, "not the first pass")
        else:
            assert shown == datetime.combine(wall.date(), datetime.min.time()).replace(hour=3), (text, "not the jump")

    explains()


def test_plausible_overrides_are_added_or_refused_with_a_reason(app, gateway):
    client = TestClient(app)
    now = datetime.fromisoformat(SCHOOL_TIME).replace(tzinfo=None)
    near = wall_times(now - timedelta(days=1), now + timedelta(days=16))
    moments = st.one_of(
        st.builds(written, near, st.sampled_from(FORMS), st.sampled_from(OFFSETS)),
        st.floats(gateway.clock() - 86400, gateway.clock() + 16 * 86400),
    )
    # mostly what a director means, now and then a slip (a name for a role,
    # a room that is not there, ap_only on an allow, a start after the end)
    parts = (
        st.one_of(st.fixed_dictionaries({"scope": st.just("room"), "room": st.sampled_from(["cm2-b", "cp-a", "nowhere"])}),
                  st.fixed_dictionaries({"scope": st.just("school")})),
        st.one_of(st.fixed_dictionaries({"effect": st.just("allow"), "ap": st.booleans()}),
                  st.fixed_dictionaries({"effect": st.just("deny"), "ap_only": st.booleans()})),
        st.one_of(st.fixed_dictionaries({"minutes": st.integers(1, 20 * 24 * 60)}),
                  st.fixed_dictionaries({"expires": moments})),
        st.fixed_dictionaries({"who": st.sampled_from(["direction", "direction", "mairie", "", "  ", "x" * 41]),
                               "why": st.one_of(st.sampled_from(["Exercice incendie", "Réunion des parents"]),
                                                st.text(max_size=250))},
                              optional={"starts": moments}),
        st.fixed_dictionaries({}, optional={"room": st.sampled_from(["cm2-b", "nowhere"]), "ap_only": st.booleans(),
                                            "starts": st.floats(EARLIEST_S, LATEST_S),
                                            "expires": st.floats(EARLIEST_S, LATEST_S)}),
    )
    bodies = st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})
    seen = {201: 0, 422: 0}

    @given(body=bodies, cancel=st.booleans())
    @SETTINGS
    def posts(body, cancel):
        r = client.post("/api/overrides", headers=AUTH, json=body)
        assert r.status_code in (201, 422), (body, r.text)
        seen[r.status_code] += 1
        if r.status_code == 422:
            detail = r.json()["detail"]
            # the gateway's sentence, or the API's list: each names a field
            messages = [detail] if isinstance(detail, str) else [e["msg"] for e in detail]
            assert all(any(f in m for f in OVERRIDE_FIELDS) for m in messages), detail
            return
        o = r.json()
        assert o["starts"] < o["expires"] <= o["starts"] + 14 * 86400
        if cancel:
            r = client.delete(f"/api/overrides/{o['id']}", params={"who": "direction"}, headers=AUTH)
            assert r.status_code == 200, r.text

    posts()
    assert seen[201] and seen[422], seen


OVERRIDE_FIELDS = {"scope", "room", "effect", "ap", "ap_only", "minutes", "starts", "expires", "who", "why"}
