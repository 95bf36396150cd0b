"""A classroom's page: today's sessions, the last seven days as a timeline
(session, access point, projector), CO2 and temperature charts, the
projector's lamp and faults, and the room's events in words.

Everything comes from what the gateway already stores (edge_gateway/
history.py), read on a read-only connection: the board's events (`evt`:
session.started/ended, ap.changed, projector.changed, boot ...) for the
sessions and the timeline, and the telemetry records (one per room and
interval: min, mean and max of each kit reading, kept 7 days) for the
charts. The charts and the timeline are SVG drawn here, in the page: no
script, no library, nothing from elsewhere; each has a text alternative
(its title and description, and a table of minimum, mean and maximum).
The builders are pure functions of the records, tested on their own."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from common.web.auth import Allow, Principal, actor
from common.web.login import lang_of, page
from protocol.wire import MAX_DURATION_S

from ..gateway import Gateway
from ..history import loads_safe, reader
from .i18n import duration, event_words, projector_word, role_word, t
from .radio import Switch, day_bounds, moments, spans
from .render import e, layout

EVERYONE = Allow("director", "technician", "viewer", page=True)
Actor = Annotated[Principal, Depends(actor)]
router = APIRouter(include_in_schema=False)

DAYS = 7
EVENTS_SHOWN = 200
# A session lasts at most MAX_DURATION_S, and its grace after it; one whose
# end never reached the gateway (the board lost its power) is drawn that long at most.
SESSION_CAP_S = MAX_DURATION_S + 900
PROJECTOR_ON = ("warming", "on")
# A board acknowledges a command within seconds; offline, it gets it when it comes back (docs/gateway.md).
REMOTE_END_S = 600
CO2_ALERT_PPM = 1000  # the boards' default threshold (docs/kits.md): drawn as a line


# reading (read-only, in a thread) -------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One telemetry record's reading: the interval ending at `at`."""

    at: float
    interval_s: int
    lo: float
    mean: float
    hi: float
    n: int


@dataclass
class RoomHistory:
    events: list[tuple[int, float, dict]]  # (seq, moment, body), oldest first
    telemetry: list[tuple[float, dict]]  # (at, body), oldest first
    remote_ends: list[tuple[float, str]]  # (at, role) of the audit's `board.end` for this room


def read_room(path: str, room: str, since: float, tele_since: float) -> RoomHistory:
    with closing(reader(path)) as conn:
        evt = conn.execute("SELECT seq, at, body FROM records WHERE room = ? AND kind = 'evt' AND at >= ? ORDER BY seq",
                           (room, since)).fetchall()
        tele = conn.execute("SELECT at, body FROM records WHERE room = ? AND kind = 'telemetry' AND at >= ? ORDER BY at",
                            (room, tele_since)).fetchall()
        audit = conn.execute("SELECT at, who, detail FROM audit WHERE action = 'board.end' AND at >= ? ORDER BY id",
                             (since,)).fetchall()
    parsed = [(seq, at, body) for seq, at, text in evt if isinstance(body := loads_safe(text), dict)]
    placed = moments((room, at, body) for _seq, at, body in parsed)
    events = [(seq, moment, body) for (seq, _at, _b), (_r, moment, body) in zip(parsed, placed, strict=True)]
    events.sort(key=lambda item: item[1])  # by when they happened; stable, so equal moments keep the record order
    telemetry = [(at, body) for at, text in tele if isinstance(body := loads_safe(text), dict)]
    # who ended a session remotely: the audit's role (director, technician), never the account
    ends = [(at, who.partition(":")[0]) for at, who, detail in audit
            if isinstance(d := loads_safe(detail), dict) and d.get("room") == room]
    return RoomHistory(events, telemetry, ends)


def _data(body: dict) -> dict:
    data = body.get("data")
    return data if isinstance(data, dict) else {}


# the builders (pure) -----------------------------------------------------------------------


