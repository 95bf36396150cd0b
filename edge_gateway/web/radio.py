"""Radio transparency: how many minutes each classroom's Wi-Fi access point
was on, per day and per week, for the parents and the school council
(loi n° 2015-136, art. 7: off outside digital teaching), as a page that
prints on A4 and as a PDF.

Where the minutes come from: the board's `ap.changed` events (`on` true or
false, each time its relay changes) and its `boot` events (the relay is off
at every boot), as the gateway stored them. The telemetry's `ap` is only the
latest state of each 5-minute interval: too coarse to count minutes, so it
is not used. An event's moment is the board's own `time` when it knew it;
when it did not, the board's uptime placed against another event of the same
boot that had both; else the gateway's arrival time (`at`). A run whose end
has not reached the gateway (the board away, its outbox not yet sent) counts
up to now, never past the hard cap (`policy.ap_cap_s`): the board's relay
cannot stay on longer. Days are the school's local days (`policy.timezone`),
so a run across midnight or a week's end is split where the clock says.

`minutes_by_day` is pure (runs in, minutes out) and held by a hypothesis
test: each day's minutes sum to the total, none negative, none longer than
its day."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from common.web.auth import Allow, Principal, actor
from common.web.login import lang_of, page

from ..config import Config
from ..gateway import Gateway
from ..history import loads_safe, reader
from .i18n import t
from .render import e, layout

EVERYONE = Allow("director", "technician", "viewer", page=True)
Actor = Annotated[Principal, Depends(actor)]
router = APIRouter(include_in_schema=False)

RANGE_DAYS_MAX = 31
WEEKS_SHOWN = 6  # the week asked for and the five before it, room by room
# Events reach the gateway late after an outage (a board's outbox, an ADSL
# line down for days): a past week's events are read up to this long after it.
LATE_S = 7 * 86400
_ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


# the computation (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    """The relay of `room` went on (True) or off (False) at `at` (Unix seconds)."""

    room: str
    at: float
    on: bool


def spans(switches: Iterable[Switch], now: float, cap_s: float) -> dict[str, list[tuple[float, float]]]:
    """Each room's runs (start, end), oldest first, none overlapping, none
    past `now`. Switches of a room are taken in the order given at equal
    times (the record order). A run whose end is not known yet ends at `now`,
    and at most `cap_s` after it began."""
    by_room: dict[str, list[Switch]] = {}
    for s in switches:
        by_room.setdefault(s.room, []).append(s)
    out: dict[str, list[tuple[float, float]]] = {}
    for room, items in by_room.items():
        items.sort(key=lambda s: s.at)  # stable: equal times keep the record order
        runs: list[tuple[float, float]] = []
        began: float | None = None
        for s in items:
            if s.on and began is None:
                began = s.at
            elif not s.on and began is not None:
                runs.append((began, s.at))
                began = None
        if began is not None:
            runs.append((began, min(now, began + cap_s)))
        merged: list[tuple[float, float]] = []
        for a, b in runs:
            b = min(b, now)
            if b <= a:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        out[room] = merged
    return out


def day_bounds(first: dt.date, days: int, timezone: str) -> list[float]:
    """The Unix times of the local midnights that start each day, and the one after the last:
    `days` + 1 values (a day of the clock change is 23 or 25 hours long)."""
    tz = ZoneInfo(timezone)
    return [dt.datetime.combine(first + dt.timedelta(days=i), dt.time(0), tzinfo=tz).timestamp()
            for i in range(days + 1)]


@dataclass(frozen=True)
class RadioTable:
    """Minutes of access point per room (rows) and local day (columns)."""

    days: tuple[dt.date, ...]
    minutes: dict[str, tuple[int, ...]]

    def total(self, room: str) -> int:
        return sum(self.minutes[room])

    def day_total(self, index: int) -> int:
        return sum(row[index] for row in self.minutes.values())

    @property
    def school_total(self) -> int:
        return sum(self.total(r) for r in self.minutes)


def _whole_minutes(seconds: Sequence[float]) -> tuple[int, ...]:
    # Rounded on the running total, so that the days add up to the rounded
    # total (a report whose rows do not add up looks cooked), and a day is
    # never rounded past its length.
    out, before, running = [], 0, 0.0
    for s in seconds:
        running += s
        now = math.floor(running / 60 + 0.5)
        out.append(now - before)
        before = now
    return tuple(out)


def minutes_by_day(runs: dict[str, list[tuple[float, float]]], rooms: Iterable[str], first: dt.date, days: int,
                   timezone: str) -> RadioTable:
    """Each room's runs cut at the school's local midnights, in whole minutes."""
    bounds = day_bounds(first, days, timezone)
    minutes: dict[str, tuple[int, ...]] = {}
    for room in rooms:
        seconds = [0.0] * days
        for a, b in runs.get(room, ()):
            for i in range(days):
                lo, hi = max(a, bounds[i]), min(b, bounds[i + 1])
                if hi > lo:
                    seconds[i] += hi - lo
        minutes[room] = _whole_minutes(seconds)
    return RadioTable(tuple(first + dt.timedelta(days=i) for i in range(days)), minutes)


def moments(rows: Iterable[tuple[str, float, dict]]) -> list[tuple[str, float, dict]]:
    """(room, moment, body) for stored events (room, at, body): the board's
    `time` when it knew it, else its uptime placed against another event of
    the same boot that carried both, else the gateway's `at`."""
    rows = list(rows)
    offsets: dict[tuple[str, object], float] = {}
    for room, _at, body in rows:
        when, up = body.get("time"), body.get("uptime_ms")
        if isinstance(when, (int, float)) and isinstance(up, (int, float)):
            offsets.setdefault((room, body.get("boot")), when - up / 1000)
    out = []
    for room, at, body in rows:
        when, up = body.get("time"), body.get("uptime_ms")
        offset = offsets.get((room, body.get("boot")))
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            moment = float(when)
        elif offset is not None and isinstance(up, (int, float)):
            moment = offset + up / 1000
        else:
            moment = at
        out.append((room, moment, body))
    return out


