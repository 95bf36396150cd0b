"""The school calendar: for a date (and a room), is the school open, and if not, why.

Sources, in order of precedence (see `SchoolCalendar.day`):

- the school's own special days and closures (its config or an iCalendar import);
- French public holidays from `holidays` (language "fr"); Alsace-Moselle
  schools also close on Good Friday and 26 December (local law kept from the
  German period), which `holidays` models as subdivision "57" ("6AE", Alsace,
  gives the same days; there is no "67"/"68");
- school holidays by académie zone from `vacances-scolaires-france`.

Facts about `vacances-scolaires-france` (0.12) this module relies on, checked
against its data:

- it lists every holiday *day*, both ends included: Toussaint 2025 runs from
  Saturday 18 October to Sunday 2 November; Monday 3 November, the day classes
  resume, is not a holiday day;
- outside the years it knows it raises, and inside a known year but past its
  last entry it silently answers "not a holiday" (September to December 2028
  in 0.12), so coverage is computed from its data: the first and last holiday
  day it knows for the zone. Beyond that, only the school's own closures
  decide, and `DayInfo.covered` is False so the engine can say so;
- it lacks the national "Pont de l'Ascension" for 2023 to 2026; those years
  are filled from the `holidays` package's school calendar (same zone), and
  only where `vacances-scolaires-france` has no bridge for that year.

The official calendar (arrêté fixing the school calendar) says "le départ en
vacances a lieu après la classe": when a holiday block starts on a Saturday,
that Saturday is the "fin des cours" day and schools with Saturday-morning
classes still teach. Such a Saturday is therefore an ordinary open weekend day
here (labelled as the departure day); the week plan decides whether any period
exists on it.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import holidays as _holidays
from vacances_scolaires_france import SchoolHolidayDates

WEEKDAY_PLANS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SPECIAL_PLANS = WEEKDAY_PLANS + ("closed",)
ZONES = ("A", "B", "C")

_ONE_DAY = dt.timedelta(days=1)
_ASCENSION_BRIDGE = "Pont de l'Ascension"


@dataclass(frozen=True)
class Closure:
    start: dt.date  # inclusive
    end: dt.date  # inclusive
    label: str
    rooms: frozenset[str] | None = None  # None = the whole school


@dataclass(frozen=True)
class SpecialDay:
    date: dt.date
    label: str
    plan: str  # a weekday plan name ("monday".."sunday") or "closed"
    rooms: frozenset[str] | None = None


@dataclass(frozen=True)
class DayInfo:
    date: dt.date
    open: bool
    kind: str  # "school_day" | "weekend" | "school_holiday" | "public_holiday" | "closure" | "special_day"
    reason: str | None  # "school_holiday" | "public_holiday" | "closure" | "special_day_closed"; None when open
    label: str | None
    plan: str | None  # weekday plan to apply when open; None when closed
    covered: bool  # False when the school-holiday data does not cover this date


class CalendarError(ValueError):
    pass


@functools.cache
def _holiday_data() -> SchoolHolidayDates:
    # Parses a 14 000-row CSV: once per process, not per calendar.
    return SchoolHolidayDates()


@functools.cache
def _school_holidays(zone: str) -> tuple[dict[dt.date, str], dict[dt.date, str], dt.date, dt.date]:
    """(holiday days -> name, departure Saturdays -> name, first covered day, last covered day)."""
    data = _holiday_data()
    key = data.zone_key(zone)
    days = {day: row["nom_vacances"] for day, row in data.data.items() if row[key]}
    first, last = min(days), max(days)

    years_with_bridge = {day.year for day, name in days.items() if name == _ASCENSION_BRIDGE}
    school = _holidays.France(
        subdiv=f"Zone {zone}", categories="school", language="fr", years=range(first.year, last.year + 1)
    )
    for day, name in school.items():
        if name == _ASCENSION_BRIDGE and day.year not in years_with_bridge and first <= day <= last:
            days.setdefault(day, name)

    departures = {}
    for day, name in days.items():
        if day.weekday() == 5 and (day - _ONE_DAY) not in days:
            departures[day] = name
    for day in departures:
        del days[day]
    return days, departures, first, last


@functools.cache
def _public_holidays(year: int, alsace_moselle: bool) -> dict[dt.date, str]:
    found = _holidays.France(
        years=year, subdiv="57" if alsace_moselle else None, categories="public", language="fr"
    )
    return dict(found.items())


def _check_rooms(rooms: object, what: str) -> None:
    if rooms is None:
        return
    if not isinstance(rooms, frozenset) or not rooms or not all(isinstance(r, str) and r for r in rooms):
        raise CalendarError(f"{what}: rooms must be None (whole school) or a non-empty frozenset of room names")


def _check_date(value: object, what: str) -> None:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise CalendarError(f"{what}: expected a date, got {value!r}")


def _applies(rooms: frozenset[str] | None, room: str | None) -> bool:
    return rooms is None or (room is not None and room in rooms)


class SchoolCalendar:
    """Answers `day(date, room)` in microseconds: the holiday tables are built
    once per process and zone, and answers are memoised per calendar."""

    def __init__(
        self,
        zone: str,
        alsace_moselle: bool = False,
        closures: tuple[Closure, ...] = (),
        special_days: tuple[SpecialDay, ...] = (),
    ) -> None:
        if zone not in ZONES:
            raise CalendarError(f"zone must be one of 'A', 'B', 'C', got {zone!r}")
        self.zone = zone
        self.alsace_moselle = bool(alsace_moselle)
        self.closures = tuple(closures)
        self.special_days = tuple(special_days)

        for c in self.closures:
            if not isinstance(c, Closure):
                raise CalendarError(f"closures: expected Closure, got {c!r}")
            _check_date(c.start, f"closure {c.label!r} start")
            _check_date(c.end, f"closure {c.label!r} end")
            if c.end < c.start:
                raise CalendarError(f"closure {c.label!r}: ends {c.end} before it starts {c.start}")
            _check_rooms(c.rooms, f"closure {c.label!r}")

        self._special: dict[dt.date, list[SpecialDay]] = {}
        for s in self.special_days:
            if not isinstance(s, SpecialDay):
                raise CalendarError(f"special_days: expected SpecialDay, got {s!r}")
            _check_date(s.date, f"special day {s.label!r}")
            if s.plan not in SPECIAL_PLANS:
                raise CalendarError(
                    f"special day {s.label!r} on {s.date}: plan must be one of {', '.join(SPECIAL_PLANS)}, got {s.plan!r}"
                )
            _check_rooms(s.rooms, f"special day {s.label!r}")
            for other in self._special.get(s.date, ()):
                same_scope = (
                    (s.rooms is None and other.rooms is None)
                    or (s.rooms is not None and other.rooms is not None and s.rooms & other.rooms)
                )
                if same_scope and other.plan != s.plan:
                    raise CalendarError(
                        f"special days {other.label!r} and {s.label!r} on {s.date} give different plans "
                        f"({other.plan!r}, {s.plan!r}) to the same rooms"
                    )
            self._special.setdefault(s.date, []).append(s)

        self._holidays, self._departures, self._first, self._last = _school_holidays(zone)
        # Bound per instance so a discarded calendar frees its cache.
        self._day = functools.lru_cache(maxsize=16384)(self._compute)

    def coverage(self) -> tuple[dt.date, dt.date]:
        return self._first, self._last

    def day(self, date: dt.date, room: str | None = None) -> DayInfo:
        # A datetime is a date subclass but never equal to one: it would miss
        # every table silently, and its local date is the caller's to decide.
        if isinstance(date, dt.datetime) or not isinstance(date, dt.date):
            raise TypeError(f"day() takes a datetime.date, got {date!r}")
        return self._day(date, room)

    def next_closure_start(
        self, after: dt.date | dt.datetime, room: str | None = None, horizon_days: int = 14
    ) -> dt.date | None:
        """The first date strictly after `after` (a local date or datetime) that
        is not open, looking at most `horizon_days` ahead; None if there is none."""
        start = after.date() if isinstance(after, dt.datetime) else after
        for offset in range(1, horizon_days + 1):
            candidate = start + dt.timedelta(days=offset)
            if not self.day(candidate, room).open:
                return candidate
        return None

    def _compute(self, date: dt.date, room: str | None) -> DayInfo:
        covered = self._first <= date <= self._last
        public = _public_holidays(date.year, self.alsace_moselle).get(date)

        if public is None:
            special = self._special_for(date, room)
            if special is not None:
                if special.plan == "closed":
                    return DayInfo(date, False, "special_day", "special_day_closed", special.label, None, covered)
                return DayInfo(date, True, "special_day", None, special.label, special.plan, covered)

        for closure in self.closures:
            if closure.start <= date <= closure.end and _applies(closure.rooms, room):
                return DayInfo(date, False, "closure", "closure", closure.label, None, covered)

        if public is not None:
            return DayInfo(date, False, "public_holiday", "public_holiday", public, None, covered)

        if covered:
            holiday = self._holidays.get(date)
            if holiday is not None:
                return DayInfo(date, False, "school_holiday", "school_holiday", holiday, None, covered)

        plan = WEEKDAY_PLANS[date.weekday()]
        if date.weekday() >= 5:
            departure = self._departures.get(date) if covered else None
            label = f"{departure} : départ après la classe" if departure else None
            return DayInfo(date, True, "weekend", None, label, plan, covered)
        return DayInfo(date, True, "school_day", None, None, plan, covered)

    def _special_for(self, date: dt.date, room: str | None) -> SpecialDay | None:
        candidates = self._special.get(date)
        if not candidates:
            return None
        # A special day for this room beats one for the whole school.
        for s in candidates:
            if s.rooms is not None and room is not None and room in s.rooms:
                return s
        for s in candidates:
            if s.rooms is None:
                return s
        return None
