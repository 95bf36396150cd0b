"""Usage for the city's quarterly review: per school, room and month of a
quarter, the sessions started and their minutes (from the boards' events),
the projector's hours and the access point's minutes (from the rooms'
telemetry: an interval counts whole when its latest state was "on"), and
an estimate of the energy the boards' automatic standby saved
(`standby_savings`). Read through the store's public reads; blocking, so
called off the loop."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ..settings import CitySettings

USAGE_RECORDS_MAX = 200_000  # a quarter of a city's session events, with room to spare
TELEMETRY_MAX = 50_000  # a room's intervals in a quarter (26,000 at 5 minutes)
_QUARTER = re.compile(r"^(20\d\d)-Q([1-4])$")
# New columns go at the end: a city's spreadsheet reads the first ones by position.
COLUMNS = ("school", "room", "month", "sessions", "session_minutes", "projector_hours", "ap_minutes",
           "standby_kwh_saved")
# A projector off within this long after its session ended was switched off
# by the board at the session's end (it acts at its next poll, 30 s, then
# the lamp cools): counted once, as the session's end.
AFTER_END_S = 300
# The board's projector_standby_s default (firmware/config.py): a projector
# switched on outside a session goes to standby after this long.
STANDBY_AFTER_S = 600
_ON = ("on", "warming")
_OFF = ("off", "cooling")


@dataclass
class Usage:
    school: str
    room: str
    month: str  # 2026-10
    sessions: int = 0
    session_minutes: float = 0.0
    projector_hours: float = 0.0
    ap_minutes: float = 0.0
    standby_kwh_saved: float = 0.0

    def row(self) -> tuple:
        return (self.school, self.room, self.month, self.sessions, round(self.session_minutes, 1),
                round(self.projector_hours, 2), round(self.ap_minutes, 1), round(self.standby_kwh_saved, 2))


@dataclass(frozen=True)
class Standby:
    """The energy model's numbers (CitySettings: projector_on_w,
    projector_standby_w, school_day_end)."""

    on_w: float = 250.0
    standby_w: float = 2.0
    day_end: dt.time = dt.time(16, 30)

    @classmethod
    def of(cls, settings: CitySettings) -> Standby:
        return cls(settings.projector_on_w, settings.projector_standby_w, settings.school_day_end_time)


def standby_savings(events: Iterable[tuple[float, str, dict]], standby: Standby, timezone: str,
                    until: float) -> list[tuple[float, float]]:
    """(when, kWh) for each time one room's board put its projector in
    standby by itself, from the room's events (at, type, data) oldest first:

    - at a session's end, a session granted with the projector, unless the
      projector was seen off already (a person switched it off);
    - outside a session, a projector seen going off at least STANDBY_AFTER_S
      after it came on (the board's standby rule; a person pressing the
      remote's off button that late counts the same: the estimate says so).

    The counterfactual, without the board: the projector stays on until the
    school day's end (`standby.day_end`, local time, every day alike), or
    until it would have been switched on again anyway (the room's next
    session with the projector, or the projector seen coming on), whichever
    comes first; nothing is counted after the day's end (a projector left
    on overnight saves more, and is not claimed), nor after `until` (the
    end of the data: now, or the quarter's end). Saved: that time at
    (on_w - standby_w)."""
    zone = ZoneInfo(timezone)
    watts = max(0.0, standby.on_w - standby.standby_w)
    out: list[tuple[float, float]] = []
    pending: float | None = None  # an automatic standby whose saved span is still open
    in_session = False
    session_projector = False
    projector: str | None = None  # the state last seen
    on_since: float | None = None
    ended_at: float | None = None

    def close(at: float) -> None:
        nonlocal pending
        if pending is None:
            return
        local = dt.datetime.fromtimestamp(pending, zone)
        day_end = dt.datetime.combine(local.date(), standby.day_end, tzinfo=zone).timestamp()
        saved_s = min(at, day_end, until) - pending
        if saved_s > 0:
            out.append((pending, watts * saved_s / 3600 / 1000))
        pending = None

    for at, kind, data in events:
        if kind == "session.started":
            in_session = True
            session_projector = data.get("projector") is True
            if session_projector:
                close(at)
        elif kind == "session.ended":
            if in_session and session_projector and projector not in _OFF:
                close(at)
                pending = at
                ended_at = at
            in_session = session_projector = False
        elif kind == "projector.changed":
            state = data.get("state")
            if state in _ON:
                if projector not in _ON:
                    on_since = at
                    close(at)
            elif state in _OFF and projector in _ON:
                after_end = ended_at is not None and at - ended_at <= AFTER_END_S
                if (not in_session and not after_end and on_since is not None
                        and at - on_since >= STANDBY_AFTER_S):
                    close(at)
                    pending = at
                on_since = None
            if isinstance(state, str):
                projector = state
    close(until)
    return out


def quarter_of(moment: dt.date) -> str:
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def parse_quarter(text: str | None, today: dt.date) -> str:
    """"2026-Q4", or the current quarter for anything else."""
    return text if text and _QUARTER.match(text) else quarter_of(today)


def bounds(quarter: str, timezone: str) -> tuple[float, float, list[str]]:
    """[start, end) in Unix seconds and the quarter's months."""
    m = _QUARTER.match(quarter)
    assert m is not None, quarter
    year, q = int(m.group(1)), int(m.group(2))
    zone = ZoneInfo(timezone)
    first = dt.datetime(year, 3 * q - 2, 1, tzinfo=zone)
    last = dt.datetime(year + 1, 1, 1, tzinfo=zone) if q == 4 else dt.datetime(year, 3 * q + 1, 1, tzinfo=zone)
    months = [f"{year}-{3 * q - 2 + i:02d}" for i in range(3)]
    return first.timestamp(), last.timestamp(), months


def usage(store, quarter: str, timezone: str, school: str | None = None, standby: Standby | None = None,
          now: float | None = None) -> list[Usage]:
    """Rows by school, room and month (only those with something to count),
    sorted. `now` ends the energy estimate's last saved span (default: the
    quarter's end)."""
    start, end, _months = bounds(quarter, timezone)
    zone = ZoneInfo(timezone)
    standby = standby or Standby()
    by_room: dict[tuple[str, str], list[tuple[float, str, dict]]] = {}
    rows: dict[tuple[str, str, str], Usage] = {}

    def row(school_code: str, room: str, at: float) -> Usage:
        month = dt.datetime.fromtimestamp(at, zone).strftime("%Y-%m")
        key = (school_code, room, month)
        if key not in rows:
            rows[key] = Usage(school_code, room, month)
        return rows[key]

    for record in store.records(school=school, kind="evt", since=start, until=end, limit=USAGE_RECORDS_MAX):
        body = record.get("body") or {}
        kind = body.get("type")
        raw = body.get("data")
        data = raw if isinstance(raw, dict) else {}
        if kind == "session.started":
            row(record["school"], record["room"], record["at"]).sessions += 1
        elif kind == "session.ended":
            ran = data.get("ran_s")
            if isinstance(ran, (int, float)) and not isinstance(ran, bool) and 0 <= ran <= 86400:
                row(record["school"], record["room"], record["at"]).session_minutes += ran / 60
        if kind in ("session.started", "session.ended", "projector.changed"):
            by_room.setdefault((record["school"], record["room"]), []).append((record["at"], kind, data))
    until = end if now is None else min(end, now)
    for (school_code, room_code), events in by_room.items():
        events.reverse()  # the store gives them newest first
        for at, kwh in standby_savings(events, standby, timezone, until):
            row(school_code, room_code, at).standby_kwh_saved += kwh
    for s in store.status()["schools"]:
        if school is not None and s["school"] != school:
            continue
        for room in s["rooms"]:
            for reading in store.telemetry(s["school"], room["room"], since=start, until=end, limit=TELEMETRY_MAX):
                interval = reading.get("interval_s")
                if not isinstance(interval, (int, float)) or not 0 < interval <= 86400:
                    continue
                values = reading.get("readings") or {}
                if values.get("projector") == "on":
                    row(s["school"], room["room"], reading["at"]).projector_hours += interval / 3600
                if values.get("ap") is True:
                    row(s["school"], room["room"], reading["at"]).ap_minutes += interval / 60
    return [rows[k] for k in sorted(rows)]


def to_csv(rows: list[Usage]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow(r.row())
    return out.getvalue()
