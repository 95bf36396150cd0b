"""Telemetry for the city: each room's board readings (`tele`, every minute
by default) folded into one record per room and interval.

A record of kind "telemetry" (docs/protocol.md, "City link") carries, for
one room and one interval of `[city] telemetry_interval_s`:

    {"v": 1, "interval_s": 300, "n": 5, "session": "active", "ap": true,
     "projector": "on", "lamp_h": 1234, "co2": [612, 781.4, 905],
     "t": [20.9, 21.1, 21.4]}

for the interval that ends at the record's `at`. `n` readings went in; a
number (each kit reading of the board's `air`, under its own name) as
[min, mean, max], the mean to 0.1; a state (session, access point,
projector, lamp hours) as its latest value. A kit reading named like one
of those fields is sent as `air_<name>`. The city sees a stuffy classroom and a lamp
near its end without every reading crossing an ADSL line.

Pure and on the gateway's loop: `add()` for each live reading, `due(now)`
for the records of the intervals that have ended. Readings a board kept in
its flash outbox during an outage (older than what the room already
reported) are history: they are not folded in again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

STATES = ("session", "ap", "projector", "lamp_h")
RESERVED = ("v", "interval_s", "n") + STATES


@dataclass
class _Interval:
    start: int
    n: int = 0
    states: dict = field(default_factory=dict)
    air: dict[str, list[float]] = field(default_factory=dict)  # name -> [min, sum, max, count]

    def add(self, obj: dict) -> None:
        self.n += 1
        for name in STATES:
            if name in obj:
                self.states[name] = obj[name]
        for name, value in (obj.get("air") or {}).items():
            s = self.air.get(name)
            if s is None:
                self.air[name] = [value, value, value, 1]
            else:
                s[0] = min(s[0], value)
                s[1] += value
                s[2] = max(s[2], value)
                s[3] += 1

    def body(self, interval_s: int) -> str:
        out: dict = {"v": 1, "interval_s": interval_s, "n": self.n}
        out |= self.states
        for name, (lo, total, hi, count) in sorted(self.air.items()):
            out["air_" + name if name in out or name in RESERVED else name] = [
                _num(lo), _num(round(total / count, 1)), _num(hi)]
        return json.dumps(out, separators=(",", ":"))


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


class TelemetryAggregator:
    def __init__(self, interval_s: int) -> None:
        """`interval_s`: `[city] telemetry_interval_s`."""
        self.interval_s = interval_s
        self._open: dict[str, _Interval] = {}
        self._ended: list[tuple[str, float, str]] = []
        self._marks: dict[str, tuple[int, int]] = {}  # room -> (boot, uptime_ms) of the newest reading
        self.readings = 0
        self.history_skipped = 0

    def add(self, room: str, obj: dict, now: float) -> None:
        # The boot was vetted by the registry (an older boot is history, a
        # birth with a lower one a board replaced): within one boot, uptime orders.
        mark = (obj["boot"], obj.get("uptime_ms", 0))
        last = self._marks.get(room)
        if last is not None and last[0] == mark[0] and mark[1] <= last[1]:
            self.history_skipped += 1
            return
        self._marks[room] = mark
        start = int(now) - int(now) % self.interval_s
        current = self._open.get(room)
        if current is not None and current.start != start:
            self._close(room, current)
            current = None
        if current is None:
            current = self._open[room] = _Interval(start)
        current.add(obj)
        self.readings += 1

    def _close(self, room: str, interval: _Interval) -> None:
        self._ended.append((room, float(interval.start + self.interval_s), interval.body(self.interval_s)))

    def due(self, now: float) -> list[tuple[str, float, str]]:
        """(room, at, body) of every interval ended by `now`, oldest first;
        `at` is the interval's end."""
        for room, interval in list(self._open.items()):
            if interval.start + self.interval_s <= now:
                del self._open[room]
                self._close(room, interval)
        out, self._ended = self._ended, []
        out.sort(key=lambda item: item[1])
        return out