def switches_of(rows: Iterable[tuple[str, float, dict]]) -> list[Switch]:
    """The access point's switches among stored events (room, at, body), in record order."""
    out = []
    for room, moment, body in moments(rows):
        kind = body.get("type")
        data = body.get("data")
        if not isinstance(data, dict):
            data = {}
        if kind == "ap.changed":
            out.append(Switch(room, moment, bool(data.get("on"))))
        elif kind == "boot":
            out.append(Switch(room, moment, False))
    return out


# reading (read-only, in a thread) --------------------------------------------------------


def read_switches(path: str, since: float, until: float, cap_s: float) -> list[Switch]:
    """The switches that can matter for [since, until): from a cap before
    (a run already on), to LATE_S after (events that arrived late)."""
    with closing(reader(path)) as conn:
        # a cheap filter before parsing: the access point's events, and the boots (whose data has reset_cause)
        rows = conn.execute(
            "SELECT room, at, body FROM records WHERE kind = 'evt' AND at >= ? AND at < ? "
            "AND (instr(body, 'ap.changed') > 0 OR instr(body, 'reset_cause') > 0) ORDER BY seq",
            (since - cap_s - 86400, until + LATE_S)).fetchall()
    parsed = [(room, at, body) for room, at, text in rows if isinstance(body := loads_safe(text), dict)]
    return switches_of(parsed)


def radio_table(path: str, rooms: Iterable[str], first: dt.date, days: int, timezone: str, now: float,
                cap_s: float) -> RadioTable:
    bounds = day_bounds(first, days, timezone)
    runs = spans(read_switches(path, bounds[0], bounds[-1], cap_s), now, cap_s)
    return minutes_by_day(runs, rooms, first, days, timezone)


# the period asked for --------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    first: dt.date
    days: int
    week: str | None  # "2026-W48" for a whole ISO week

    @property
    def last(self) -> dt.date:
        return self.first + dt.timedelta(days=self.days - 1)

    def query(self) -> str:
        return f"week={self.week}" if self.week else f"from={self.first.isoformat()}&to={self.last.isoformat()}"


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_of(day: dt.date) -> Period:
    monday = day - dt.timedelta(days=day.weekday())
    return Period(monday, 7, iso_week(monday))


