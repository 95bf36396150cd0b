"""The policy part of the school's TOML file, validated.

The gateway and the policy read the SAME file (`school.toml`). The gateway's
own loader (edge_gateway/config.py) owns `school`, `gateway_id`, `db`, the
brokers, `http`, `session` and `rooms.<room>.wifi/sessions`; this module owns
the keys in `POLICY_KEYS` (top level) and `ROOM_KEYS` (in each room), and
reads `rooms.<room>.wifi/sessions` too. Every error names the file, the line
when it can be found cheaply, the key and what was expected:

    school.toml:42: week.monday.periods[2].end: expected "HH:MM" ..., got "8h30"
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from itertools import pairwise
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.codec import valid_name

from .model import (
    EQUIPMENT,
    MAX_MAX_S,
    MIN_MAX_S,
    PROFILES,
    UNDER_THREE_PROFILES,
    WEEKDAYS,
    WIFI_CHOICES,
    ZONES,
    Period,
    PeriodType,
    RoomPolicy,
    SchoolPolicy,
)

if TYPE_CHECKING:  # imported lazily where they are used
    from .calendar import Closure, SpecialDay
    from .ical import TimetableSlot

POLICY_KEYS = ("policy", "period_types", "week", "closures", "special_days", "ical")
ROOM_KEYS = ("profile", "equipment")
GATEWAY_ROOM_KEYS = ("wifi", "sessions")

_POLICY_TABLE = (
    "zone",
    "commune",
    "timezone",
    "alsace_moselle",
    "wifi_never",
    "grace_s",
    "ap_cap_s",
    "min_session_s",
    "offline_max_s",
    "override_max_s",
)
_PERIOD_TYPE_KEYS = ("sessions", "projector", "ap", "max_s", "label_fr", "label_en")
_PERIOD_KEYS = ("start", "end", "type", "overnight")
_DAY_KEYS = ("periods", "same_as")
HOLIDAYS = "holidays"  # [week.holidays]: the holiday leisure centre, Monday to Friday
_CLOSURE_KEYS = ("start", "end", "label", "rooms")
_SPECIAL_KEYS = ("date", "label", "plan", "rooms")
_ICAL_KEYS = ("file", "room_map", "default_type")
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

DEFAULT_PERIOD_TYPES = {
    "accueil": PeriodType("accueil", False, False, False, 3600, "accueil du matin", "morning reception"),
    "classe": PeriodType("classe", True, True, True, 5400, "classe", "class time"),
    "dejeuner": PeriodType("dejeuner", False, False, False, 3600, "pause déjeuner", "lunch break"),
    "periscolaire": PeriodType("periscolaire", True, True, False, 3600, "périscolaire", "after-school"),
    "centre_loisirs": PeriodType("centre_loisirs", True, True, False, 3600, "centre de loisirs", "leisure centre"),
}


def _t(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


_SCHOOL_DAY = (
    Period(_t("08:20"), _t("08:30"), "accueil"),
    Period(_t("08:30"), _t("11:45"), "classe"),
    Period(_t("11:45"), _t("13:30"), "dejeuner"),
    Period(_t("13:30"), _t("16:30"), "classe"),
    Period(_t("16:30"), _t("18:30"), "periscolaire"),
)
# The commune's most common week since 2017: four days of class, Wednesday
# at the leisure centre.
DEFAULT_WEEK = {
    "monday": _SCHOOL_DAY,
    "tuesday": _SCHOOL_DAY,
    "wednesday": (Period(_t("08:00"), _t("18:00"), "centre_loisirs"),),
    "thursday": _SCHOOL_DAY,
    "friday": _SCHOOL_DAY,
}


class PolicyConfigError(ValueError):
    pass


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"%s"' % value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return repr(value)


def _hm(t: dt.time) -> str:
    return t.strftime("%H:%M")


class _Lines:
    """Finds the line of a key path in the TOML text: cheap, best effort.
    tomllib keeps no positions, so this reads headers (`[a.b]`, `[[a]]`) and
    `key =` lines; an inline value (`periods = [...]`) gives its key's line."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")

    def __init__(self, text: str | None) -> None:
        self.where: dict[str, int] = {}
        if not text:
            return
        table: list[str] = []
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            m = self._HEADER.match(line)
            if m:
                parts = self._split(m.group(2))
                if m.group(1) == "[[":
                    name = ".".join(parts)
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    parts = parts[:-1] + [f"{parts[-1]}[{index}]"]
                table = parts
                self.where.setdefault(".".join(table), number)
                continue
            m = self._KEY.match(line)
            if m:
                self.where.setdefault(".".join(table + self._split(m.group(1))), number)

    @staticmethod
    def _split(dotted: str) -> list[str]:
        return [p.strip().strip("\"'") for p in dotted.split(".")]

    def line(self, key: str) -> int | None:
        while key:
            if key in self.where:
                return self.where[key]
            key = re.sub(r"(\[\d+\]|\.[^.\[]+)$", "", key) if ("." in key or "[" in key) else ""
        return None


