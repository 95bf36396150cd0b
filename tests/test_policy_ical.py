"""iCalendar import: files built with the real `icalendar` library, no mocks."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_gateway.policy.calendar import Closure, SpecialDay
from edge_gateway.policy.ical import IcalError, IcalImport, TimetableSlot, import_ical

PARIS = ZoneInfo("Europe/Paris")
ROOMS = {"Salle CM1": "cm1", " cp ": "cp", "CE2": "ce2"}
UTC = dt.UTC


def event(uid: str, summary: str | None = None, **props) -> icalendar.Event:
    e = icalendar.Event()
    e.add("uid", uid)
    if summary is not None:
        e.add("summary", summary)
    for key, value in props.items():
        e.add(key.replace("_", "-"), value)
    return e


def ics(*events: icalendar.Event) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Préau tests//FR")
    cal.add("version", "2.0")
    for e in events:
        cal.add_component(e)
    return cal.to_ical()


def weekly(uid, start, end, byday=("MO", "TH"), location="Salle CM1", **props):
    return event(uid, "Informatique", dtstart=start, dtend=end, location=location,
                 rrule={"freq": "weekly", "byday": list(byday)}, **props)


def test_all_day_closure_end_is_inclusive():
    data = ics(
        event("pont", "Pont de l'Ascension", dtstart=dt.date(2026, 5, 15), dtend=dt.date(2026, 5, 16)),
        event("stage", "Stage", dtstart=dt.date(2026, 2, 2), dtend=dt.date(2026, 2, 7), location="salle cm1"),
        event("one", "Une journée", dtstart=dt.date(2026, 3, 6)),  # no DTEND: one day
    )
    result = import_ical(data, ROOMS)
    assert result.closures == [
        Closure(dt.date(2026, 5, 15), dt.date(2026, 5, 15), "Pont de l'Ascension", None),
        Closure(dt.date(2026, 2, 2), dt.date(2026, 2, 6), "Stage", frozenset({"cm1"})),
        Closure(dt.date(2026, 3, 6), dt.date(2026, 3, 6), "Une journée", None),
    ]
    assert result.warnings == [] and result.slots == [] and result.special_days == []


def test_all_day_location_that_names_no_room_is_the_whole_school():
    data = ics(event("a", "Journée pédagogique", dtstart=dt.date(2026, 3, 9), location="École Jules Ferry, Lyon"))
    result = import_ical(data, ROOMS, source="ecole.ics")
    assert result.closures[0].rooms is None
    assert len(result.warnings) == 1 and "École Jules Ferry" in result.warnings[0]


def test_special_days():
    data = ics(
        event("jpo", "Portes ouvertes", dtstart=dt.date(2026, 3, 14), dtend=dt.date(2026, 3, 15),
              categories=["special"], x_preau_plan="Monday"),
        event("sortie", "Sortie", dtstart=dt.date(2026, 3, 17), dtend=dt.date(2026, 3, 19),
              categories=["Special", "closed"], location="CE2"),
        event("bad", "Sans plan", dtstart=dt.date(2026, 3, 20), categories=["special"]),
    )
    result = import_ical(data, ROOMS, source="ecole.ics")
    assert result.special_days == [
        SpecialDay(dt.date(2026, 3, 14), "Portes ouvertes", "monday", None),
        SpecialDay(dt.date(2026, 3, 17), "Sortie", "closed", frozenset({"ce2"})),
        SpecialDay(dt.date(2026, 3, 18), "Sortie", "closed", frozenset({"ce2"})),
    ]
    assert result.closures == []
    assert len(result.warnings) == 1
    assert "ecole.ics" in result.warnings[0] and "UID bad" in result.warnings[0] and "plan" in result.warnings[0]


def test_weekly_slots_with_mapped_room_and_period_type():
    data = ics(weekly("info", dt.datetime(2025, 9, 1, 8, 30, tzinfo=PARIS), dt.datetime(2025, 9, 1, 10, 0, tzinfo=PARIS),
                      categories=["Numérique", "Atelier"]))
    result = import_ical(data, ROOMS, period_types=frozenset({"class", "atelier"}))
    assert result.slots == [
        TimetableSlot("cm1", 0, dt.time(8, 30), dt.time(10, 0), "atelier", "Informatique"),
        TimetableSlot("cm1", 3, dt.time(8, 30), dt.time(10, 0), "atelier", "Informatique"),
    ]
    default = import_ical(data, ROOMS)
    assert {s.period_type for s in default.slots} == {"class"}


def test_unmapped_room_and_single_timed_event_are_warnings():
    data = ics(
        weekly("gym", dt.datetime(2025, 9, 2, 14, 0, tzinfo=PARIS), dt.datetime(2025, 9, 2, 15, 0, tzinfo=PARIS),
               byday=["TU"], location="Gymnase"),
        event("once", "Réunion", dtstart=dt.datetime(2025, 9, 4, 17, 0, tzinfo=PARIS),
              dtend=dt.datetime(2025, 9, 4, 18, 0, tzinfo=PARIS), location="CE2"),
        event("nostart", "Sans date", location="CE2"),
        event("fortnight", "Piscine", dtstart=dt.datetime(2025, 9, 5, 9, 0, tzinfo=PARIS),
              dtend=dt.datetime(2025, 9, 5, 10, 0, tzinfo=PARIS), location="CE2",
              rrule={"freq": "weekly", "interval": 2, "byday": ["FR"]}),
    )
    result = import_ical(data, ROOMS, source="edt.ics")
    assert result.slots == []
    assert len(result.warnings) == 4
    gym, once, nostart, fortnight = result.warnings
    assert "UID gym" in gym and "Gymnase" in gym
    assert "'Réunion'" in once and "single timed events are not timetable slots" in once
    assert "UID nostart" in nostart and "DTSTART" in nostart
    assert "INTERVAL" in fortnight
    assert all(w.startswith("edt.ics: ") for w in result.warnings)


def test_dst_local_time_is_kept():
    winter = weekly("w", dt.datetime(2026, 1, 5, 8, 30, tzinfo=PARIS), dt.datetime(2026, 1, 5, 9, 30, tzinfo=PARIS), byday=["MO"])
    summer = weekly("s", dt.datetime(2026, 6, 1, 8, 30, tzinfo=PARIS), dt.datetime(2026, 6, 1, 9, 30, tzinfo=PARIS), byday=["MO"])
    floating = weekly("f", dt.datetime(2026, 6, 1, 8, 30), dt.datetime(2026, 6, 1, 9, 30), byday=["MO"])
    result = import_ical(ics(winter, summer, floating), ROOMS)
    assert [(s.start, s.end) for s in result.slots] == [(dt.time(8, 30), dt.time(9, 30))] * 3


def test_utc_times_are_converted():
    # 07:30Z is 08:30 in Paris in winter (UTC+1), 06:30Z is 08:30 in summer (UTC+2).
    winter = weekly("w", dt.datetime(2026, 1, 5, 7, 30, tzinfo=UTC), dt.datetime(2026, 1, 5, 8, 30, tzinfo=UTC), byday=["MO"])
    summer = weekly("s", dt.datetime(2026, 6, 1, 6, 30, tzinfo=UTC), dt.datetime(2026, 6, 1, 7, 30, tzinfo=UTC), byday=["MO"])
    ny = weekly("ny", dt.datetime(2026, 1, 4, 20, 0, tzinfo=ZoneInfo("America/New_York")),
                dt.datetime(2026, 1, 4, 20, 45, tzinfo=ZoneInfo("America/New_York")), byday=["SU"])
    result = import_ical(ics(winter, summer, ny), ROOMS)
    assert [(s.weekday, s.start, s.end) for s in result.slots] == [
        (0, dt.time(8, 30), dt.time(9, 30)),
        (0, dt.time(8, 30), dt.time(9, 30)),
        (0, dt.time(2, 0), dt.time(2, 45)),  # Sunday 20:00 in New York is Monday 02:00 in Paris
    ]


def test_text_file_from_a_real_exporter():
    # Hand-written the way Thunderbird and school ENTs export: TZID, folded lines, CRLF.
    text = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//ENT//FR\r\n"
        b"BEGIN:VEVENT\r\nUID:1@ent\r\nSUMMARY:Anglais\r\nLOCATION:CE2\r\n"
        b"DTSTART;TZID=Europe/Paris:20250902T133000\r\nDTEND;TZID=Europe/Paris:20250902T143000\r\n"
        b"RRULE:FREQ=WEEKLY;UNTIL=20260703T215959Z;BYDAY=TU,FR\r\nEND:VEVENT\r\n"
        b"BEGIN:VEVENT\r\nUID:2@ent\r\nSUMMARY:Vacances (ENT)\r\nDTSTART;VALUE=DATE:20251018\r\n"
        b"DTEND;VALUE=DATE:20251103\r\nEND:VEVENT\r\n"
        b"END:VCALENDAR\r\n"
    )
    result = import_ical(text, ROOMS)
    assert [(s.room, s.weekday, s.start) for s in result.slots] == [("ce2", 1, dt.time(13, 30)), ("ce2", 4, dt.time(13, 30))]
    assert result.closures == [Closure(dt.date(2025, 10, 18), dt.date(2025, 11, 2), "Vacances (ENT)")]


@pytest.mark.parametrize("data", [b"", b"hello", b"\xff\xfe\x00garbage", b"BEGIN:VEVENT\r\nEND:VEVENT\r\n", b"<html></html>"])
def test_not_icalendar(data):
    with pytest.raises(IcalError, match="ecole.ics"):
        import_ical(data, ROOMS, source="ecole.ics")


def test_broken_property_is_a_warning():
    data = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:notadate\r\nEND:VEVENT\r\n"
        b"BEGIN:VEVENT\r\nUID:y\r\nDTSTART;TZID=Europe/Paris:20250901T083000\r\nDTEND;TZID=Europe/Paris:20250901T093000\r\n"
        b"RRULE:FREQ=WEEKLY;BYDAY=MO,XX\r\nLOCATION:CE2\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    result = import_ical(data, ROOMS)
    assert result.slots == [] and len(result.warnings) == 2
    assert "UID x" in result.warnings[0] and "UID y" in result.warnings[1]


def _sample() -> bytes:
    return ics(
        weekly("info", dt.datetime(2025, 9, 1, 8, 30, tzinfo=PARIS), dt.datetime(2025, 9, 1, 10, 0, tzinfo=PARIS)),
        event("pont", "Pont", dtstart=dt.date(2026, 5, 15), dtend=dt.date(2026, 5, 16)),
        event("jpo", "JPO", dtstart=dt.date(2026, 3, 14), categories=["special"], x_preau_plan="monday"),
    )


def _outcome(data: bytes) -> None:
    try:
        result = import_ical(data, ROOMS, source="fuzz.ics")
    except IcalError as e:
        assert "fuzz.ics" in str(e)
        return
    assert isinstance(result, IcalImport)
    assert all(isinstance(w, str) for w in result.warnings)
    for c in result.closures:
        assert c.start <= c.end
    for s in result.slots:
        assert 0 <= s.weekday <= 6 and s.start < s.end


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    _outcome(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_valid_file(draw):
    data = bytearray(_sample())
    for _ in range(draw.draw(st.integers(1, 8))):
        pos = draw.draw(st.integers(0, len(data) - 1))
        action = draw.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            data[pos] = draw.draw(st.integers(0, 255))
        elif action == "delete":
            del data[pos:pos + draw.draw(st.integers(1, 20))]
        else:
            data[pos:pos] = draw.draw(st.sampled_from([b":", b";", b"\r\n", b"=", b"Z", b"T", b"99", b"BEGIN:VEVENT\r\n", b"END:VEVENT\r\n"]))
        if not data:
            data = bytearray(b"x")
    _outcome(bytes(data))


def test_a_recurrence_exists_only_between_its_first_date_and_until():
    """A weekly slot that ended in 2020, or starts next term, is no slot today:
    it must not keep (or open early) a room's Wi-Fi period."""
    data = ics(
        event("old", "Club", dtstart=dt.datetime(2019, 9, 2, 17, 0, tzinfo=PARIS),
              dtend=dt.datetime(2019, 9, 2, 18, 0, tzinfo=PARIS), location="CE2",
              rrule={"freq": "weekly", "byday": ["MO"], "until": dt.datetime(2020, 6, 30, tzinfo=UTC)}),
        event("count", "Atelier", dtstart=dt.datetime(2026, 9, 7, 9, 0, tzinfo=PARIS),
              dtend=dt.datetime(2026, 9, 7, 10, 0, tzinfo=PARIS), location="CE2",
              rrule={"freq": "weekly", "byday": ["MO"], "count": 10}),
    )
    result = import_ical(data, ROOMS)
    [slot] = result.slots
    assert (slot.first, slot.until) == (dt.date(2019, 9, 2), dt.date(2020, 6, 30))
    assert slot.on(dt.date(2020, 6, 29)) and not slot.on(dt.date(2026, 3, 9)) and not slot.on(dt.date(2019, 8, 26))
    assert any("COUNT" in w for w in result.warnings)  # skipped, said


def test_default_type_applies_even_when_a_type_is_called_class():
    data = ics(weekly("w", dt.datetime(2026, 1, 5, 9, 0, tzinfo=PARIS), dt.datetime(2026, 1, 5, 10, 0, tzinfo=PARIS)))
    result = import_ical(data, ROOMS, period_types=frozenset({"class", "atelier"}), default_type="atelier")
    assert {s.period_type for s in result.slots} == {"atelier"}