def _date(text: str) -> dt.date:
    day = dt.date.fromisoformat(text)
    if not dt.date(2000, 1, 1) <= day <= dt.date(2099, 12, 31):
        raise ValueError("a date from 2000 to 2099")
    return day


def parse_period(week: str | None, start: str | None, end: str | None, today: dt.date) -> Period:
    """The week asked for ("2026-W48", or any date of it), or a range of
    local dates (at most RANGE_DAYS_MAX days); none: this week. ValueError
    with the field's name first."""
    if (week and len(week) > 40) or (start and len(start) > 40) or (end and len(end) > 40):
        raise ValueError("week" if week else "from" if start and len(start) > 40 else "to")
    if week:
        m = _ISO_WEEK.match(week.strip())
        try:
            if m:
                monday = dt.date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
                _date(monday.isoformat())
                return week_of(monday)
            return week_of(_date(week.strip()))
        except ValueError:
            raise ValueError("week") from None
    if start or end:
        try:
            first = _date((start or "").strip())
        except ValueError:
            raise ValueError("from") from None
        try:
            last = _date((end or "").strip())
        except ValueError:
            raise ValueError("to") from None
        if last < first or (last - first).days + 1 > RANGE_DAYS_MAX:
            raise ValueError("to")
        return Period(first, (last - first).days + 1, None)
    return week_of(today)


# the page ---------------------------------------------------------------------------------


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _day_head(lang: str, day: dt.date) -> str:
    return f"{t(lang, 'wd_' + str(day.weekday()))} {day.day:02d}/{day.month:02d}"


def _period_words(lang: str, period: Period) -> str:
    span = t(lang, "radio_span", first=period.first.strftime("%d/%m/%Y"), last=period.last.strftime("%d/%m/%Y"))
    if period.week:
        return t(lang, "radio_week", n=int(period.week[-2:]), year=period.week[:4]) + " " + span
    return span


def table_html(lang: str, table: RadioTable, today: dt.date, caption: str) -> str:
    def cell(room: str, i: int) -> str:
        return "—" if table.days[i] > today else str(table.minutes[room][i])

    head = "".join(f'<th scope="col">{e(_day_head(lang, d))}</th>' for d in table.days)
    rows = "".join(
        f'<tr id="radio-{e(room)}"><th scope="row">{e(room)}</th>'
        + "".join(f'<td class="num">{cell(room, i)}</td>' for i in range(len(table.days)))
        + f'<td class="num total">{table.total(room)}</td></tr>' for room in table.minutes)
    foot = (f'<tr><th scope="row">{e(t(lang, "radio_school"))}</th>'
            + "".join(f'<td class="num">{"—" if d > today else table.day_total(i)}</td>'
                      for i, d in enumerate(table.days))
            + f'<td class="num total">{table.school_total}</td></tr>')
    return (f'<div class="scroll"><table class="radio" id="radio-table"><caption>{e(caption)}</caption>'
            f'<thead><tr><th scope="col">{e(t(lang, "room"))}</th>{head}'
            f'<th scope="col">{e(t(lang, "radio_total"))}</th></tr></thead><tbody>{rows}</tbody>'
            f'<tfoot>{foot}</tfoot></table></div>')