class _Validator:
    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self.lines = _Lines(text)

    def fail(self, key: str, expected: str) -> NoReturn:
        line = self.lines.line(key)
        where = f"{self.source}:{line}" if line else self.source
        raise PolicyConfigError(f"{where}: {key}: {expected}")

    def known(self, table: Mapping, prefix: str, keys: tuple[str, ...]) -> None:
        for k in table:
            if k not in keys:
                self.fail(f"{prefix}.{k}" if prefix else k, "unknown key (expected one of: %s)" % ", ".join(keys))

    def table(self, value: Any, key: str) -> Mapping:
        if not isinstance(value, Mapping):
            self.fail(key, f"expected a table, got {_show(value)}")
        return value

    def array(self, value: Any, key: str) -> list:
        if not isinstance(value, list):
            self.fail(key, f"expected an array, got {_show(value)}")
        return value

    def boolean(self, table: Mapping, key: str, prefix: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{prefix}.{key}", f"expected true or false, got {_show(value)}")
        return value

    def integer(self, table: Mapping, key: str, prefix: str, lo: int, hi: int, default: int) -> int:
        value = table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            self.fail(f"{prefix}.{key}", f"expected an integer {lo}..{hi}, got {_show(value)}")
        return value

    def string(self, table: Mapping, key: str, prefix: str, default: str | None = None) -> str:
        full = f"{prefix}.{key}"
        if key not in table:
            if default is None:
                self.fail(full, "missing (expected a non-empty string)")
            return default
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(full, f"expected a non-empty string, got {_show(value)}")
        return value

    def choice(self, table: Mapping, key: str, prefix: str, choices: tuple[str, ...], default: str | None) -> str:
        full = f"{prefix}.{key}"
        if key not in table and default is None:
            self.fail(full, "missing (expected one of: %s)" % ", ".join(f'"{c}"' for c in choices))
        value = table.get(key, default)
        if value not in choices:
            self.fail(full, "expected one of: %s; got %s" % (", ".join(f'"{c}"' for c in choices), _show(value)))
        return value

    def clock(self, value: Any, key: str, allow_24: bool = False) -> tuple[dt.time, bool]:
        """A wall time "HH:MM" (or a TOML local time); "24:00" as an end."""
        if isinstance(value, dt.time) and value.tzinfo is None and not value.second and not value.microsecond:
            return value, False
        if isinstance(value, str):
            if allow_24 and value == "24:00":
                return dt.time(0), True
            m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value)
            if m:
                return dt.time(int(m.group(1)), int(m.group(2))), False
        extra = ' or "24:00"' if allow_24 else ""
        self.fail(key, f'expected a time "HH:MM" (00:00 to 23:59{extra}), got {_show(value)}')

    def day(self, value: Any, key: str) -> dt.date:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        self.fail(key, f"expected a date YYYY-MM-DD, got {_show(value)}")

    def rooms_list(self, table: Mapping, key: str, prefix: str, rooms: Mapping) -> frozenset[str] | None:
        if key not in table:
            return None
        full = f"{prefix}.{key}"
        value = self.array(table[key], full)
        if not value:
            self.fail(full, "expected a non-empty list of rooms (leave it out for the whole school)")
        for i, room in enumerate(value):
            if room not in rooms:
                self.fail(f"{full}[{i}]", f"unknown room {_show(room)} (expected one of: {', '.join(rooms)})")
        return frozenset(value)


