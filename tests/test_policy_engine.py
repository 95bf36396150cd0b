"""The lesson-time policy engine on concrete school weeks: what a director
would check by hand. Times are wall time in Europe/Paris."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from edge_gateway.policy.config import load_policy
from edge_gateway.policy.engine import (
    OFFLINE_MAX_BYTES,
    REASONS,
    calendar_for,
    decide,
    encode_offline,
    local_to_utc,
    offline_policy,
    windows,
)
from edge_gateway.policy.model import Override

PARIS = ZoneInfo("Europe/Paris")
UTC = UTC

BASE = """
[policy]
zone = "C"
commune = "Montpellier"

[rooms.cm2-b]
wifi = "allowed"

[rooms.ms-a]
profile = "maternelle"
wifi = "never"

[rooms.bcd]
sessions = false
"""


def school(extra: str = "", base: str = BASE):
    policy = load_policy(tomllib.loads(base + extra), source="test.toml")
    return policy, calendar_for(policy)


def at(text: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS, fold=fold)


def ask(policy, cal, when, room="cm2-b", overrides=()):
    return decide(policy, cal, list(overrides), room, when if isinstance(when, datetime) else at(when))


def override(effect, start, end, *, room="cm2-b", ap=False, ap_only=False, why="sortie"):
    return Override(
        id=f"o-{effect}-{start}",
        scope="room" if room else "school",
        room=room,
        effect=effect,
        ap=ap,
        ap_only=ap_only,
        starts=at(start),
        expires=at(end),
        who="directrice",
        why=why,
    )


# --- the default four-day week ---------------------------------------------


def test_default_week_class_time_grants_projector_and_access_point():
    policy, cal = school()
    d = ask(policy, cal, "2026-03-10 09:00")  # a Tuesday in term
    assert d.grant and d.ap and d.projector
    assert d.period == "classe"
    assert d.until == at("2026-03-10 10:30")  # max 5400 s
    assert d.duration_s == 5400 and d.grace_s == 120
    assert d.reason == "granted" and "ap_on" in d.warnings
    assert "10h30" in d.text_fr and "10:30" in d.text_en


def test_grant_ends_with_the_period_not_after():
    policy, cal = school()
    d = ask(policy, cal, "2026-03-10 15:40")
    assert d.grant and d.until == at("2026-03-10 16:30") and d.duration_s == 50 * 60


def test_lunch_is_denied():
    policy, cal = school()
    d = ask(policy, cal, "2026-03-10 12:15")
    assert not d.grant and d.reason == "period_no_sessions" and d.period == "dejeuner"
    assert "déjeuner" in d.text_fr and "lunch" in d.text_en


def test_morning_reception_and_night_are_denied():
    policy, cal = school()
    assert ask(policy, cal, "2026-03-10 08:25").reason == "period_no_sessions"
    assert ask(policy, cal, "2026-03-10 07:00").reason == "no_period"
    assert ask(policy, cal, "2026-03-10 19:00").reason == "no_period"


def test_periscolaire_without_access_point():
    policy, cal = school()
    d = ask(policy, cal, "2026-03-10 17:00")
    assert d.grant and not d.ap and d.projector
    assert d.until == at("2026-03-10 18:00")  # max 3600 s
    assert "ap_not_in_period" in d.warnings
    assert "Sans Wi-Fi" in d.text_fr and "Without Wi-Fi" in d.text_en


def test_wednesday_leisure_centre_without_access_point():
    policy, cal = school()
    d = ask(policy, cal, "2026-03-11 10:00")
    assert d.grant and not d.ap and d.period == "centre_loisirs"


def test_wifi_never_room_gets_a_session_without_access_point():
    policy, cal = school()
    d = ask(policy, cal, "2026-03-10 09:00", room="ms-a")
    assert d.grant and not d.ap and "wifi_never_room" in d.warnings


def test_wifi_never_school():
    policy, cal = school(base=BASE.replace('commune = "Montpellier"', 'commune = "Montpellier"\nwifi_never = true'))
    d = ask(policy, cal, "2026-03-10 09:00")
    assert d.grant and not d.ap and "wifi_never_school" in d.warnings


def test_unknown_and_disabled_rooms():
    policy, cal = school()
    assert ask(policy, cal, "2026-03-10 09:00", room="cp-z").reason == "unknown_room"
    assert ask(policy, cal, "2026-03-10 09:00", room="bcd").reason == "room_disabled"


def test_access_point_cap_bounds_the_session():
    policy, cal = school(base=BASE.replace('commune = "Montpellier"', "ap_cap_s = 3600"))
    d = ask(policy, cal, "2026-03-10 08:30")
    assert d.grant and d.ap and d.duration_s == 3600


# --- other weeks ---------------------------------------------------------------

FOUR_AND_A_HALF = """
[week.monday]
periods = [
  { start = "08:30", end = "11:45", type = "classe" },
  { start = "11:45", end = "13:45", type = "dejeuner" },
  { start = "13:45", end = "15:45", type = "classe" },
  { start = "15:45", end = "16:30", type = "periscolaire" },
]
[week.tuesday]
same_as = "monday"
[week.wednesday]
periods = [
  { start = "08:30", end = "11:30", type = "classe" },
  { start = "13:30", end = "18:00", type = "centre_loisirs" },
]
[week.thursday]
same_as = "monday"
[week.friday]
same_as = "monday"
"""


def test_four_and_a_half_day_week_wednesday_morning_class():
    policy, cal = school(FOUR_AND_A_HALF)
    d = ask(policy, cal, "2026-03-11 09:00")
    assert d.grant and d.ap and d.until == at("2026-03-11 10:30")
    assert ask(policy, cal, "2026-03-11 11:10").until == at("2026-03-11 11:30")
    assert ask(policy, cal, "2026-03-11 12:00").reason == "no_period"
    afternoon = ask(policy, cal, "2026-03-11 14:00")
    assert afternoon.grant and not afternoon.ap
    assert ask(policy, cal, "2026-03-12 15:50").period == "periscolaire"


def test_saturday_morning_class():
    policy, cal = school(FOUR_AND_A_HALF + '[week.saturday]\nperiods = [{ start = "08:30", end = "11:30", type = "classe" }]\n')
    d = ask(policy, cal, "2026-03-14 09:00")
    assert d.grant and d.ap and d.until == at("2026-03-14 10:30")
    assert ask(policy, cal, "2026-03-14 12:00").reason == "no_period"
    assert ask(policy, cal, "2026-03-15 09:00").reason == "no_period"  # Sunday


# --- calendar ------------------------------------------------------------------


def test_school_holidays_follow_the_zone():
    # Winter 2026: zone A from 7 February, zone C from 21 February.
    policy_a, cal_a = school(base=BASE.replace('zone = "C"', 'zone = "A"'))
    policy_c, cal_c = school()
    d = ask(policy_a, cal_a, "2026-02-10 09:00")
    assert not d.grant and d.reason == "school_holiday"
    assert "hiver" in d.text_fr.lower() and "(school holidays)" in d.text_en
    assert ask(policy_c, cal_c, "2026-02-10 09:00").grant
    assert ask(policy_c, cal_c, "2026-02-24 09:00").reason == "school_holiday"


def test_public_holiday():
    policy, cal = school()
    d = ask(policy, cal, "2026-05-01 09:00")
    assert not d.grant and d.reason == "public_holiday" and "Fête du Travail" in d.text_fr


def test_alsace_moselle_good_friday():
    base_b = BASE.replace('zone = "C"', 'zone = "B"')
    policy, cal = school(base=base_b)
    am_policy, am_cal = school(base=base_b.replace('commune = "Montpellier"', 'commune = "Strasbourg"\nalsace_moselle = true'))
    good_friday = "2026-04-03 09:00"
    assert ask(policy, cal, good_friday).grant
    d = ask(am_policy, am_cal, good_friday)
    assert not d.grant and d.reason == "public_holiday"


def test_closure_from_config_for_one_room():
    policy, cal = school(
        '[[closures]]\nstart = 2026-03-16\nend = 2026-03-20\nlabel = "Classe de découverte"\nrooms = ["cm2-b"]\n'
    )
    d = ask(policy, cal, "2026-03-17 09:00")
    assert not d.grant and d.reason == "closure" and "Classe de découverte" in d.text_fr
    assert ask(policy, cal, "2026-03-17 09:00", room="ms-a").grant


def test_calendar_not_covered_is_said_and_closures_still_apply():
    policy, cal = school('[[closures]]\nstart = 2031-03-10\nend = 2031-03-10\nlabel = "Travaux"\n')
    d = ask(policy, cal, "2031-03-11 09:00")
    assert d.grant and "calendar_not_covered" in d.warnings
    assert "ne couvre pas" in d.text_fr and "does not cover" in d.text_en
    closed = ask(policy, cal, "2031-03-10 09:00")
    assert not closed.grant and closed.reason == "closure" and "calendar_not_covered" in closed.warnings


def test_holiday_leisure_centre_never_has_the_access_point():
    policy, cal = school(
        '[week.holidays]\nperiods = [{ start = "08:00", end = "18:00", type = "centre_loisirs" }]\n'
        '[period_types.centre_loisirs]\nsessions = true\nap = true\nmax_s = 3600\n'
    )
    d = ask(policy, cal, "2026-02-24 10:00")  # zone C winter holidays
    assert d.grant and not d.ap and "ap_closed_day" in d.warnings
    assert ask(policy, cal, "2026-02-24 19:00").reason == "school_holiday"


# --- boundaries, midnight, DST, clock jumps -------------------------------------


def test_request_exactly_at_period_start_is_granted_and_at_its_end_denied():
    policy, cal = school()
    start = ask(policy, cal, "2026-03-10 08:30")
    assert start.grant and start.period == "classe"
    end = ask(policy, cal, "2026-03-10 11:45")
    assert not end.grant and end.reason == "period_no_sessions"


def test_too_close_to_the_end_is_denied_not_a_two_minute_session():
    policy, cal = school()
    d = ask(policy, cal, "2026-03-10 11:42")
    assert not d.grant and d.reason == "too_close_to_end" and "5 min" in d.text_fr
    assert ask(policy, cal, "2026-03-10 11:40").duration_s == 300


NIGHT = """
[period_types.soiree]
sessions = true
projector = true
max_s = 14400
label_fr = "soirée"
label_en = "evening event"