@router.get("/radio", dependencies=[Depends(EVERYONE)])
async def radio_page(request: Request, who: Actor) -> Response:
    gateway = _gateway(request)
    lang = lang_of(request)
    policy = gateway.config.policy
    now = gateway.clock()
    today = dt.datetime.fromtimestamp(now, ZoneInfo(policy.timezone)).date()
    q = request.query_params
    error, wrong = "", ""
    try:
        period = parse_period(q.get("week"), q.get("from"), q.get("to"), today)
    except ValueError as err:
        wrong = str(err)
        error = t(lang, "radio_bad_" + wrong)
        period = week_of(today)

    def invalid(name: str) -> str:
        return ' aria-invalid="true" aria-describedby="radio-error"' if wrong == name else ""
    rooms = sorted(gateway.config.rooms)
    table = await asyncio.to_thread(radio_table, gateway.config.db, rooms, period.first, period.days,
                                    policy.timezone, now, policy.ap_cap_s)
    # the week asked for and the ones before it, room by room
    weeks = [week_of(period.first - dt.timedelta(days=7 * k)) for k in range(WEEKS_SHOWN)]
    history = await asyncio.to_thread(radio_table, gateway.config.db, rooms, weeks[-1].first, 7 * WEEKS_SHOWN,
                                      policy.timezone, now, policy.ap_cap_s)
    week_heads = "".join(
        f'<th scope="col"><a href="/radio?{w.query()}">{e(t(lang, "radio_week_short", n=int(w.week[-2:])))}</a>'
        f'<span class="sub">{w.first.strftime("%d/%m")}</span></th>' for w in weeks if w.week)
    week_rows = "".join(
        f'<tr><th scope="row"><a href="/rooms/{e(room)}">{e(room)}</a></th>'
        + "".join(f'<td class="num">{sum(history.minutes[room][7 * (WEEKS_SHOWN - 1 - k):7 * (WEEKS_SHOWN - k)])}</td>'
                  for k in range(WEEKS_SHOWN)) + "</tr>" for room in rooms)
    weeks_table = (f'<div class="scroll"><table class="radio" id="radio-weeks"><caption>{e(t(lang, "radio_weeks"))}'
                   f'</caption><thead><tr><th scope="col">{e(t(lang, "room"))}</th>{week_heads}</tr></thead>'
                   f'<tbody>{week_rows}</tbody></table></div>')
    week_value = period.week or iso_week(period.first)
    pickers = (
        f'<div class="pickers">'
        f'<form class="inline-form" method="get" action="/radio" id="week-picker">'
        f'<label for="radio-week">{e(t(lang, "radio_pick_week"))}</label>'
        f'<input id="radio-week" name="week" type="week" value="{e(week_value)}"{invalid("week")}>'
        f'<button type="submit">{e(t(lang, "radio_show"))}</button></form>'
        f'<form class="inline-form" method="get" action="/radio" id="range-picker">'
        f'<label for="radio-from">{e(t(lang, "radio_from"))}</label>'
        f'<input id="radio-from" name="from" type="date" value="{period.first.isoformat()}"{invalid("from")}>'
        f'<label for="radio-to">{e(t(lang, "radio_to"))}</label>'
        f'<input id="radio-to" name="to" type="date" value="{period.last.isoformat()}"{invalid("to")}>'
        f'<button type="submit">{e(t(lang, "radio_show"))}</button></form></div>')
    body = (
        (f'<p class="field-error" id="radio-error" role="alert">{e(error)}</p>' if error else "")
        + pickers
        + f'<p class="report-head"><strong>{e(school_label(lang, gateway.config))}</strong>'
        f' — <span id="radio-period">{e(_period_words(lang, period))}</span></p>'
        f'<p>{e(t(lang, "radio_intro"))}</p>'
        f'<p class="actions"><a id="radio-pdf" href="/radio.pdf?{period.query()}" download>'
        f'{e(t(lang, "radio_pdf"))}</a> <button type="button" class="print" data-print>{e(t(lang, "radio_print"))}'
        f'</button></p>'
        + table_html(lang, table, today, t(lang, "radio_caption"))
        + weeks_table
        + f'<p class="hint">{e(t(lang, "radio_source", cap=policy.ap_cap_s // 60, tz=policy.timezone))} '
        f'{e(t(lang, "radio_made", at=dt.datetime.fromtimestamp(now, ZoneInfo(policy.timezone)).strftime("%d/%m/%Y %H:%M")))}'
        f'</p>')
    return page(request, layout(lang, t(lang, "radio_title"), body, principal=who, active="/radio", path="/radio",
                                scripts=("print.js",)))


