"""When each projector's lamp will need replacing, for the equipment page.

A lamp's hours are a counter the projector keeps (PJLink LAMP, Epson
LAMP?, BenQ ltim): they only grow, except when the lamp is replaced and
the counter starts again near 0. The forecast takes the room's readings
over the last weeks (`SAMPLE_WEEKS`, one reading per week: the latest of
that week), keeps those since the last replacement, and divides the hours
gained by the calendar time they took: hours per calendar week, so the
school holidays in the window count as the slow weeks they are. The lamp
reaches its life at that rate; a series too short (under `MIN_SPAN_S`)
or flat (less than an hour gained: a projector nobody uses) gives
no date.

The lamp's life is the city's `lamp_hours` alert threshold (the alert a
worn lamp raises, cloud_bridge/alerts.py, 3000 h unless the rules say):
the forecast says when that alert will open. Pure; the store is read by
`projector_series`, through its public `telemetry` read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WEEK_S = 7 * 86400
SAMPLE_WEEKS = 8  # the window the rate is measured over
MIN_SPAN_S = 6 * 86400  # less than about a week of readings: no rate yet
MIN_GAIN_H = 1.0  # projectors count whole hours: less than one gained is no use seen


@dataclass(frozen=True)
class LampForecast:
    lamp_h: float  # the latest reading
    life_h: float
    per_week_h: float | None  # lamp hours gained per calendar week; None: not enough data
    due_at: float | None  # Unix time the lamp reaches its life; None: not enough data

    @property
    def worn(self) -> bool:
        return self.lamp_h >= self.life_h

    def due_within(self, now: float, weeks: float) -> bool:
        return self.due_at is not None and self.due_at - now <= weeks * WEEK_S


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def lamp_forecast(series: Sequence[tuple[float, float]], life_h: float, now: float,
                  min_span_s: float = MIN_SPAN_S) -> LampForecast | None:
    """The forecast from `series`, (Unix time, lamp hours) oldest first,
    the last being the latest reading; None for an empty series. A lamp at
    or past its life is due `now`; otherwise the date is never before
    `now` (a late reading does not put it in the past) and a higher rate
    never makes it later."""
    points = [(at, h) for at, h in series if math.isfinite(at) and math.isfinite(h) and h >= 0]
    if not points:
        return None
    # Since the last replacement: the counter went down there.
    start = 0
    for i in range(1, len(points)):
        if points[i][1] < points[i - 1][1]:
            start = i
    points = points[start:]
    (first_at, first_h), (last_at, last_h) = points[0], points[-1]
    if last_h >= life_h:
        span = last_at - first_at
        per_week = (last_h - first_h) / span * WEEK_S if span >= max(min_span_s, 1) else None
        return LampForecast(last_h, life_h, per_week, now)
    span = last_at - first_at
    gained = last_h - first_h
    if span < max(min_span_s, 1) or gained < MIN_GAIN_H:
        return LampForecast(last_h, life_h, None, None)
    rate = gained / span  # lamp hours per second of calendar time
    return LampForecast(last_h, life_h, rate * WEEK_S, max(now, last_at + (life_h - last_h) / rate))


def projector_series(store, school: str, room: str, now: float, weeks: int = SAMPLE_WEEKS) -> list[tuple[float, float]]:
    """(at, lamp_h) of the room's telemetry: the latest reading of each of
    the last `weeks` weeks, oldest first. One small read per week (the
    store keeps a (school, room, at) index): a room's eight weeks are
    16,000 intervals at 5 minutes, of which 8 are needed."""
    out = []
    for k in range(weeks, 0, -1):
        until = now - (k - 1) * WEEK_S
        for reading in store.telemetry(school, room, since=until - WEEK_S, until=until, limit=1):
            lamp = _number((reading.get("readings") or {}).get("lamp_h"))
            if lamp is not None:
                out.append((float(reading["at"]), lamp))
    return out
