"""Loading the policy part of school.toml: defaults, the example file, and
errors that name the file, the key (and line) and what was expected."""

from __future__ import annotations

import tomllib
from datetime import time
from pathlib import Path

import pytest

from edge_gateway.policy.config import (
    DEFAULT_PERIOD_TYPES,
    POLICY_KEYS,
    ROOM_KEYS,
    PolicyConfigError,
    load_policy,
    load_policy_file,
)
from edge_gateway.policy.model import Period

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "school.toml"
MINIMAL = '[policy]\nzone = "B"\n\n[rooms.cm1]\nwifi = "allowed"\n'


def load(text: str, **kw):
    return load_policy(tomllib.loads(text), source="school.toml", text=text, **kw)


def error(text: str) -> str:
    with pytest.raises(PolicyConfigError) as e:
        load(text)
    return str(e.value)


def test_defaults():
    policy = load(MINIMAL)
    assert policy.zone == "B" and policy.timezone == "Europe/Paris" and not policy.alsace_moselle
    assert (policy.grace_s, policy.ap_cap_s, policy.min_session_s, policy.offline_max_s) == (120, 7200, 300, 2700)
    assert set(policy.period_types) == set(DEFAULT_PERIOD_TYPES)
    classe = policy.period_types["classe"]
    assert classe.sessions and classe.ap and classe.max_s == 5400
    assert not policy.period_types["dejeuner"].sessions and not policy.period_types["accueil"].sessions
    assert not policy.period_types["periscolaire"].ap and policy.period_types["periscolaire"].max_s == 3600
    monday = policy.week["monday"]
    assert [(p.start, p.end, p.type) for p in monday] == [
        (time(8, 20), time(8, 30), "accueil"),
        (time(8, 30), time(11, 45), "classe"),
        (time(11, 45), time(13, 30), "dejeuner"),
        (time(13, 30), time(16, 30), "classe"),
        (time(16, 30), time(18, 30), "periscolaire"),
    ]
    assert policy.week["wednesday"] == (Period(time(8), time(18), "centre_loisirs"),)
    assert policy.week["saturday"] == policy.week["sunday"] == ()
    room = policy.rooms["cm1"]
    assert room.wifi_allowed and room.projector and room.profile == "elementaire"


def test_policy_is_immutable():
    policy = load(MINIMAL)
    with pytest.raises(AttributeError):  # frozen dataclass: FrozenInstanceError
        policy.zone = "A"
    with pytest.raises(TypeError):
        policy.rooms["x"] = None


def test_example_file_loads():
    policy = load_policy_file(EXAMPLE)
    assert policy.zone == "C" and policy.commune == "Montpellier"
    assert policy.rooms["tps-ps"].wifi == "never" and policy.rooms["cm2-b"].wifi_allowed
    assert policy.week["tuesday"] == policy.week["monday"]
    assert policy.holiday_periods and policy.closures and policy.special_days
    # The gateway's own keys are left to the gateway; the policy's are listed.
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    gateway_keys = {"school", "school_name", "gateway_id", "db", "fleet", "broker", "clock", "history", "city", "school_broker", "city_broker", "http", "session", "rooms"}
    assert set(data) <= gateway_keys | set(POLICY_KEYS)
    for spec in data["rooms"].values():
        assert set(spec) <= {"wifi", "sessions"} | set(ROOM_KEYS)


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('[rooms.a]\n', "policy", "missing table"),
        ('[policy]\nzone = "D"\n[rooms.a]\n', "policy.zone", 'expected one of: "A", "B", "C"; got "D"'),
        ('[policy]\n[rooms.a]\n', "policy.zone", "missing"),
        ('[policy]\nzone = "A"\ntimezone = "Europe/Pariss"\n[rooms.a]\n', "policy.timezone", "IANA time zone"),
        ('[policy]\nzone = "A"\nzonne = "A"\n[rooms.a]\n', "policy.zonne", "unknown key"),
        ('[policy]\nzone = "A"\nap_cap_s = 20000\n[rooms.a]\n', "policy.ap_cap_s", "integer 60..14400"),
        ('[policy]\nzone = "A"\n', "rooms", "missing table"),
        ('[policy]\nzone = "A"\n[rooms.a]\nwifi = "yes"\n', "rooms.a.wifi", 'got "yes"'),
        ('[policy]\nzone = "A"\n[rooms.a]\nprofile = "lycee"\n', "rooms.a.profile", '"maternelle"'),
        ('[policy]\nzone = "A"\n[rooms.a]\nprofile = "tps"\nwifi = "allowed"\n', "rooms.a.wifi", "children under three"),
        ('[policy]\nzone = "A"\n[rooms.a]\nequipment = ["tv"]\n', "rooms.a.equipment[0]", '"projector"'),
        ('[policy]\nzone = "A"\n[rooms.a]\ncolour = 1\n', "rooms.a.colour", "unknown key"),
        ('[policy]\nzone = "A"\n[rooms.A]\n', "rooms.A", "a-z"),
        ('[policy]\nzone = "A"\n[rooms.a]\n[period_types.x]\nsessions = true\nmax_s = 30\n', "period_types.x.max_s", "60..14400"),
        ('[policy]\nzone = "A"\n[rooms.a]\n[period_types.x]\nap = true\n', "period_types.x.ap", "sessions = true"),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[week.monday]\nperiods = [{start="08:30", end="08:00", type="classe"}]\n',
            "week.monday.periods[0].end",
            "after start 08:30",
        ),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[week.monday]\nperiods = [{start="8h30", end="11:00", type="classe"}]\n',
            "week.monday.periods[0].start",
            '"HH:MM"',
        ),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[week.monday]\nperiods = [{start="08:30", end="11:00", type="cours"}]\n',
            "week.monday.periods[0].type",
            'unknown period type "cours"',
        ),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[week.monday]\nperiods = [\n  {start="08:30", end="11:00", type="classe"},\n'
            '  {start="10:30", end="12:00", type="dejeuner"},\n]\n',
            "week.monday.periods[1]",
            "overlaps periods[0]",
        ),
        ('[policy]\nzone = "A"\n[rooms.a]\n[week.lundi]\nperiods = []\n', "week.lundi", "unknown key"),
        ('[policy]\nzone = "A"\n[rooms.a]\n[week.tuesday]\nsame_as = "monday"\n', "week.tuesday.same_as", "another weekday"),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[week.friday]\nperiods = [{start="22:00", end="02:00", type="classe"}]\n'
            '[week.saturday]\nperiods = [{start="01:00", end="03:00", type="classe"}]\n',
            "week.friday.periods[0].end",
            "overnight = true",
        ),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[[closures]]\nstart = 2026-03-10\nend = 2026-03-01\nlabel = "x"\n',
            "closures[0].end",
            "on or after start 2026-03-10",
        ),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[[closures]]\nstart = 2026-03-10\nlabel = "x"\nrooms = ["b"]\n',
            "closures[0].rooms[0]",
            'unknown room "b"',
        ),
        ('[policy]\nzone = "A"\n[rooms.a]\n[[closures]]\nstart = "10/03/2026"\nlabel = "x"\n', "closures[0].start", "YYYY-MM-DD"),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[[special_days]]\ndate = 2026-03-11\nlabel = "x"\nplan = "mardi"\n',
            "special_days[0].plan",
            '"tuesday"',
        ),
        (
            '[policy]\nzone = "A"\n[rooms.a]\n[[ical]]\nfile = "edt.ics"\nroom_map = { "CM1" = "b" }\n',
            "ical[0].room_map.CM1",
            'unknown room "b"',
        ),
        ('[policy]\nzone = "A"\n[rooms.a]\n[[ical]]\nfile = "missing.ics"\n', "ical[0].file", "cannot read"),
    ],
)
def test_errors_name_file_key_and_expectation(text, key, expected):
    message = error(text)
    assert message.startswith("school.toml"), message
    assert f" {key}: " in message, message
    assert expected in message, message