# the PDF ---------------------------------------------------------------------------------

# The PDF's built-in fonts (Helvetica) write Latin-1: French is in it, but
# not these.
_LATIN1 = str.maketrans({"—": "-", "–": "-", "’": "'", "…": "...", "₂": "2", "œ": "oe", "Œ": "OE", " ": " ",
                         "«": "\"", "»": "\""})


def school_label(lang: str, config: Config) -> str:
    """The school as the report names it: its name (`school_name` in
    school.toml) and its code, or the code alone."""
    if config.school_name:
        return t(lang, "radio_school_named", name=config.school_name, school=config.school)
    return t(lang, "radio_school_name", school=config.school)


def _pdf_text(text: str) -> str:
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def radio_pdf(lang: str, school: str, period_words: str, table: RadioTable, today: dt.date, made: str) -> bytes:
    """The report on A4 (landscape beyond a week's columns)."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    wide = len(table.days) > 7
    pdf = FPDF(orientation="L" if wide else "P", unit="mm", format="A4")
    pdf.set_title(_pdf_text(t(lang, "radio_title")))
    pdf.set_author("Préau")
    pdf.set_creator("Préau")
    pdf.set_margins(12, 12, 12)
    pdf.set_auto_page_break(True, 12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, _pdf_text(t(lang, "radio_title")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, _pdf_text(school), new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, _pdf_text(period_words), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(0, 5, _pdf_text(t(lang, "radio_intro")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    size = 7 if len(table.days) > 14 else 9
    pdf.set_font("Helvetica", "", size)
    first_col = 3 if len(table.days) <= 14 else 2
    widths = (first_col,) + (1,) * len(table.days) + (first_col - 1 or 1,)
    bold = FontFace(emphasis="BOLD")
    with pdf.table(col_widths=widths, text_align="CENTER", headings_style=bold, line_height=size * 0.6) as rows:
        head = rows.row()
        head.cell(_pdf_text(t(lang, "room")))
        for d in table.days:
            head.cell(_pdf_text(_day_head(lang, d)))
        head.cell(_pdf_text(t(lang, "radio_total")))
        for room, minutes in table.minutes.items():
            row = rows.row()
            row.cell(_pdf_text(room))
            for i, d in enumerate(table.days):
                row.cell("-" if d > today else str(minutes[i]))
            row.cell(str(table.total(room)), style=bold)
        row = rows.row()
        row.cell(_pdf_text(t(lang, "radio_school")), style=bold)
        for i, d in enumerate(table.days):
            row.cell("-" if d > today else str(table.day_total(i)), style=bold)
        row.cell(str(table.school_total), style=bold)
    pdf.ln(3)
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(0, 4, _pdf_text(t(lang, "radio_unit") + " " + made), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


@router.get("/radio.pdf", dependencies=[Depends(EVERYONE)])
async def radio_pdf_download(request: Request) -> Response:
    gateway = _gateway(request)
    lang = lang_of(request)
    policy = gateway.config.policy
    now = gateway.clock()
    tz = ZoneInfo(policy.timezone)
    today = dt.datetime.fromtimestamp(now, tz).date()
    q = request.query_params
    try:
        period = parse_period(q.get("week"), q.get("from"), q.get("to"), today)
    except ValueError as err:
        return Response(t(lang, "radio_bad_" + str(err)), status_code=422, media_type="text/plain; charset=utf-8")
    rooms = sorted(gateway.config.rooms)
    table = await asyncio.to_thread(radio_table, gateway.config.db, rooms, period.first, period.days,
                                    policy.timezone, now, policy.ap_cap_s)
    made = t(lang, "radio_made", at=dt.datetime.fromtimestamp(now, tz).strftime("%d/%m/%Y %H:%M"))
    content = await asyncio.to_thread(radio_pdf, lang, school_label(lang, gateway.config), _period_words(lang, period), table,
                                      today, made)
    name = f"wifi-{gateway.config.school}-{period.week or period.first.isoformat() + '_' + period.last.isoformat()}.pdf"
    return Response(content, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
