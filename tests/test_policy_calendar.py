"""The school calendar against the real holiday packages (no mocks).

Dates are from the published calendars: 2025-2026 school year, zones A/B/C."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_gateway.policy.calendar import CalendarError, Closure, SchoolCalendar, SpecialDay

D = dt.date


@pytest.fixture(scope="module")
def zones():
    return {z: SchoolCalendar(z) for z in "ABC"}


def test_toussaint_2025_boundaries(zones):
    for cal in zones.values():
        assert cal.day(D(2025, 10, 17)).kind == "school_day"  # last Friday of class
        departure = cal.day(D(2025, 10, 18))  # "fin des cours samedi": class that morning where there is one
        assert (departure.open, departure.kind, departure.plan) == (True, "weekend", "saturday")
        assert "Toussaint" in departure.label
        first = cal.day(D(2025, 10, 20))
        assert (first.open, first.kind, first.reason, first.label) == (
            False, "school_holiday", "school_holiday", "Vacances de la Toussaint")
        assert not cal.day(D(2025, 11, 2)).open  # last holiday day (Sunday)
        back = cal.day(D(2025, 11, 3))
        assert (back.open, back.kind, back.reason, back.plan, back.covered) == (True, "school_day", None, "monday", True)


def test_winter_2026_differs_by_zone(zones):
    # Zone A: 7-22 Feb, zone B: 14 Feb-1 Mar, zone C: 21 Feb-8 Mar.
    monday_9 = {z: c.day(D(2026, 2, 9)).open for z, c in zones.items()}
    assert monday_9 == {"A": False, "B": True, "C": True}
    monday_16 = {z: c.day(D(2026, 2, 16)).open for z, c in zones.items()}
    assert monday_16 == {"A": False, "B": False, "C": True}
    monday_23 = {z: c.day(D(2026, 2, 23)).open for z, c in zones.items()}
    assert monday_23 == {"A": True, "B": False, "C": False}
    monday_2_march = {z: c.day(D(2026, 3, 2)).open for z, c in zones.items()}
    assert monday_2_march == {"A": True, "B": True, "C": False}
    assert zones["C"].day(D(2026, 3, 9)).kind == "school_day"
    assert zones["A"].day(D(2026, 2, 9)).label == "Vacances d'hiver"


def test_christmas_and_summer(zones):
    cal = zones["B"]
    assert cal.day(D(2025, 12, 19)).kind == "school_day"
    assert cal.day(D(2025, 12, 22)).label == "Vacances de Noël"
    assert cal.day(D(2025, 12, 25)).kind == "public_holiday"  # Noël: public holiday wins for the label
    assert cal.day(D(2026, 1, 2)).kind == "school_holiday"
    assert cal.day(D(2026, 1, 5)).kind == "school_day"
    assert cal.day(D(2026, 7, 3)).kind == "school_day"
    summer = cal.day(D(2026, 7, 20))
    assert (summer.open, summer.label) == (False, "Vacances d'été")
    assert cal.day(D(2026, 7, 14)).kind == "public_holiday"


@pytest.mark.parametrize(
    "date, label",
    [
        (D(2026, 5, 1), "Fête du Travail"),
        (D(2026, 5, 8), "Fête de la Victoire"),
        (D(2026, 5, 14), "Ascension"),
        (D(2026, 5, 25), "Lundi de Pentecôte"),
        (D(2025, 11, 11), "Armistice"),
    ],
)
def test_public_holidays(zones, date, label):
    for cal in zones.values():
        info = cal.day(date)
        assert (info.open, info.kind, info.reason, info.label, info.plan) == (
            False, "public_holiday", "public_holiday", label, None)


def test_pont_de_l_ascension_2026_filled(zones):
    # vacances-scolaires-france 0.12 lacks the 2023-2026 bridges; the national
    # calendar has no class on Friday 15 May 2026.
    for cal in zones.values():
        info = cal.day(D(2026, 5, 15))
        assert (info.open, info.kind, info.label) == (False, "school_holiday", "Pont de l'Ascension")
        assert cal.day(D(2026, 5, 13)).kind == "school_day"  # Wednesday: departure after class
        assert cal.day(D(2026, 5, 18)).kind == "school_day"


def test_alsace_moselle_extra_days():
    plain, alsace = SchoolCalendar("B"), SchoolCalendar("B", alsace_moselle=True)
    good_friday = D(2026, 4, 3)  # zone B spring holidays start on 4 April
    assert plain.day(good_friday).kind == "school_day"
    assert (alsace.day(good_friday).open, alsace.day(good_friday).label) == (False, "Vendredi saint")
    # 26 December is in the Christmas holidays anyway: what changes is the reason.
    assert plain.day(D(2025, 12, 26)).kind == "school_holiday"
    assert (alsace.day(D(2025, 12, 26)).kind, alsace.day(D(2025, 12, 26)).label) == ("public_holiday", "Saint-Étienne")
    # Beyond the holiday data, 26 December 2030 (Thursday) shows it alone.
    assert plain.day(D(2030, 12, 26)).open
    assert not alsace.day(D(2030, 12, 26)).open


def test_weekends_are_open_with_their_plan(zones):
    cal = zones["A"]
    sat, sun = cal.day(D(2026, 1, 10)), cal.day(D(2026, 1, 11))
    assert (sat.open, sat.kind, sat.plan, sat.label) == (True, "weekend", "saturday", None)
    assert (sun.open, sun.kind, sun.plan) == (True, "weekend", "sunday")
    wednesday = cal.day(D(2026, 1, 7))
    assert (wednesday.kind, wednesday.plan) == ("school_day", "wednesday")


def test_closures_by_school_and_room():
    bridge = Closure(D(2026, 1, 12), D(2026, 1, 13), "Formation des enseignants")
    works = Closure(D(2026, 1, 14), D(2026, 1, 16), "Travaux", rooms=frozenset({"cm1"}))
    cal = SchoolCalendar("A", closures=(bridge, works))
    for room in (None, "cm1", "cp"):
        info = cal.day(D(2026, 1, 13), room)
        assert (info.open, info.kind, info.reason, info.label) == (False, "closure", "closure", "Formation des enseignants")
    assert cal.day(D(2026, 1, 14), "cm1").reason == "closure"
    assert cal.day(D(2026, 1, 14), "cp").open
    assert cal.day(D(2026, 1, 14)).open  # the school as a whole is open
    assert cal.day(D(2026, 1, 17), "cm1").kind == "weekend"  # end is inclusive, the day after is not closed


def test_special_days_precedence():
    special = (
        SpecialDay(D(2026, 1, 17), "Journée portes ouvertes", "monday"),  # a Saturday
        SpecialDay(D(2026, 1, 20), "Sortie scolaire", "closed", rooms=frozenset({"ce2"})),
        SpecialDay(D(2026, 1, 22), "Rattrapage", "wednesday"),
        SpecialDay(D(2026, 1, 22), "Classe verte", "closed", rooms=frozenset({"cm2"})),
        SpecialDay(D(2026, 5, 1), "Fête de l'école", "friday"),  # public holiday: loses
        SpecialDay(D(2026, 2, 10), "Stage de réussite", "tuesday", rooms=frozenset({"cm2"})),  # zone A holidays
    )
    closure = Closure(D(2026, 1, 19), D(2026, 1, 23), "Grève", rooms=frozenset({"cm1"}))
    cal = SchoolCalendar("A", closures=(closure,), special_days=special)

    saturday = cal.day(D(2026, 1, 17), "cp")
    assert (saturday.open, saturday.kind, saturday.plan, saturday.label) == (True, "special_day", "monday", "Journée portes ouvertes")
    tuesday = cal.day(D(2026, 1, 20), "ce2")
    assert (tuesday.open, tuesday.reason, tuesday.plan) == (False, "special_day_closed", None)
    assert cal.day(D(2026, 1, 20), "cp").kind == "school_day"
    # A room's own special day beats the school's; the school's beats a closure.
    assert cal.day(D(2026, 1, 22), "cm2").reason == "special_day_closed"
    assert cal.day(D(2026, 1, 22), "cm1").plan == "wednesday"
    assert cal.day(D(2026, 1, 21), "cm1").reason == "closure"
    assert cal.day(D(2026, 5, 1)).kind == "public_holiday"
    assert cal.day(D(2026, 2, 10), "cm2").plan == "tuesday"
    assert cal.day(D(2026, 2, 10), "cp").kind == "school_holiday"


def test_closure_beats_public_holiday_and_school_holiday():
    cal = SchoolCalendar("C", closures=(Closure(D(2026, 4, 30), D(2026, 5, 4), "Pont du 1er mai"),))
    assert cal.day(D(2026, 5, 1)).kind == "closure"
    assert cal.day(D(2026, 4, 30)).kind == "closure"  # zone C spring holidays: closure still names it
    assert cal.day(D(2026, 5, 4)).kind == "closure"


def test_coverage(zones):
    for cal in zones.values():
        first, last = cal.coverage()
        assert first < D(2000, 1, 1) and D(2027, 9, 1) < last < D(2031, 1, 1)
        assert cal.day(last).covered and not cal.day(last + dt.timedelta(days=1)).covered
    cal = SchoolCalendar("A", closures=(Closure(D(2031, 2, 3), D(2031, 2, 3), "Journée pédagogique"),))
    beyond = cal.day(D(2031, 2, 4))
    assert (beyond.open, beyond.kind, beyond.covered) == (True, "school_day", False)
    closed = cal.day(D(2031, 2, 3))
    assert (closed.open, closed.kind, closed.covered) == (False, "closure", False)
    assert not cal.day(D(2031, 5, 1)).open  # public holidays are computed, covered or not
    assert cal.day(D(2026, 3, 3)).covered


def test_next_closure_start():
    cal = SchoolCalendar("A")
    assert cal.next_closure_start(D(2025, 10, 13)) == D(2025, 10, 19)
    assert cal.next_closure_start(dt.datetime(2026, 5, 11, 16, 30)) == D(2026, 5, 14)
    assert cal.next_closure_start(D(2026, 1, 5), horizon_days=5) is None


def test_bad_input():
    with pytest.raises(CalendarError, match="zone"):
        SchoolCalendar("D")
    with pytest.raises(CalendarError, match="before"):
        SchoolCalendar("A", closures=(Closure(D(2026, 1, 2), D(2026, 1, 1), "x"),))
    with pytest.raises(CalendarError, match="plan"):
        SchoolCalendar("A", special_days=(SpecialDay(D(2026, 1, 2), "x", "mercredi"),))
    with pytest.raises(CalendarError, match="rooms"):
        SchoolCalendar("A", closures=(Closure(D(2026, 1, 1), D(2026, 1, 1), "x", rooms=frozenset()),))
    with pytest.raises(CalendarError, match="different plans"):
        SchoolCalendar("A", special_days=(SpecialDay(D(2026, 1, 2), "x", "monday"), SpecialDay(D(2026, 1, 2), "y", "closed")))
    with pytest.raises(TypeError):
        SchoolCalendar("A").day(dt.datetime(2026, 1, 5, 8, 0))


@settings(max_examples=300, deadline=None)
@given(
    date=st.dates(D(1995, 1, 1), D(2035, 12, 31)),
    zone=st.sampled_from("ABC"),
    room=st.sampled_from([None, "cp", "cm2"]),
    alsace=st.booleans(),
)
def test_day_invariants(date, zone, room, alsace):
    info = SchoolCalendar(zone, alsace_moselle=alsace).day(date, room)
    assert info.date == date
    if info.open:
        assert info.reason is None
        assert info.plan in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        assert info.kind in ("school_day", "weekend", "special_day")
    else:
        assert info.plan is None and info.label
        assert info.reason in ("school_holiday", "public_holiday", "closure", "special_day_closed")
    if info.kind in ("school_day", "weekend"):
        assert info.plan == ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[date.weekday()]
    if not info.covered:
        assert info.kind != "school_holiday"