def room_spans(events: Iterable[tuple[int, float, dict]], now: float, ap_cap_s: float) -> dict[str, list]:
    """{"session", "ap", "projector": [(start, end), ...]} from the events;
    a board's boot ends all three (its relay is off, its session gone, its
    projector's state unknown until it polls)."""
    switches: dict[str, list[Switch]] = {"session": [], "ap": [], "projector": []}
    for _seq, at, body in events:
        kind, data = body.get("type"), _data(body)
        if kind == "session.started":
            switches["session"].append(Switch("session", at, True))
        elif kind == "session.ended":
            switches["session"].append(Switch("session", at, False))
        elif kind == "ap.changed":
            switches["ap"].append(Switch("ap", at, bool(data.get("on"))))
        elif kind == "projector.changed":
            switches["projector"].append(Switch("projector", at, data.get("state") in PROJECTOR_ON))
        elif kind == "boot":
            for name in switches:
                switches[name].append(Switch(name, at, False))
    caps = {"session": SESSION_CAP_S, "ap": ap_cap_s, "projector": 86400.0 * 7}
    return {name: spans(items, now, caps[name]).get(name, []) for name, items in switches.items()}


@dataclass(frozen=True)
class Session:
    start: float
    end: float | None  # None: not over, as far as the gateway knows
    source: str  # "gateway" (granted by the gateway) or "offline" (decided by the board alone)
    ap: bool
    granted_s: int  # asked length, extensions included
    ended: str | None  # time, teacher, command, shutdown, boot


def sessions_of(events: Iterable[tuple[int, float, dict]]) -> list[Session]:
    """The sessions, oldest first. Every one begins with a teacher's press
    (`lesson.requested`); the gateway or the board alone grants it."""
    out: list[Session] = []
    current: dict | None = None

    def close(at: float | None, why: str | None) -> None:
        nonlocal current
        if current is not None:
            out.append(Session(current["start"], at, current["source"], current["ap"], current["granted_s"], why))
            current = None

    for _seq, at, body in events:
        kind, data = body.get("type"), _data(body)
        if kind == "session.started":
            close(at, None)
            current = {"start": at, "source": str(data.get("source") or "gateway"), "ap": bool(data.get("ap")),
                       "granted_s": int(data.get("duration_s") or 0)}
        elif kind == "session.extended" and current is not None:
            current["granted_s"] += int(data.get("added_s") or 0)
        elif kind == "session.ended":
            close(at, str(data.get("reason") or ""))
        elif kind == "boot":
            close(at, "boot")
    close(None, None)
    return out


