"""Usage for the city's quarterly review: per school, room and month of a
quarter, the sessions started and their minutes (from the boards' events),
the projector's hours and the access point's minutes (from the rooms'
telemetry: an interval counts whole when its latest state was "on").
Read through the store's public reads; blocking, so called off the loop."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

USAGE_RECORDS_MAX = 200_000  # a quarter of a city's session events, with room to spare
TELEMETRY_MAX = 50_000  # a room's intervals in a quarter (26,000 at 5 minutes)
_QUARTER = re.compile(r"^(20\d\d)-Q([1-4])$")
COLUMNS = ("school", "room", "month", "sessions", "session_minutes", "projector_hours", "ap_minutes")


@dataclass
class Usage:
    school: str
    room: str
    month: str  # 2026-10
    sessions: int = 0
    session_minutes: float = 0.0
    projector_hours: float = 0.0
    ap_minutes: float = 0.0

    def row(self) -> tuple:
        return (self.school, self.room, self.month, self.sessions, round(self.session_minutes, 1),
                round(self.projector_hours, 2), round(self.ap_minutes, 1))


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


def usage(store, quarter: str, timezone: str, school: str | None = None) -> list[Usage]:
    """Rows by school, room and month (only those with something to count), sorted."""
    start, end, _months = bounds(quarter, timezone)
    zone = ZoneInfo(timezone)
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