def load_policy(
    data: Mapping[str, Any], source: str = "<config>", base_dir: str | None = None, text: str | None = None
) -> SchoolPolicy:
    """The school's policy from the parsed TOML (`tomllib.load`). `source` is
    the file name for messages; `base_dir` the folder that relative iCalendar
    paths are relative to; `text`, the file's text, lets errors give their
    line number."""
    v = _Validator(source, text)

    policy = v.table(data.get("policy"), "policy") if "policy" in data else v.fail(
        "policy", 'missing table (expected at least [policy] zone = "A", "B" or "C")'
    )
    v.known(policy, "policy", _POLICY_TABLE)
    zone = v.choice(policy, "zone", "policy", ZONES, None)
    commune = v.string(policy, "commune", "policy", "")
    timezone = v.string(policy, "timezone", "policy", "Europe/Paris")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        v.fail("policy.timezone", f'expected an IANA time zone such as "Europe/Paris", got {_show(timezone)}')
    settings: dict[str, Any] = dict(
        zone=zone,
        commune=commune,
        timezone=timezone,
        alsace_moselle=v.boolean(policy, "alsace_moselle", "policy", False),
        wifi_never=v.boolean(policy, "wifi_never", "policy", False),
        grace_s=v.integer(policy, "grace_s", "policy", 0, 900, 120),
        ap_cap_s=v.integer(policy, "ap_cap_s", "policy", MIN_MAX_S, MAX_MAX_S, 7200),
        min_session_s=v.integer(policy, "min_session_s", "policy", 0, 3600, 300),
        offline_max_s=v.integer(policy, "offline_max_s", "policy", MIN_MAX_S, MAX_MAX_S, 2700),
        override_max_s=v.integer(policy, "override_max_s", "policy", MIN_MAX_S, MAX_MAX_S, 3600),
    )

    period_types = _period_types(v, data)
    rooms = _rooms(v, data)
    week, holiday_periods = _week(v, data, period_types)
    closures = _closures(v, data, rooms)
    special_days = _special_days(v, data, rooms)
    slots, warnings = _ical(v, data, rooms, period_types, base_dir, timezone, closures, special_days)

    result = SchoolPolicy(
        rooms=rooms,
        period_types=period_types,
        week=week,
        holiday_periods=holiday_periods,
        closures=tuple(closures),
        special_days=tuple(special_days),
        timetable=tuple(slots),
        warnings=tuple(warnings),
        source=source,
        **settings,
    )
    from .calendar import CalendarError
    from .engine import calendar_for

    try:
        calendar_for(result)
    except CalendarError as e:  # e.g. two special days giving one date two plans
        v.fail("special_days", str(e))
    return result


