"""Import a school's closures, special days and weekly timetable from iCalendar.

Directors keep their calendar in whatever tool the académie gives them and
export a `.ics` file; the gateway reads it at load. What is taken:

- an all-day event (DTSTART is a date) is a closure, DTEND being exclusive as
  RFC 5545 says; with CATEGORIES "special" or an X-PREAU-PLAN property it is a
  special day per date instead (plan "monday".."sunday" or "closed", from
  X-PREAU-PLAN or else from a category naming a plan);
- a timed event repeating every week (RRULE FREQ=WEEKLY, or FREQ=DAILY which
  some tools write for "every school day") is one timetable slot per day it
  repeats on, in the room its LOCATION names through the room map; times are
  taken in the school's time zone, so an 08:30 lesson stays 08:30 across DST.

Everything else is skipped with a warning naming the event, never an
exception: the file comes from outside, and one odd event must not stop the
school's whole policy from loading. Only a file that is not iCalendar at all
raises `IcalError`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

from .calendar import SPECIAL_PLANS, Closure, SpecialDay

_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_ROOM_SEPARATORS = re.compile(r"[,;/]")
# A multi-day special event becomes one SpecialDay per date; a year is more
# than any real "special" stretch and keeps a typo (2205 for 2025) cheap.
_MAX_SPECIAL_SPAN_DAYS = 366


@dataclass(frozen=True)
class TimetableSlot:
    room: str
    weekday: int  # 0 = Monday
    start: dt.time
    end: dt.time
    period_type: str
    label: str
    # The recurrence's own span (DTSTART's date, RRULE UNTIL): outside it the
    # slot does not exist, and a timetable that ended must not keep a room's
    # Wi-Fi period alive. None: unbounded. Not part of a slot's identity
    # (equality): two imports of the same weekly slot are the same slot.
    first: dt.date | None = field(default=None, compare=False)
    until: dt.date | None = field(default=None, compare=False)

    def on(self, day: dt.date) -> bool:
        return (self.first is None or self.first <= day) and (self.until is None or day <= self.until)


@dataclass
class IcalImport:
    closures: list[Closure] = field(default_factory=list)
    special_days: list[SpecialDay] = field(default_factory=list)
    slots: list[TimetableSlot] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class IcalError(ValueError):
    pass


class _Skip(Exception):
    """An event that cannot be used; the message says why."""


def import_ical(
    data: bytes,
    room_map: dict[str, str],
    source: str = "<ical>",
    tz: str = "Europe/Paris",
    period_types: frozenset[str] = frozenset({"class"}),
    default_type: str = "class",
) -> IcalImport:
    try:
        school_tz = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {tz!r}") from e
    rooms = _normalise_room_map(room_map)
    types = {t.casefold(): t for t in period_types}

    try:
        parsed = icalendar.Calendar.from_ical(data, multiple=True)
    except Exception as e:  # icalendar raises many types on garbage; all mean "not iCalendar"
        # The parser quotes the offending bytes; keep the message one line long.
        raise IcalError(f"{source}: not an iCalendar file ({str(e)[:120]})") from None
    if not parsed or any(getattr(c, "name", None) != "VCALENDAR" for c in parsed):
        raise IcalError(f"{source}: not an iCalendar file (no VCALENDAR)")

    result = IcalImport()
    for calendar in parsed:
        for event in calendar.walk("VEVENT"):
            name = _event_name(event)
            try:
                _import_event(event, name, rooms, school_tz, types, default_type, result)
            except _Skip as e:
                result.warnings.append(f"{source}: {name}: {e}; skipped")
            except Exception as e:  # untrusted input through a third-party parser
                result.warnings.append(f"{source}: {name}: unreadable ({type(e).__name__}: {e}); skipped")
    return result


def _normalise_room_map(room_map: dict[str, str]) -> dict[str, str]:
    rooms: dict[str, str] = {}
    for key, room in room_map.items():
        norm = key.strip().casefold()
        if norm in rooms and rooms[norm] != room:
            raise ValueError(f"room map: {key!r} maps to both {rooms[norm]!r} and {room!r}")
        rooms[norm] = room
    return rooms


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value).strip()


def _event_name(event: Any) -> str:
    parts = []
    try:
        summary = _text(event.get("SUMMARY"))
        uid = _text(event.get("UID"))
    except Exception:
        summary = uid = ""
    if summary:
        parts.append(repr(summary))
    if uid:
        parts.append(f"UID {uid}")
    return "event " + (" ".join(parts) if parts else "(no SUMMARY, no UID)")


def _categories(event: Any) -> list[str]:
    raw = event.get("CATEGORIES")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    found: list[str] = []
    for item in items:
        cats = getattr(item, "cats", None)
        if cats is None:
            found.extend(c.strip() for c in str(item).split(","))
        else:
            found.extend(str(c).strip() for c in cats)
    return [c for c in found if c]


def _value(event: Any, key: str) -> Any:
    prop = event.get(key)
    if prop is None:
        return None
    if isinstance(prop, list):
        raise _Skip(f"{key} given more than once")
    try:
        return prop.dt
    except ValueError as e:
        raise _Skip(f"bad {key} ({e})") from None


def _import_event(
    event: Any,
    name: str,
    rooms: dict[str, str],
    school_tz: ZoneInfo,
    types: dict[str, str],
    default_type: str,
    result: IcalImport,
) -> None:
    if _text(event.get("STATUS")).upper() == "CANCELLED":
        raise _Skip("cancelled")
    start = _value(event, "DTSTART")
    if start is None:
        raise _Skip("no DTSTART")
    label = _text(event.get("SUMMARY")) or _text(event.get("UID")) or "(sans titre)"
    if isinstance(start, dt.datetime):
        _import_timed(event, name, start, label, rooms, school_tz, types, default_type, result)
    elif isinstance(start, dt.date):
        _import_all_day(event, start, label, rooms, result, name)
    else:
        raise _Skip(f"DTSTART is not a date or date-time ({type(start).__name__})")


def _import_all_day(
    event: Any, start: dt.date, label: str, rooms: dict[str, str], result: IcalImport, name: str
) -> None:
    if event.get("RRULE") is not None:
        raise _Skip("recurring all-day events are not imported (give each closure its own event)")
    end_value = _value(event, "DTEND")
    duration = _value(event, "DURATION")
    if end_value is not None:
        if isinstance(end_value, dt.datetime) or not isinstance(end_value, dt.date):
            raise _Skip("DTSTART is a date but DTEND is not")
        if end_value < start:
            raise _Skip(f"DTEND {end_value} is before DTSTART {start}")
        # DTEND is exclusive; some tools write DTEND = DTSTART for one day.
        end = max(start, end_value - dt.timedelta(days=1))
    elif isinstance(duration, dt.timedelta):
        end = max(start, start + dt.timedelta(days=duration.days - 1))
    else:
        end = start

    scope = _all_day_rooms(event, rooms, result, name)
    plan = _special_plan(event)
    if plan is None:
        result.closures.append(Closure(start, end, label, scope))
        return
    span = (end - start).days + 1
    if span > _MAX_SPECIAL_SPAN_DAYS:
        raise _Skip(f"special day spans {span} days (at most {_MAX_SPECIAL_SPAN_DAYS})")
    for offset in range(span):
        result.special_days.append(SpecialDay(start + dt.timedelta(days=offset), label, plan, scope))


def _special_plan(event: Any) -> str | None:
    """The plan of a special day, None for an ordinary closure."""
    explicit = event.get("X-PREAU-PLAN")
    categories = [c.casefold() for c in _categories(event)]
    if explicit is None and "special" not in categories:
        return None
    if explicit is not None:
        plan = _text(explicit).casefold()
        if plan not in SPECIAL_PLANS:
            raise _Skip(f"X-PREAU-PLAN {plan!r} is not one of {', '.join(SPECIAL_PLANS)}")
        return plan
    named = [c for c in categories if c in SPECIAL_PLANS]
    if len(named) != 1:
        raise _Skip("special day needs its plan: X-PREAU-PLAN or one category among " + ", ".join(SPECIAL_PLANS))
    return named[0]


def _all_day_rooms(event: Any, rooms: dict[str, str], result: IcalImport, name: str) -> frozenset[str] | None:
    location = _text(event.get("LOCATION"))
    if not location:
        return None
    mapped, unmapped = _map_location(location, rooms)
    if not mapped:
        # Usually the school's address: the event is about the whole school.
        result.warnings.append(f"{name}: location {location!r} names no room; applied to the whole school")
        return None
    if unmapped:
        result.warnings.append(f"{name}: unknown room(s) {', '.join(map(repr, unmapped))} in location; ignored")
    return frozenset(mapped)


def _map_location(location: str, rooms: dict[str, str]) -> tuple[set[str], list[str]]:
    """Rooms a LOCATION names ("CM1", or "CM1, CM2"), and the parts that name none."""
    whole = rooms.get(location.strip().casefold())
    if whole is not None:
        return {whole}, []
    parts = [p.strip() for p in _ROOM_SEPARATORS.split(location) if p.strip()]
    mapped = {rooms[p.casefold()] for p in parts if p.casefold() in rooms}
    return mapped, [p for p in parts if p.casefold() not in rooms]


def _local(value: dt.datetime, school_tz: ZoneInfo) -> dt.datetime:
    # A floating time (no TZID, no Z) is the school's wall-clock time.
    if value.tzinfo is None:
        return value.replace(tzinfo=school_tz)
    return value.astimezone(school_tz)


def _import_timed(
    event: Any,
    name: str,
    start: dt.datetime,
    label: str,
    rooms: dict[str, str],
    school_tz: ZoneInfo,
    types: dict[str, str],
    default_type: str,
    result: IcalImport,
) -> None:
    rule = event.get("RRULE")
    if rule is None:
        raise _Skip("single timed events are not timetable slots")
    if isinstance(rule, list):
        raise _Skip("several RRULEs")
    if not isinstance(rule, dict):  # vBroken when icalendar could not parse it
        raise _Skip(f"unreadable RRULE {_text(rule)!r}")
    freq = [str(f).upper() for f in rule.get("FREQ", [])]
    if freq not in (["WEEKLY"], ["DAILY"]):
        raise _Skip(f"RRULE FREQ={','.join(freq) or '?'} is not weekly")
    interval = rule.get("INTERVAL", [1])
    if list(interval) != [1]:
        raise _Skip(f"RRULE INTERVAL={interval[0]} repeats less than weekly; a weekly slot would grant too much")
    if "COUNT" in rule:
        raise _Skip("RRULE COUNT is not supported; give UNTIL instead")
    for unsupported in ("BYSETPOS", "BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYHOUR", "BYMINUTE"):
        if unsupported in rule:
            raise _Skip(f"RRULE {unsupported} is not a weekly timetable")

    end_value = _value(event, "DTEND")
    duration = _value(event, "DURATION")
    if end_value is not None:
        if not isinstance(end_value, dt.datetime):
            raise _Skip("DTSTART is a date-time but DTEND is not")
        local_end = _local(end_value, school_tz)
    elif isinstance(duration, dt.timedelta):
        local_end = _local(start, school_tz) + duration
    else:
        raise _Skip("no DTEND or DURATION")
    local_start = _local(start, school_tz)
    if local_end <= local_start:
        raise _Skip("ends before it starts")
    if local_end.date() != local_start.date():
        raise _Skip("ends on another day than it starts")

    # BYDAY names days in DTSTART's own time zone; converting to the school's
    # zone may move the start across midnight, and the days move with it.
    shift = (local_start.date() - start.date()).days
    byday = rule.get("BYDAY")
    if byday:
        days = []
        for raw in byday:
            m = _BYDAY.match(str(raw).strip().upper())
            if m is None:
                raise _Skip(f"RRULE BYDAY value {str(raw)!r} is not a weekday")
            if m.group(1):
                raise _Skip(f"RRULE BYDAY {str(raw)!r} names an nth weekday, not every week")
            days.append(_WEEKDAYS.index(m.group(2)))
    elif freq == ["DAILY"]:
        days = list(range(7))
    else:
        days = [start.weekday()]

    location = _text(event.get("LOCATION"))
    if not location:
        raise _Skip("no LOCATION naming the room")
    mapped, unmapped = _map_location(location, rooms)
    if not mapped:
        raise _Skip(f"location {location!r} is not in the room map")
    if unmapped:
        result.warnings.append(f"{name}: unknown room(s) {', '.join(map(repr, unmapped))} in location; ignored")

    until = None
    if rule.get("UNTIL"):
        last = rule["UNTIL"][0]
        until = _local(last, school_tz).date() if isinstance(last, dt.datetime) else last
    if event.get("EXDATE") is not None:
        result.warnings.append(f"{name}: EXDATE ignored; the slot also holds on the excluded dates")

    period_type = default_type
    for category in _categories(event):
        known = types.get(category.casefold())
        if known is not None:
            period_type = known
            break

    tzid = event["DTSTART"].params.get("TZID") if hasattr(event["DTSTART"], "params") else None
    if start.tzinfo is None and tzid:
        result.warnings.append(f"{name}: unknown time zone {tzid!r}; times taken as {school_tz.key}")

    for room in sorted(mapped):
        for weekday in sorted({(d + shift) % 7 for d in days}):
            result.slots.append(
                TimetableSlot(room, weekday, local_start.time(), local_end.time(), period_type, label,
                              first=local_start.date(), until=until)
            )