[week.friday]
periods = [{ start = "22:00", end = "02:00", type = "soiree", overnight = true }]
"""


def test_session_crossing_midnight_ends_the_next_day():
    policy, cal = school(NIGHT)
    d = ask(policy, cal, "2026-03-13 23:30")  # Friday
    assert d.grant and d.until == at("2026-03-14 02:00") and d.duration_s == 9000
    assert "le 14/03" in d.text_fr and "on 14/03" in d.text_en
    after_midnight = ask(policy, cal, "2026-03-14 01:00")
    assert after_midnight.grant and after_midnight.until == at("2026-03-14 02:00")
    assert ask(policy, cal, "2026-03-14 02:00").reason == "no_period"


def test_a_closure_the_next_day_cuts_the_night_session_at_midnight():
    policy, cal = school(NIGHT + '[[closures]]\nstart = 2026-03-14\nlabel = "Fermeture"\n')
    d = ask(policy, cal, "2026-03-13 23:00")
    assert d.grant and d.until == at("2026-03-14 00:00")
    assert ask(policy, cal, "2026-03-14 01:00").reason == "closure"


DST_NIGHT = """
[period_types.soiree]
sessions = true
projector = true
max_s = 14400
[week.sunday]
periods = [{ start = "01:00", end = "04:00", type = "soiree" }]
[[special_days]]
date = 2026-10-25
label = "Nuit des étoiles"
plan = "sunday"
"""


def test_spring_forward_day_has_23_hours():
    policy, cal = school(DST_NIGHT)
    d = ask(policy, cal, "2026-03-29 01:30")
    # 01:30 winter time to 04:00 summer time: 90 real minutes, not 150.
    assert d.grant and d.duration_s == 5400 and d.until == at("2026-03-29 04:00")
    assert d.until.utcoffset() == timedelta(hours=2)
    # A wall time that never shows (02:30) is the jump itself.
    assert local_to_utc(date(2026, 3, 29), time(2, 30), "Europe/Paris") == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    ws = [w for w in windows(policy, cal, [], "cm2-b", at("2026-03-29 00:00"), at("2026-03-30 00:00")) if w.sessions]
    assert [(w.end - w.start) for w in ws] == [timedelta(hours=2)]


def test_fall_back_day_has_25_hours_and_the_repeated_hour_counts_twice():
    policy, cal = school(DST_NIGHT)  # 25 October 2026 is in the Toussaint holidays: a special day opens it
    ws = [w for w in windows(policy, cal, [], "cm2-b", at("2026-10-25 00:00"), at("2026-10-26 00:00")) if w.sessions]
    assert [(w.end - w.start) for w in ws] == [timedelta(hours=4)]
    first = ask(policy, cal, at("2026-10-25 02:30", fold=0))  # summer time, first pass
    second = ask(policy, cal, at("2026-10-25 02:30", fold=1))  # winter time, second pass
    assert first.grant and second.grant
    assert first.until == second.until == datetime(2026, 10, 25, 3, 0, tzinfo=UTC)
    assert first.duration_s == 9000 and second.duration_s == 5400


def test_clock_jump_gives_the_decision_of_the_new_time():
    policy, cal = school()
    before = ask(policy, cal, "2026-03-10 09:00")
    jumped_forward = ask(policy, cal, "2026-03-10 12:00")
    jumped_back = ask(policy, cal, "2026-03-10 08:31")
    assert before.grant and not jumped_forward.grant and jumped_forward.reason == "period_no_sessions"
    assert jumped_back.grant and jumped_back.duration_s == 5400
    assert jumped_back.until == at("2026-03-10 10:01")
    # The same instant written in another offset decides the same.
    assert ask(policy, cal, datetime(2026, 3, 10, 8, 0, tzinfo=UTC)) == ask(policy, cal, "2026-03-10 09:00")


def test_naive_time_is_refused():
    policy, cal = school()
    with pytest.raises(ValueError):
        decide(policy, cal, [], "cm2-b", datetime(2026, 3, 10, 9, 0))


# --- overrides -------------------------------------------------------------------


def test_deny_override_beats_allow():
    policy, cal = school()
    ovs = [
        override("allow", "2026-03-10 08:00", "2026-03-10 18:00", ap=True),
        override("deny", "2026-03-10 09:00", "2026-03-10 10:00", room=None, why="exercice incendie"),
    ]
    d = ask(policy, cal, "2026-03-10 09:30", overrides=ovs)
    assert not d.grant and d.reason == "override_deny" and "exercice incendie" in d.text_fr
    # Before the deny starts, a grant stops when it begins.
    assert ask(policy, cal, "2026-03-10 08:40", overrides=ovs).until == at("2026-03-10 09:00")


def test_allow_override_opens_a_session_outside_periods():
    policy, cal = school()
    ovs = [override("allow", "2026-03-10 18:30", "2026-03-10 20:00", ap=True, why="réunion des parents")]
    d = ask(policy, cal, "2026-03-10 18:45", overrides=ovs)
    assert d.grant and d.ap and d.period is None and d.until == at("2026-03-10 19:45")
    assert "override_allow" in d.warnings and "réunion des parents" in d.text_fr
    assert not ask(policy, cal, "2026-03-10 18:45", room="ms-a", overrides=ovs).grant  # another room


def test_allow_override_never_brings_the_access_point_to_a_wifi_never_room_or_a_holiday():
    policy, cal = school()
    ovs = [override("allow", "2026-03-10 08:00", "2026-03-10 18:00", room=None, ap=True)]
    d = ask(policy, cal, "2026-03-10 17:00", room="ms-a", overrides=ovs)
    assert d.grant and not d.ap
    holiday = [override("allow", "2026-02-24 08:00", "2026-02-24 18:00", ap=True)]
    h = ask(policy, cal, "2026-02-24 10:00", overrides=holiday)
    assert h.grant and not h.ap and "ap_closed_day" in h.warnings


def test_allow_override_with_ap_in_periscolaire():
    policy, cal = school()
    ovs = [override("allow", "2026-03-10 16:30", "2026-03-10 17:30", ap=True)]
    d = ask(policy, cal, "2026-03-10 16:40", overrides=ovs)
    assert d.grant and d.ap and d.until == at("2026-03-10 17:30")


def test_deny_ap_only_keeps_the_session_without_access_point():
    policy, cal = school()
    ovs = [override("deny", "2026-03-10 08:00", "2026-03-10 12:00", ap_only=True)]
    d = ask(policy, cal, "2026-03-10 09:00", overrides=ovs)
    assert d.grant and not d.ap and "override_deny_ap" in d.warnings


def test_override_validation():
    with pytest.raises(ValueError):
        override("allow", "2026-03-10 10:00", "2026-03-10 09:00")
    with pytest.raises(ValueError):
        Override("x", "room", None, "allow", False, False, at("2026-03-10 09:00"), at("2026-03-10 10:00"), "", "")
    with pytest.raises(ValueError):
        override("allow", "2026-03-10 09:00", "2026-03-10 10:00", ap_only=True)


# --- offline policy ----------------------------------------------------------------


def test_offline_policy_format_and_windows():
    policy, cal = school()
    doc = offline_policy(policy, cal, [], "cm2-b", at("2026-03-10 20:00"))
    assert set(doc) == {"v", "start", "max_s", "ap", "cap_s", "until", "windows"}
    assert doc["v"] == 1 and doc["start"] is True and doc["ap"] is False
    assert doc["max_s"] == 2700 and doc["cap_s"] == 7200
    assert doc["until"] == int(at("2026-03-12 20:00").timestamp())
    ts = lambda s: int(at(s).timestamp())  # noqa: E731
    assert doc["windows"] == [
        [ts("2026-03-11 08:00"), ts("2026-03-11 18:00"), 3600, 0],  # Wednesday leisure centre
        [ts("2026-03-12 08:30"), ts("2026-03-12 11:45"), 5400, 1],
        [ts("2026-03-12 13:30"), ts("2026-03-12 16:30"), 5400, 1],
        [ts("2026-03-12 16:30"), ts("2026-03-12 18:30"), 3600, 0],
    ]
    raw = encode_offline(doc)
    assert json.loads(raw) == doc and b" " not in raw


def test_offline_policy_merges_adjacent_windows_with_the_same_rule():
    policy, cal = school(
        '[week.monday]\nperiods = [{ start = "08:30", end = "10:00", type = "classe" }, '
        '{ start = "10:00", end = "11:30", type = "classe" }]\n'
    )
    doc = offline_policy(policy, cal, [], "cm2-b", at("2026-03-09 07:00"), horizon_h=12)
    assert doc["windows"] == [[int(at("2026-03-09 08:30").timestamp()), int(at("2026-03-09 11:30").timestamp()), 5400, 1]]


def test_offline_policy_never_gives_the_access_point_where_decide_would_not():
    policy, cal = school()
    doc = offline_policy(policy, cal, [], "ms-a", at("2026-03-10 07:00"))
    assert doc["windows"] and all(w[3] == 0 for w in doc["windows"])
    assert offline_policy(policy, cal, [], "bcd", at("2026-03-10 07:00"))["start"] is False


def test_offline_policy_shrinks_its_horizon_to_fit_1024_bytes():
    policy, cal = school()
    # Fifty alternating 10-minute permissions: far too many windows for 1 KB.
    ovs = [
        override("allow", f"2026-03-10 {18 + i // 6:02d}:{(i % 6) * 10:02d}", f"2026-03-10 {18 + i // 6:02d}:{(i % 6) * 10 + 5:02d}", ap=i % 2 == 0)
        for i in range(36)
    ]
    doc = offline_policy(policy, cal, ovs, "cm2-b", at("2026-03-10 07:00"))
    raw = encode_offline(doc)
    assert len(raw) <= OFFLINE_MAX_BYTES
    assert doc["until"] == doc["windows"][-1][1] < int(at("2026-03-12 07:00").timestamp())


def test_every_reason_has_both_languages():
    for code, (fr, en) in REASONS.items():
        assert fr and en and fr != en, code


def test_an_ended_ical_timetable_no_longer_opens_wifi(tmp_path):
    """A Monday 17:00-18:00 club that ended in June 2020: in 2026, Monday
    17:10 is the school week's after-school time again, without Wi-Fi."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", "-//test//")
    cal.add("version", "2.0")
    club = icalendar.Event()
    club.add("uid", "club")
    club.add("dtstart", datetime(2019, 9, 2, 17, 0, tzinfo=PARIS))
    club.add("dtend", datetime(2019, 9, 2, 18, 0, tzinfo=PARIS))
    club.add("location", "CM2 B")
    club.add("rrule", {"freq": "weekly", "byday": ["MO"], "until": datetime(2020, 6, 30, tzinfo=UTC)})
    cal.add_component(club)
    (tmp_path / "club.ics").write_bytes(cal.to_ical())
    text = ('[policy]\nzone = "C"\n[rooms.cm2-b]\nwifi = "allowed"\n'
            '[[ical]]\nfile = "club.ics"\nroom_map = { "CM2 B" = "cm2-b" }\n')
    policy = load_policy(tomllib.loads(text), "school.toml", str(tmp_path), text)
    cal_ = calendar_for(policy)
    in_2020 = decide(policy, cal_, (), "cm2-b", datetime(2020, 3, 2, 17, 10, tzinfo=PARIS))
    in_2026 = decide(policy, cal_, (), "cm2-b", datetime(2026, 3, 9, 17, 10, tzinfo=PARIS))
    assert in_2020.grant and in_2020.ap  # the club's class-type slot, while it existed
    assert in_2026.grant and not in_2026.ap  # périscolaire: sessions without Wi-Fi