def load_policy_file(path: str | os.PathLike) -> SchoolPolicy:
    """Read `path` and load its policy (used by `preau policy explain`)."""
    name = os.path.basename(os.fspath(path))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise PolicyConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise PolicyConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise PolicyConfigError(f"{name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyConfigError(f"{name}: not valid TOML ({e})") from None
    return load_policy(data, source=name, base_dir=os.path.dirname(os.path.abspath(path)), text=text)


def _period_types(v: _Validator, data: Mapping) -> dict[str, PeriodType]:
    types = dict(DEFAULT_PERIOD_TYPES)
    table = v.table(data["period_types"], "period_types") if "period_types" in data else {}
    for name, spec in table.items():
        key = f"period_types.{name}"
        if not _TYPE_NAME.match(name):
            v.fail(key, "period type name must be 1-32 characters of a-z, 0-9, '_', '-', starting with a letter")
        v.table(spec, key)
        v.known(spec, key, _PERIOD_TYPE_KEYS)
        sessions = v.boolean(spec, "sessions", key, False)
        projector = v.boolean(spec, "projector", key, sessions)
        ap = v.boolean(spec, "ap", key, False)
        if ap and not sessions:
            v.fail(f"{key}.ap", "ap = true needs sessions = true (the access point only comes on for a session)")
        if projector and not sessions:
            v.fail(f"{key}.projector", "projector = true needs sessions = true")
        max_s = v.integer(spec, "max_s", key, MIN_MAX_S, MAX_MAX_S, 3600)
        types[name] = PeriodType(
            name,
            sessions,
            projector,
            ap,
            max_s,
            v.string(spec, "label_fr", key, name),
            v.string(spec, "label_en", key, name),
        )
    return types


def _rooms(v: _Validator, data: Mapping) -> dict[str, RoomPolicy]:
    if "rooms" not in data:
        v.fail("rooms", "missing table (expected at least one [rooms.<room>])")
    table = v.table(data["rooms"], "rooms")
    rooms = {}
    for name, spec in table.items():
        key = f"rooms.{name}"
        if not valid_name(name) or name == "gateway":
            v.fail(key, "room name must be 1-32 characters of a-z, 0-9, '-' and not 'gateway'")
        v.table(spec, key)
        v.known(spec, key, GATEWAY_ROOM_KEYS + ROOM_KEYS)
        wifi = v.choice(spec, "wifi", key, WIFI_CHOICES, "never")
        sessions = v.boolean(spec, "sessions", key, True)
        profile = v.choice(spec, "profile", key, PROFILES, "elementaire")
        if profile in UNDER_THREE_PROFILES and wifi != "never":
            v.fail(
                f"{key}.wifi",
                f'expected "never" for profile "{profile}": loi 2015-136 art. 7 forbids wireless access '
                "points where children under three are received",
            )
        equipment = spec.get("equipment", ["projector", "ap"])
        v.array(equipment, f"{key}.equipment")
        for i, item in enumerate(equipment):
            if item not in EQUIPMENT:
                v.fail(
                    f"{key}.equipment[{i}]",
                    "expected one of: %s; got %s" % (", ".join(f'"{e}"' for e in EQUIPMENT), _show(item)),
                )
        rooms[name] = RoomPolicy(name, profile, wifi, sessions, frozenset(equipment))
    if not rooms:
        v.fail("rooms", "expected at least one [rooms.<room>] table")
    return rooms


def _week(
    v: _Validator, data: Mapping, types: Mapping[str, PeriodType]
) -> tuple[dict[str, tuple[Period, ...]], tuple[Period, ...]]:
    """(weekday plans, holiday leisure-centre periods)."""
    if "week" not in data:
        return dict(DEFAULT_WEEK), ()
    table = v.table(data["week"], "week")
    v.known(table, "week", WEEKDAYS + (HOLIDAYS,))
    week: dict[str, tuple[Period, ...]] = {}
    aliases: dict[str, str] = {}
    for day in WEEKDAYS + (HOLIDAYS,):
        if day not in table:
            continue
        key = f"week.{day}"
        spec = v.table(table[day], key)
        v.known(spec, key, _DAY_KEYS)
        if "same_as" in spec:
            if "periods" in spec:
                v.fail(f"{key}.same_as", "give either periods or same_as, not both")
            other = spec["same_as"]
            if other not in table or other == day or "same_as" in v.table(table[other], f"week.{other}"):
                v.fail(
                    f"{key}.same_as",
                    f"expected another weekday of [week] that lists its own periods, got {_show(other)}",
                )
            if day == HOLIDAYS or other == HOLIDAYS:
                v.fail(f"{key}.same_as", "the holidays plan lists its own periods")
            aliases[day] = other
            continue
        raw = v.array(spec.get("periods", []), f"{key}.periods")
        periods = []
        for i, item in enumerate(raw):
            pkey = f"{key}.periods[{i}]"
            v.table(item, pkey)
            v.known(item, pkey, _PERIOD_KEYS)
            for required in ("start", "end", "type"):
                if required not in item:
                    v.fail(f"{pkey}.{required}", "missing")
            start, _ = v.clock(item["start"], f"{pkey}.start")
            end, is_24 = v.clock(item["end"], f"{pkey}.end", allow_24=True)
            if item["type"] not in types:
                v.fail(f"{pkey}.type", f"unknown period type {_show(item['type'])} (expected one of: {', '.join(types)})")
            overnight = v.boolean(item, "overnight", pkey, is_24)
            if end == start and not is_24:
                v.fail(f"{pkey}.end", f"expected a time after start {_hm(start)}, got {_hm(end)}")
            if end < start and not overnight:
                v.fail(
                    f"{pkey}.end",
                    f"expected a time after start {_hm(start)}, got {_hm(end)} "
                    "(a period crossing midnight needs overnight = true)",
                )
            if overnight and day == HOLIDAYS:
                v.fail(f"{pkey}.end", "expected a period ending the same day: no overnight period in the holidays plan")
            if overnight and end > start:
                v.fail(f"{pkey}.overnight", f"overnight = true needs end before start (it ends the next day), got {_hm(start)}-{_hm(end)}")
            periods.append((start, i, Period(start, end, item["type"], overnight)))
        periods.sort(key=lambda x: (x[0], x[1]))
        for (_, i, a), (_, j, b) in pairwise(periods):
            if a.overnight or a.end > b.start:
                v.fail(
                    f"{key}.periods[{j}]",
                    f"overlaps periods[{i}] ({_hm(a.start)}-{_hm(a.end)}); expected periods that do not overlap",
                )
        week[day] = tuple(p for _, _, p in periods)
    for day, other in aliases.items():
        week[day] = week[other]
    holiday_periods = week.pop(HOLIDAYS, ())
    # An overnight period must end before the next day's first period starts.
    for n, day in enumerate(WEEKDAYS):
        after = WEEKDAYS[(n + 1) % 7]
        for p in week.get(day, ()):
            nxt = week.get(after, ())
            if p.overnight and nxt and nxt[0].start < p.end:
                v.fail(f"week.{day}", f"its overnight period {_hm(p.start)}-{_hm(p.end)} overlaps {after}'s first period")
    return week, holiday_periods


def _closures(v: _Validator, data: Mapping, rooms: Mapping) -> list[Closure]:
    from .calendar import Closure

    out = []
    for i, item in enumerate(v.array(data.get("closures", []), "closures")):
        key = f"closures[{i}]"
        v.table(item, key)
        v.known(item, key, _CLOSURE_KEYS)
        if "start" not in item:
            v.fail(f"{key}.start", "missing (expected a date YYYY-MM-DD)")
        start = v.day(item["start"], f"{key}.start")
        end = v.day(item.get("end", start), f"{key}.end")
        if end < start:
            v.fail(f"{key}.end", f"expected a date on or after start {start}, got {end}")
        label = v.string(item, "label", key)
        out.append(Closure(start, end, label, v.rooms_list(item, "rooms", key, rooms)))
    return out


def _special_days(v: _Validator, data: Mapping, rooms: Mapping) -> list[SpecialDay]:
    from .calendar import SpecialDay

    out = []
    for i, item in enumerate(v.array(data.get("special_days", []), "special_days")):
        key = f"special_days[{i}]"
        v.table(item, key)
        v.known(item, key, _SPECIAL_KEYS)
        if "date" not in item:
            v.fail(f"{key}.date", "missing (expected a date YYYY-MM-DD)")
        day = v.day(item["date"], f"{key}.date")
        label = v.string(item, "label", key)
        plan = v.choice(item, "plan", key, WEEKDAYS + ("closed",), None)
        out.append(SpecialDay(day, label, plan, v.rooms_list(item, "rooms", key, rooms)))
    return out


def _ical(
    v: _Validator,
    data: Mapping,
    rooms: Mapping,
    types: Mapping[str, PeriodType],
    base_dir: str | None,
    timezone: str,
    closures: list[Closure],
    special_days: list[SpecialDay],
) -> tuple[list[TimetableSlot], list[str]]:
    from .ical import import_ical

    slots: list[TimetableSlot] = []
    warnings: list[str] = []
    for i, item in enumerate(v.array(data.get("ical", []), "ical")):
        key = f"ical[{i}]"
        v.table(item, key)
        v.known(item, key, _ICAL_KEYS)
        path = v.string(item, "file", key)
        room_map = v.table(item.get("room_map", {}), f"{key}.room_map")
        for name, room in room_map.items():
            if room not in rooms:
                v.fail(f"{key}.room_map.{name}", f"unknown room {_show(room)} (expected one of: {', '.join(rooms)})")
        default_type = v.string(item, "default_type", key, "classe")
        if default_type not in types:
            v.fail(f"{key}.default_type", f"unknown period type {_show(default_type)} (expected one of: {', '.join(types)})")
        full = path if os.path.isabs(path) or not base_dir else os.path.join(base_dir, path)
        try:
            with open(full, "rb") as f:
                raw = f.read()
        except OSError as e:
            v.fail(f"{key}.file", f"cannot read {path!r} ({e.strerror}); expected an iCalendar file, relative to the config file")
        try:
            imported = import_ical(raw, dict(room_map), source=path, tz=timezone, period_types=frozenset(types),
                                   default_type=default_type)
        except ValueError as e:
            v.fail(f"{key}.file", f"expected an iCalendar file: {e}")
        closures.extend(imported.closures)
        special_days.extend(imported.special_days)
        warnings.extend(imported.warnings)
        for slot in imported.slots:
            clash = next(
                (
                    s
                    for s in slots
                    if s.room == slot.room and s.weekday == slot.weekday and s.start < slot.end and slot.start < s.end
                ),
                None,
            )
            if clash is not None:
                warnings.append(
                    f"{path}: {slot.label}: overlaps {clash.label} in {slot.room} on {WEEKDAYS[slot.weekday]}; skipped"
                )
                continue
            slots.append(slot)
    return slots, warnings
