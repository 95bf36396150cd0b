"""The school's lesson-time rules as immutable values.

A running gateway replaces its `SchoolPolicy` as a whole (one reference
swap), so a request is never decided against half an old and half a new
configuration: every value here is frozen and its mappings are read-only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the calendar module is imported lazily where it is used
    from .calendar import Closure, SpecialDay
    from .ical import TimetableSlot

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ZONES = ("A", "B", "C")
WIFI_CHOICES = ("allowed", "never")
# Class profiles. "tps" (toute petite section) takes children under three:
# loi 2015-136 art. 7 forbids any wireless access point in their spaces.
PROFILES = ("tps", "maternelle", "elementaire", "ulis", "upe2a", "bcd", "informatique", "polyvalente", "autre")
UNDER_THREE_PROFILES = ("tps",)
EQUIPMENT = ("projector", "ap", "kit")

MIN_MAX_S = 60
MAX_MAX_S = 14400  # the protocol's grant limit (protocol/codec.py MAX_DURATION_S)


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class PeriodType:
    """What a kind of period allows: `classe`, `dejeuner`, `periscolaire`..."""

    name: str
    sessions: bool
    projector: bool
    ap: bool
    max_s: int
    label_fr: str = ""
    label_en: str = ""

    def label(self, lang: str) -> str:
        text = self.label_fr if lang == "fr" else self.label_en
        return text or self.name


@dataclass(frozen=True)
class Period:
    """One period of a weekday plan, in local wall time. `overnight` periods
    end the next day (`end` < `start`, or `end` = 00:00 for "24:00")."""

    start: time
    end: time
    type: str
    overnight: bool = False


@dataclass(frozen=True)
class RoomPolicy:
    name: str
    profile: str = "elementaire"
    wifi: str = "never"
    sessions: bool = True
    equipment: frozenset[str] = frozenset({"projector", "ap"})

    @property
    def wifi_allowed(self) -> bool:
        return self.wifi == "allowed" and "ap" in self.equipment

    @property
    def projector(self) -> bool:
        return "projector" in self.equipment


@dataclass(frozen=True)
class SchoolPolicy:
    zone: str
    rooms: Mapping[str, RoomPolicy]
    period_types: Mapping[str, PeriodType]
    week: Mapping[str, tuple[Period, ...]]
    commune: str = ""
    # The holiday leisure centre (centre de loisirs): periods on school-holiday
    # weekdays. Never the access point there (a closed day for the school).
    holiday_periods: tuple[Period, ...] = ()
    timezone: str = "Europe/Paris"
    alsace_moselle: bool = False
    wifi_never: bool = False
    grace_s: int = 120
    ap_cap_s: int = 7200
    min_session_s: int = 300
    offline_max_s: int = 2700
    override_max_s: int = 3600
    closures: tuple[Closure, ...] = ()
    special_days: tuple[SpecialDay, ...] = ()
    timetable: tuple[TimetableSlot, ...] = ()
    warnings: tuple[str, ...] = ()
    source: str = "<config>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rooms", _frozen(self.rooms))
        object.__setattr__(self, "period_types", _frozen(self.period_types))
        object.__setattr__(self, "week", _frozen({d: tuple(self.week.get(d, ())) for d in WEEKDAYS}))

    def periods(self, room: str, plan: str, day=None) -> tuple[Period, ...]:
        """The periods of weekday plan `plan` in `room` (on date `day`, when
        given): the room's own timetable (imported from iCalendar) for that
        weekday, within its recurrence's dates, wins over the school week."""
        weekday = WEEKDAYS.index(plan)
        own = tuple(
            Period(s.start, s.end, s.period_type)
            for s in self.timetable
            if s.room == room and s.weekday == weekday and (day is None or s.on(day))
        )
        if own:
            return tuple(sorted(own, key=lambda p: p.start))
        return self.week[plan]


@dataclass(frozen=True)
class Override:
    """A temporary allow or deny for a room or the whole school, set by
    someone for a reason, valid in [starts, expires). Deny beats allow; an
    allow never brings the access point to a Wi-Fi-never room or school, nor
    to a closed day (holidays, closures)."""

    id: str
    scope: str  # "room" | "school"
    room: str | None
    effect: str  # "allow" | "deny"
    ap: bool
    ap_only: bool
    starts: datetime
    expires: datetime
    who: str
    why: str

    def __post_init__(self) -> None:
        if self.scope not in ("room", "school"):
            raise ValueError(f"override {self.id}: scope must be 'room' or 'school', got {self.scope!r}")
        if (self.scope == "room") != (self.room is not None):
            raise ValueError(f"override {self.id}: a room override names its room, a school override none")
        if self.effect not in ("allow", "deny"):
            raise ValueError(f"override {self.id}: effect must be 'allow' or 'deny', got {self.effect!r}")
        if self.ap_only and self.effect != "deny":
            raise ValueError(f"override {self.id}: ap_only is for deny overrides")
        if self.starts.tzinfo is None or self.expires.tzinfo is None:
            raise ValueError(f"override {self.id}: starts and expires must be aware datetimes")
        if not self.starts < self.expires:
            raise ValueError(f"override {self.id}: expires must be after starts")

    def applies(self, room: str) -> bool:
        return self.scope == "school" or self.room == room