def readings(telemetry: Iterable[tuple[float, dict]], name: str) -> list[Reading]:
    """The reading `name` ("co2", "t") of each telemetry record that has one as [min, mean, max]."""
    out = []
    for at, body in telemetry:
        value = body.get(name)
        if (isinstance(value, list) and len(value) == 3
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
            interval = body.get("interval_s")
            n = body.get("n")
            out.append(Reading(at, int(interval) if isinstance(interval, int) and interval > 0 else 300,
                               float(value[0]), float(value[1]), float(value[2]),
                               int(n) if isinstance(n, int) and n > 0 else 1))
    return out


@dataclass(frozen=True)
class Summary:
    lo: float
    mean: float
    hi: float
    count: int  # intervals


def summary(points: Sequence[Reading]) -> Summary | None:
    """Lowest, mean (weighted by the readings each interval holds), highest."""
    if not points:
        return None
    weight = sum(p.n for p in points)
    return Summary(min(p.lo for p in points), sum(p.mean * p.n for p in points) / weight,
                   max(p.hi for p in points), len(points))


def _hm(unix: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(unix, tz).strftime("%H:%M")


def _num(x: float, unit: str) -> str:
    return f"{x:.0f}" if unit == "ppm" else f"{x:.1f}"


def timeline_svg(lang: str, day: dt.date, start: float, end: float, bars: dict[str, list[tuple[float, float]]],
                 tz: ZoneInfo) -> str:
    """One day as three bars (session, access point, projector) over its
    local hours; its title says the same in words."""
    width, row = 960.0, 14.0
    scale = width / (end - start)
    words = []
    parts = [f'<rect class="tl-bg" x="0" y="0" width="{width:.0f}" height="{row * 3 + 8:.0f}"/>']
    for hour in (6, 12, 18):
        x = (dt.datetime.combine(day, dt.time(hour), tzinfo=tz).timestamp() - start) * scale
        parts.append(f'<line class="tl-hour" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{row * 3 + 8:.0f}"/>')
    for i, name in enumerate(("session", "ap", "projector")):
        cut = [(max(a, start), min(b, end)) for a, b in bars.get(name, ()) if b > start and a < end]
        for a, b in cut:
            parts.append(f'<rect class="tl-{name}" x="{(a - start) * scale:.1f}" y="{2 + i * (row + 2):.0f}" '
                         f'width="{max(1.5, (b - a) * scale):.1f}" height="{row:.0f}"/>')
        listed = ", ".join(f"{_hm(a, tz)}–{_hm(b, tz)}" for a, b in cut) or t(lang, "tl_none")
        words.append(f"{t(lang, 'tl_' + name)} : {listed}" if lang == "fr" else f"{t(lang, 'tl_' + name)}: {listed}")
    ident = f"tl-{day.isoformat()}"
    title = f"{_day_name(lang, day)} — " + " ; ".join(words)
    return (f'<svg class="timeline" role="img" aria-labelledby="{ident}" viewBox="0 0 {width:.0f} {row * 3 + 8:.0f}" '
            f'preserveAspectRatio="none"><title id="{ident}">{e(title)}</title>{"".join(parts)}</svg>')


def _day_name(lang: str, day: dt.date) -> str:
    return f"{t(lang, 'wd_' + str(day.weekday()))} {day.day:02d}/{day.month:02d}"


def _axis(lo: float, hi: float, least: float) -> tuple[float, float, float]:
    """Round bounds and a round step (1, 2 or 5 times a power of ten) for about four steps."""
    span = max(hi - lo, least)
    raw = span / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    low = math.floor(lo / step) * step
    high = math.ceil(hi / step) * step
    if high - low < step * 2:
        high = low + step * 2
    return low, high, step


def chart_svg(lang: str, name: str, points: Sequence[Reading], start: float, end: float, tz: ZoneInfo,
              unit: str, threshold: float | None = None) -> str:
    """A reading's mean as a line and its min-max as a band, over [start,
    end]; a gap of more than two intervals breaks the line. Its title and
    description give the lowest, mean and highest values in words."""
    w, h, left, right, top, bottom = 720.0, 220.0, 52.0, 12.0, 10.0, 30.0
    label = t(lang, "chart_" + name)
    ident = f"chart-{name}"
    s = summary(points)
    if s is None:
        return (f'<p class="empty" id="{ident}">{e(label)} : {e(t(lang, "chart_empty"))}</p>' if lang == "fr"
                else f'<p class="empty" id="{ident}">{e(label)}: {e(t(lang, "chart_empty"))}</p>')
    lo, hi = s.lo, s.hi
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    lo, hi, step_v = _axis(lo, hi, 1.0 if unit != "ppm" else 100.0)

    def x(unix: float) -> float:
        return left + (unix - start) / (end - start) * (w - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (h - top - bottom)

    parts = [f'<rect class="chart-bg" x="{left:.0f}" y="{top:.0f}" width="{w - left - right:.0f}" '
             f'height="{h - top - bottom:.0f}"/>']
    for k in range(round((hi - lo) / step_v) + 1):  # the value axis, on round numbers
        v = lo + step_v * k
        parts.append(f'<line class="chart-grid" x1="{left:.0f}" y1="{y(v):.1f}" x2="{w - right:.0f}" y2="{y(v):.1f}"/>'
                     f'<text class="chart-label" x="{left - 4:.0f}" y="{y(v) + 4:.1f}" text-anchor="end">'
                     f'{_num(v, unit)}</text>')
    # the time axis: each local midnight over a week, every 6 hours over a day
    step = 6 * 3600 if end - start <= 2 * 86400 else 86400
    first = dt.datetime.fromtimestamp(start, tz).replace(minute=0, second=0, microsecond=0)
    tick = first.replace(hour=0)
    while tick.timestamp() <= end:
        u = tick.timestamp()
        if u >= start and x(u) < w - right - 60:  # a label that would not fit is left out
            text = tick.strftime("%H:%M") if step < 86400 else _day_name(lang, tick.date())
            parts.append(f'<line class="chart-grid" x1="{x(u):.1f}" y1="{top:.0f}" x2="{x(u):.1f}" y2="{h - bottom:.0f}"/>'
                         f'<text class="chart-label" x="{x(u) + 3:.1f}" y="{h - bottom + 16:.0f}">{e(text)}</text>')
        tick = (tick + dt.timedelta(seconds=step)) if step < 86400 else \
            dt.datetime.combine(tick.date() + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    segments: list[list[Reading]] = []
    for p in points:
        if segments and p.at - segments[-1][-1].at <= 2 * p.interval_s:
            segments[-1].append(p)
        else:
            segments.append([p])
    for seg in segments:
        mids = [(x(p.at - p.interval_s / 2), p) for p in seg]
        if len(mids) == 1:
            px, p = mids[0]
            parts.append(f'<line class="band-{name}" x1="{px:.1f}" y1="{y(p.hi):.1f}" x2="{px:.1f}" y2="{y(p.lo):.1f}"/>'
                         f'<circle class="line-{name}" cx="{px:.1f}" cy="{y(p.mean):.1f}" r="2.5"/>')
            continue
        band = [f"{px:.1f},{y(p.hi):.1f}" for px, p in mids] + [f"{px:.1f},{y(p.lo):.1f}" for px, p in reversed(mids)]
        parts.append(f'<polygon class="band-{name}" points="{" ".join(band)}"/>')
        parts.append(f'<polyline class="line-{name}" points="{" ".join(f"{px:.1f},{y(p.mean):.1f}" for px, p in mids)}"/>')
    if threshold is not None:
        parts.append(f'<line class="chart-threshold" x1="{left:.0f}" y1="{y(threshold):.1f}" x2="{w - right:.0f}" '
                     f'y2="{y(threshold):.1f}"/><text class="chart-label" x="{w - right - 4:.0f}" '
                     f'y="{y(threshold) - 4:.1f}" text-anchor="end">{_num(threshold, unit)} {unit}</text>')
    desc = t(lang, "chart_desc", lo=_num(s.lo, unit), mean=_num(s.mean, unit), hi=_num(s.hi, unit), unit=unit,
             n=s.count, first=dt.datetime.fromtimestamp(start, tz).strftime("%d/%m %H:%M"),
             last=dt.datetime.fromtimestamp(end, tz).strftime("%d/%m %H:%M"))
    return (f'<svg class="chart" id="{ident}" role="img" aria-labelledby="{ident}-t {ident}-d" '
            f'viewBox="0 0 {w:.0f} {h:.0f}"><title id="{ident}-t">{e(label)}</title>'
            f'<desc id="{ident}-d">{e(desc)}</desc>{"".join(parts)}</svg>')


def summary_table(lang: str, rows: Sequence[tuple[str, str, Summary | None]]) -> str:
    lines = "".join(
        f'<tr><th scope="row">{e(t(lang, "chart_" + name))}</th>'
        + (f'<td class="num">{_num(s.lo, unit)}</td><td class="num">{_num(s.mean, unit)}</td>'
           f'<td class="num">{_num(s.hi, unit)}</td><td class="num">{s.count}</td>' if s else
           '<td>—</td><td>—</td><td>—</td><td class="num">0</td>') + "</tr>"
        for name, unit, s in rows)
    return (f'<table class="summary" id="chart-summary"><caption>{e(t(lang, "chart_summary"))}</caption><thead><tr>'
            f'<th scope="col">{e(t(lang, "chart_reading"))}</th><th scope="col">{e(t(lang, "chart_min"))}</th>'
            f'<th scope="col">{e(t(lang, "chart_mean"))}</th><th scope="col">{e(t(lang, "chart_max"))}</th>'
            f'<th scope="col">{e(t(lang, "chart_count"))}</th></tr></thead><tbody>{lines}</tbody></table>')


def ended_by(session: Session, remote_ends: Sequence[tuple[float, str]]) -> str | None:
    """The role whose `board.end` (audited) ended a session ended by command: the
    latest sent within REMOTE_END_S before the board said so."""
    if session.ended != "command" or session.end is None:
        return None
    roles = [role for at, role in remote_ends if session.end - REMOTE_END_S <= at <= session.end + 5]
    return roles[-1] if roles else None


def session_rows(lang: str, sessions: Sequence[Session], day_start: float, day_end: float, now: float,
                 tz: ZoneInfo, remote_ends: Sequence[tuple[float, str]] = ()) -> str:
    """Today's sessions as table rows (one that began before midnight too)."""
    lines = []
    for s in sessions:
        end = s.end if s.end is not None else min(now, s.start + SESSION_CAP_S)
        if end <= day_start or s.start >= day_end:
            continue
        running = s.end is None and now - s.start < SESSION_CAP_S
        end_word = t(lang, "s_running") if running else (_hm(s.end, tz) if s.end is not None else t(lang, "s_unknown"))
        started = t(lang, "s_by_teacher") + " — " + t(lang, "s_src_" + ("offline" if s.source == "offline" else "gateway"))
        ended = t(lang, "s_end_" + s.ended) if s.ended in ("time", "teacher", "command", "shutdown", "boot") else \
            (s.ended or "—")
        role = ended_by(s, remote_ends)
        if role:
            ended = t(lang, "s_end_by", role=role_word(lang, role))
        lines.append(f'<tr><td>{_hm(s.start, tz)}</td><td>{e(end_word)}</td><td>{e(duration(end - s.start))}</td>'
                     f'<td>{e(started)}</td><td>{e(t(lang, "ap_on" if s.ap else "ap_off"))}</td>'
                     f'<td>{e(ended if not running else "—")}</td></tr>')
    return "".join(lines)


# the page ---------------------------------------------------------------------------------


def _not_found(request: Request, who: Principal, room: str) -> Response:
    lang = lang_of(request)
    body = (f'<p>{e(t(lang, "room_unknown_text", room=room[:40]))}</p>'
            f'<p><a href="/">{e(t(lang, "grid_title"))}</a></p>')
    return page(request, layout(lang, t(lang, "room_unknown"), body, principal=who, path=f"/rooms/{room[:40]}"), 404)


@router.get("/rooms/{room}", dependencies=[Depends(EVERYONE)])
async def room_page(request: Request, room: str, who: Actor) -> Response:
    gateway: Gateway = request.app.state.gateway
    if room not in gateway.config.rooms:
        return _not_found(request, who, room)
    lang = lang_of(request)
    policy = gateway.config.policy
    tz = ZoneInfo(policy.timezone)
    now = gateway.clock()
    today = dt.datetime.fromtimestamp(now, tz).date()
    first = today - dt.timedelta(days=DAYS - 1)
    bounds = day_bounds(first, DAYS, policy.timezone)
    span = "24h" if request.query_params.get("span") == "24h" else "7d"
    chart_start = now - 86400 if span == "24h" else bounds[0]
    history = await asyncio.to_thread(read_room, gateway.config.db, room, bounds[0] - SESSION_CAP_S, chart_start)
    bars = room_spans(history.events, now, policy.ap_cap_s)
    sessions = sessions_of(history.events)
    live = gateway.rooms().get(room, {})

    # today's sessions
    rows = session_rows(lang, sessions, bounds[-2], bounds[-1], now, tz, history.remote_ends)
    head = "".join(f'<th scope="col">{e(t(lang, k))}</th>' for k in
                   ("s_start", "s_end", "s_length", "s_started_by", "ap", "s_ended"))
    today_html = (f'<section aria-labelledby="today-h"><h2 id="today-h">{e(t(lang, "room_today"))}</h2>'
                  + (f'<table id="sessions-today"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
                     if rows else f'<p id="sessions-today">{e(t(lang, "room_no_session"))}</p>') + "</section>")

    # the week's timeline
    legend = "".join(f'<li><span class="swatch tl-{k}" aria-hidden="true"></span>{e(t(lang, "tl_" + k))}</li>'
                     for k in ("session", "ap", "projector"))
    lines = []
    for i in range(DAYS - 1, -1, -1):
        day = first + dt.timedelta(days=i)
        a, b = bounds[i], bounds[i + 1]
        totals = []
        for k in ("session", "ap", "projector"):
            seconds = sum(max(0.0, min(y, b) - max(x, a)) for x, y in bars[k])
            totals.append(f'<td class="num">{e(duration(seconds)) if seconds else "—"}</td>')
        lines.append(f'<tr id="day-{day.isoformat()}"><th scope="row">{e(_day_name(lang, day))}</th>'
                     f'<td class="tl-cell">{timeline_svg(lang, day, a, b, bars, tz)}</td>{"".join(totals)}</tr>')
    timeline_html = (
        f'<section aria-labelledby="week-h"><h2 id="week-h">{e(t(lang, "room_week"))}</h2>'
        f'<ul class="legend">{legend}</ul>'
        f'<table class="timeline-table" id="timeline"><thead><tr><th scope="col">{e(t(lang, "tl_day"))}</th>'
        f'<th scope="col">{e(t(lang, "tl_hours"))}</th>'
        + "".join(f'<th scope="col">{e(t(lang, "tl_" + k))}</th>' for k in ("session", "ap", "projector"))
        + f'</tr></thead><tbody>{"".join(lines)}</tbody></table></section>')

    # the air
    co2 = readings(history.telemetry, "co2")
    temp = readings(history.telemetry, "t")
    switch = "".join(
        f'<li><a href="/rooms/{e(room)}?span={k}"{" aria-current=true" if span == k else ""}>{e(t(lang, "span_" + k))}</a></li>'
        for k in ("7d", "24h"))
    air_html = (f'<section aria-labelledby="air-h"><h2 id="air-h">{e(t(lang, "room_air"))}</h2>'
                f'<ul class="switch" aria-label="{e(t(lang, "span_label"))}">{switch}</ul>'
                + chart_svg(lang, "co2", co2, chart_start, now, tz, "ppm", CO2_ALERT_PPM)
                + chart_svg(lang, "t", temp, chart_start, now, tz, "°C")
                + summary_table(lang, (("co2", "ppm", summary(co2)), ("t", "°C", summary(temp))))
                + f'<p class="hint">{e(t(lang, "chart_source"))}</p></section>')

    # the projector
    lamp = live.get("lamp_h")
    for _at, body in reversed(history.telemetry):
        if lamp is None and isinstance(body.get("lamp_h"), int):
            lamp = body["lamp_h"]
    for _seq, _at, body in reversed(history.events):
        if lamp is None and body.get("type") == "projector.changed" and isinstance(_data(body).get("lamp_h"), int):
            lamp = _data(body)["lamp_h"]
    faults = [(at, body) for _seq, at, body in reversed(history.events)
              if body.get("type") == "projector.fault"
              or (body.get("type") == "projector.changed" and _data(body).get("state") == "error")]
    fault_items = "".join(f'<li><time>{e(dt.datetime.fromtimestamp(at, tz).strftime("%d/%m %H:%M"))}</time> '
                          f'{e(event_words(lang, str(body.get("type")), _data(body)))}</li>' for at, body in faults[:50])
    projector_html = (
        f'<section aria-labelledby="projector-h"><h2 id="projector-h">{e(t(lang, "projector"))}</h2><dl class="facts">'
        f'<div><dt>{e(t(lang, "room_projector_now"))}</dt><dd>{e(projector_word(lang, live.get("projector")))}</dd></div>'
        f'<div><dt>{e(t(lang, "room_lamp"))}</dt><dd id="lamp-hours">'
        f'{e(t(lang, "lamp", h=lamp)) if lamp is not None else "—"}</dd></div></dl>'
        f'<h3>{e(t(lang, "room_faults"))}</h3>'
        + (f'<ul id="projector-faults" class="log">{fault_items}</ul>' if fault_items else
           f'<p id="projector-faults">{e(t(lang, "room_no_fault"))}</p>') + "</section>")

    # the events, in words
    items = "".join(
        f'<li><time>{e(dt.datetime.fromtimestamp(at, tz).strftime("%d/%m %H:%M:%S"))}</time> '
        f'{e(event_words(lang, str(body.get("type", "?")), _data(body)))}</li>'
        for _seq, at, body in list(reversed(history.events))[:EVENTS_SHOWN] if at >= bounds[0])
    events_html = (f'<section aria-labelledby="log-h"><h2 id="log-h">{e(t(lang, "room_log"))}</h2>'
                   + (f'<ol id="room-events" class="log">{items}</ol>' if items else
                      f'<p id="room-events">{e(t(lang, "no_events"))}</p>') + "</section>")

    online = live.get("online")
    status = t(lang, "online") if online else (t(lang, "offline") if online is False else t(lang, "never_seen"))
    intro = (f'<p class="room-status"><span class="badge {"online" if online else "offline" if online is False else ""}">'
             f'{e(status)}</span> <a href="/radio">{e(t(lang, "nav_radio"))}</a></p>')
    body = intro + today_html + timeline_html + air_html + projector_html + events_html
    return page(request, layout(lang, t(lang, "room_title", room=room), body, principal=who, active="/",
                                path=f"/rooms/{room}"))