def test_error_gives_the_line_when_it_can():
    text = '[policy]\nzone = "A"\n\n[rooms.a]\nwifi = "yes"\n'
    assert error(text).startswith("school.toml:5: rooms.a.wifi:")
    text = '[policy]\nzone = "A"\n[rooms.a]\n[[closures]]\nstart = 2026-03-10\nlabel = "x"\n[[closures]]\nstart = 2026-03-10\nend = 2026-03-01\nlabel = "y"\n'
    assert error(text).startswith("school.toml:9: closures[1].end:")


def test_load_policy_file_reports_bad_toml(tmp_path):
    bad = tmp_path / "school.toml"
    bad.write_text("[policy\nzone = 1\n")
    with pytest.raises(PolicyConfigError, match="school.toml: not valid TOML"):
        load_policy_file(bad)
    with pytest.raises(PolicyConfigError, match="no such file"):
        load_policy_file(tmp_path / "nope.toml")


ICS = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:1
SUMMARY:Numerique CM1
DTSTART;TZID=Europe/Paris:20260302T100000
DTEND;TZID=Europe/Paris:20260302T110000
RRULE:FREQ=WEEKLY;BYDAY=MO
LOCATION:Salle CM1
END:VEVENT
BEGIN:VEVENT
UID:2
SUMMARY:Fermeture travaux
DTSTART;VALUE=DATE:20260310
DTEND;VALUE=DATE:20260311
END:VEVENT
END:VCALENDAR
"""


def test_ical_timetable_and_closures(tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from edge_gateway.policy.engine import calendar_for, decide

    (tmp_path / "edt.ics").write_bytes(ICS)
    text = MINIMAL + '[[ical]]\nfile = "edt.ics"\nroom_map = { "Salle CM1" = "cm1" }\n'
    policy = load_policy(tomllib.loads(text), source="school.toml", base_dir=str(tmp_path))
    assert [(s.room, s.weekday, s.start, s.period_type) for s in policy.timetable] == [("cm1", 0, time(10), "classe")]
    cal = calendar_for(policy)
    paris = ZoneInfo("Europe/Paris")
    # On Mondays the room's own timetable replaces the school week.
    assert decide(policy, cal, [], "cm1", datetime(2026, 3, 9, 10, 15, tzinfo=paris)).until == datetime(2026, 3, 9, 11, 0, tzinfo=paris)
    assert decide(policy, cal, [], "cm1", datetime(2026, 3, 9, 9, 0, tzinfo=paris)).reason == "no_period"
    assert decide(policy, cal, [], "cm1", datetime(2026, 3, 10, 9, 0, tzinfo=paris)).reason == "closure"
    assert decide(policy, cal, [], "cm1", datetime(2026, 3, 12, 9, 0, tzinfo=paris)).grant
