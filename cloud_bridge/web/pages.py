"""The city's supervision pages: schools at a glance (filter and search),
a school and its classrooms, equipment (projectors, boards and firmware,
kits and where each is), usage for a quarter with its CSV, and alerts
(open ones acknowledged and closed by a person, history, the rules in
force). Each route names its roles (`Allow`); a form's POST carries the
session's CSRF token and answers with a redirect (post/redirect/get).

The store's reads block: the pages that read it are plain `def`
handlers, which FastAPI runs in its thread pool."""

from __future__ import annotations

import asyncio
import datetime as dt
import smtplib
from collections import Counter
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup

from common.web import render as _render
from common.web.auth import Allow, Principal, actor
from common.web.login import add_login_routes, lang_of, page, see_other
from common.web.render import API_DOCS_SCRIPT, api_docs

from ..alerts import DEFAULTS, AlertBook, Alerts, Rules, mail_for, send_mail
from . import usage as _usage
from .accounts import CityAccountStore
from .forecast import SAMPLE_WEEKS, LampForecast, lamp_forecast, projector_series
from .i18n import local_time, projector_word, role_word, rule_word, t

e = _render.e
EVERYONE = Allow("supervisor", "technician", "viewer", page=True)
HANDLERS = Allow("supervisor", "technician", page=True)  # acknowledge and close alerts
SUPERVISOR = Allow("supervisor", page=True)
LINKS = (("/", "nav_schools", EVERYONE.roles), ("/equipment", "nav_equipment", EVERYONE.roles),
         ("/usage", "nav_usage", EVERYONE.roles), ("/alerts", "nav_alerts", EVERYONE.roles),
         ("/docs", "nav_docs", EVERYONE.roles))

router = APIRouter(include_in_schema=False)
Actor = Annotated[Principal, Depends(actor)]


@dataclass
class Supervision:
    """What the pages read: the store, the alerts, the city's time zone."""

    store: object  # cloud_bridge.store.CityStore (its public reads)
    accounts: CityAccountStore
    book: AlertBook
    alerts: Alerts
    rules: Rules
    timezone: str


def _sup(request: Request) -> Supervision:
    return request.app.state.supervision


def layout(lang: str, title: str, body: str | Markup, *, principal: Principal | None = None, active: str = "",
           path: str = "/", scripts: tuple[str, ...] = ()) -> str:
    return _render.layout(t, role_word, lang, title, body, principal=principal, links=LINKS, active=active,
                          path=path, scripts=scripts)


add_login_routes(router, t, layout, EVERYONE)


def _state_badge(lang: str, online: bool | None) -> str:
    status = "online" if online else ("offline" if online is False else "never")
    word = t(lang, {"online": "online", "offline": "offline", "never": "never_seen"}[status])
    return f'<span class="badge {status}">{e(word)}</span>'


def _who(lang: str, sup: Supervision, who: str | None) -> str:
    """"supervisor:u-0001" as "supervision (u-0001, login)"."""
    if not who:
        return "—"
    role, _, account = who.partition(":")
    if not account:
        return who
    found = sup.accounts.get(account)
    return f"{role_word(lang, role)} ({account}{', ' + found.login if found else ''})"


def _detail(alert: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in sorted(alert["detail"].items()) if k not in ("last_seen", "at"))


# schools --------------------------------------------------------------------------------------------


@router.get("/", dependencies=[Depends(EVERYONE)])
def schools_page(request: Request, who: Actor) -> Response:
    sup = _sup(request)
    lang = lang_of(request)
    q = request.query_params.get("q", "")[:40].strip().lower()
    state = request.query_params.get("state", "all")
    if state not in ("all", "online", "offline", "alerts"):
        state = "all"
    schools = sup.store.status()["schools"]  # type: ignore[attr-defined]
    open_by_school = Counter(a["school"] for a in sup.book.open_alerts())
    lines = []
    for s in schools:
        code = s["school"]
        if q and q not in code.lower() and q not in (s["gateway"] or "").lower():
            continue
        if (state == "online" and not s["online"]) or (state == "offline" and s["online"] is not False) or \
                (state == "alerts" and not open_by_school[code]):
            continue
        rooms = s["rooms"]
        up = sum(1 for r in rooms if r["online"])
        since = ""
        if s["online"] is False and s["last_seen"] is not None:
            since = " " + e(t(lang, "offline_since", t=local_time(s["last_seen"], sup.timezone)))
        alerts = open_by_school[code]
        alert_cell = (f'<a href="/alerts?school={e(code)}"><span class="badge alert">{alerts}</span></a>'
                      if alerts else "0")
        lines.append(f'<tr id="school-{e(code)}"><th scope="row"><a href="/schools/{e(code)}">{e(code)}</a></th>'
                     f'<td>{_state_badge(lang, s["online"])}{since}</td>'
                     f'<td class="num">{up} / {len(rooms)}</td><td class="num">{alert_cell}</td>'
                     f'<td>{e(local_time(s["last_seen"], sup.timezone))}</td></tr>')
    options = "".join(f'<option value="{v}"{" selected" if v == state else ""}>{e(t(lang, "f_" + v))}</option>'
                      for v in ("all", "online", "offline", "alerts"))
    form = (f'<form class="filters" method="get" action="/" role="search">'
            f'<div><label for="q">{e(t(lang, "search"))}</label><input id="q" name="q" type="search" '
            f'value="{e(q)}" maxlength="40"></div>'
            f'<div><label for="state">{e(t(lang, "filter"))}</label><select id="state" name="state">{options}'
            f'</select></div><button type="submit">{e(t(lang, "apply"))}</button></form>')
    head = "".join(f'<th scope="col"{cls}>{e(t(lang, k))}</th>' for k, cls in (
        ("school", ""), ("gateway", ""), ("rooms_online", ' class="num"'), ("open_alerts", ' class="num"'),
        ("last_seen", "")))
    table = (f'<table id="schools"><caption>{e(t(lang, "schools_title"))}</caption><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(lines)}</tbody></table>' if lines else f'<p>{e(t(lang, "no_school"))}</p>')
    return page(request, layout(lang, t(lang, "schools_title"), form + table, principal=who, active="/", path="/"))


@router.get("/schools/{school}", dependencies=[Depends(EVERYONE)])
def school_page(request: Request, school: str, who: Actor) -> Response:
    sup = _sup(request)
    lang = lang_of(request)
    found = next((s for s in sup.store.status()["schools"] if s["school"] == school), None)  # type: ignore[attr-defined]
    if found is None:
        return page(request, layout(lang, t(lang, "school_title", school=school[:40]), f"<p>{e(t(lang, 'no_school'))}</p>",
                                    principal=who, path="/"), 404)
    tz = sup.timezone
    rooms = []
    for r in found["rooms"]:
        session = r["session"] if r["online"] else None
        session_word = t(lang, f"s_{session}") if session in ("idle", "requesting", "active") else "—"
        ap = "—" if not r["online"] or r["ap"] is None else t(lang, "ap_on" if r["ap"] else "ap_off")
        rooms.append(f'<tr id="room-{e(r["room"])}"><th scope="row">{e(r["room"])}</th>'
                     f'<td>{_state_badge(lang, r["online"])}</td><td>{e(session_word)}</td><td>{e(ap)}</td>'
                     f'<td>{e(r["fw"] or "—")}</td><td>{e(r["board"] or "—")}</td>'
                     f'<td>{e(local_time(r["last_seen"], tz))}</td></tr>')
    head = "".join(f'<th scope="col">{e(t(lang, k))}</th>' for k in (
        "room", "status", "session", "ap", "firmware", "board", "last_seen"))
    since = ""
    if found["online"] is False and found["last_seen"] is not None:
        since = " " + e(t(lang, "offline_since", t=local_time(found["last_seen"], tz)))
    body = (f'<p>{e(t(lang, "gateway"))} {e(found["gateway"] or "—")} : {_state_badge(lang, found["online"])}{since}</p>'
            f'<table id="rooms"><caption>{e(t(lang, "rooms_title"))}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rooms)}</tbody></table>')
    body += _alert_table(lang, sup, who, sup.book.open_alerts(school), t(lang, "open_title"), "open-alerts",
                         actions=False, empty="no_alert")
    kits = sup.store.kits(school=school)  # type: ignore[attr-defined]
    body += _kits_table(lang, sup, kits, t(lang, "kits_here"))
    outages = [a for a in sup.book.open_alerts(school) if a["rule"] == "gateway_offline"] + \
        sup.book.history(school, limit=50, rule="gateway_offline")
    if outages:
        lines = "".join(f'<tr><td>{e(local_time(a["detail"].get("last_seen") or a["opened_at"], tz))}</td>'
                        f'<td>{e(local_time(a["cleared_at"], tz))}</td></tr>' for a in outages)
        body += (f'<table id="outages"><caption>{e(t(lang, "outages"))}</caption><thead><tr>'
                 f'<th scope="col">{e(t(lang, "from"))}</th><th scope="col">{e(t(lang, "until"))}</th></tr></thead>'
                 f'<tbody>{lines}</tbody></table>')
    else:
        body += f'<h2>{e(t(lang, "outages"))}</h2><p>{e(t(lang, "no_outage"))}</p>'
    return page(request, layout(lang, t(lang, "school_title", school=school), body, principal=who, active="/",
                                path=f"/schools/{school}"))


def _kits_table(lang: str, sup: Supervision, kits: list[dict], caption: str) -> str:
    if not kits:
        return f'<h2>{e(caption)}</h2><p>{e(t(lang, "none"))}</p>'
    lines = "".join(
        f'<tr><th scope="row">{e(k["kit"])}</th><td>{e(k["type"] or "—")}</td>'
        f'<td><a href="/schools/{e(k["school"])}">{e(k["school"])}</a>, {e(k["room"])}</td>'
        f'<td>{e(t(lang, "attached" if k["attached"] else "detached"))}</td>'
        f'<td>{e(local_time(k["since"], sup.timezone))}</td></tr>' for k in kits)
    head = "".join(f'<th scope="col">{e(t(lang, x))}</th>' for x in ("kit", "kit_type", "where", "status", "since"))
    return (f'<table class="kits"><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{lines}</tbody></table>')


# equipment ------------------------------------------------------------------------------------------


def _lamp_life_h(sup: Supervision) -> float:
    """The `lamp_hours` alert's threshold: the forecast says when it opens
    (its default when the city turned that alert off)."""
    return (sup.rules.rules.get("lamp_hours") or DEFAULTS["lamp_hours"])["hours"]


def _hours(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _due_cell(lang: str, sup: Supervision, forecast: LampForecast | None, now: float, weeks: int) -> str:
    if forecast is None or forecast.due_at is None:
        return e(t(lang, "not_enough_data"))
    if forecast.worn:
        return f'<span class="badge alert">{e(t(lang, "lamp_worn"))}</span>'
    if forecast.due_at - now > _HORIZON_S:
        return e(t(lang, "lamp_beyond", years=_HORIZON_S // (365 * 86400)))
    day = dt.datetime.fromtimestamp(forecast.due_at, ZoneInfo(sup.timezone)).strftime("%d/%m/%Y")
    if forecast.due_within(now, weeks):
        return f'{e(day)} <span class="badge alert">{e(t(lang, "lamp_soon", weeks=weeks))}</span>'
    return e(day)


_HORIZON_S = 10 * 365 * 86400  # a lamp barely used: no date shown that far ahead


@router.get("/equipment", dependencies=[Depends(EVERYONE)])
def equipment_page(request: Request, who: Actor) -> Response:
    sup = _sup(request)
    lang = lang_of(request)
    store = sup.store
    now = sup.alerts.now()
    life_h = _lamp_life_h(sup)
    weeks = request.app.state.settings.lamp_due_weeks
    projectors = []
    for reading in store.latest_telemetry():  # type: ignore[attr-defined]
        values = reading.get("readings") or {}
        if "projector" not in values and "lamp_h" not in values:
            continue
        model = values.get("projector_model")
        lamp = values.get("lamp_h")
        series = projector_series(store, reading["school"], reading["room"], now)
        forecast = lamp_forecast(series, life_h, now)
        rate = "—" if forecast is None or forecast.per_week_h is None else _hours(forecast.per_week_h)
        due = _due_cell(lang, sup, forecast, now, weeks)
        line = (f'<tr id="projector-{e(reading["school"])}-{e(reading["room"])}"><th scope="row">'
                f'<a href="/schools/{e(reading["school"])}">{e(reading["school"])}</a>, '
                f'{e(reading["room"])}</th><td>{e(model if isinstance(model, str) else t(lang, "not_reported"))}</td>'
                f'<td>{e(projector_word(lang, str(values["projector"])) if values.get("projector") else "—")}</td>'
                f'<td class="num">{e(str(lamp) if lamp is not None else "—")}</td>'
                f'<td class="num">{e(_hours(life_h))}</td><td class="num">{e(rate)}</td><td>{due}</td>'
                f'<td>{e(local_time(reading["at"], sup.timezone))}</td></tr>')
        # Soonest replacement first; the lamps without a date after, by school and room.
        due_at = forecast.due_at if forecast is not None and forecast.due_at is not None else float("inf")
        projectors.append(((due_at, reading["school"], reading["room"]), line))
    projectors.sort(key=lambda item: item[0])
    cols = (("room", ""), ("model", ""), ("projector_state", ""), ("lamp_hours", ' class="num"'),
            ("lamp_life", ' class="num"'), ("lamp_per_week", ' class="num"'), ("lamp_due", ""), ("last_seen", ""))
    head = "".join(f'<th scope="col"{cls}>{e(t(lang, x))}</th>' for x, cls in cols)
    body = (f'<table id="projectors"><caption>{e(t(lang, "projectors"))}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(line for _, line in projectors)}</tbody></table>'
            f'<p class="hint">{e(t(lang, "lamp_note", life=_hours(life_h), weeks=weeks, sample=SAMPLE_WEEKS))}</p>'
            if projectors else f'<h2>{e(t(lang, "projectors"))}</h2><p>{e(t(lang, "none"))}</p>')
    boards, versions = [], Counter()
    for s in store.status()["schools"]:  # type: ignore[attr-defined]
        for r in s["rooms"]:
            versions[r["fw"] or "—"] += 1
            boards.append(f'<tr><th scope="row"><a href="/schools/{e(s["school"])}">{e(s["school"])}</a>, '
                          f'{e(r["room"])}</th><td>{e(r["board"] or "—")}</td><td>{e(r["fw"] or "—")}</td>'
                          f'<td>{_state_badge(lang, r["online"])}</td></tr>')
    summary = "".join(f'<tr><th scope="row">{e(v)}</th><td class="num">{n}</td></tr>'
                      for v, n in sorted(versions.items()))
    body += (f'<table id="versions"><caption>{e(t(lang, "versions"))}</caption><thead><tr>'
             f'<th scope="col">{e(t(lang, "firmware"))}</th><th scope="col" class="num">{e(t(lang, "count"))}</th>'
             f'</tr></thead><tbody>{summary}</tbody></table>' if summary else "")
    head = "".join(f'<th scope="col">{e(t(lang, x))}</th>' for x in ("room", "board", "firmware", "status"))
    body += (f'<table id="boards"><caption>{e(t(lang, "boards"))}</caption><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(boards)}</tbody></table>' if boards else "")
    body += _kits_table(lang, sup, store.kits(), t(lang, "kits"))  # type: ignore[attr-defined]
    return page(request, layout(lang, t(lang, "equipment_title"), body, principal=who, active="/equipment",
                                path="/equipment"))


# usage ------------------------------------------------------------------------------------------------


def _quarter(request: Request, sup: Supervision) -> str:
    today = dt.datetime.now(ZoneInfo(sup.timezone)).date()
    return _usage.parse_quarter(request.query_params.get("quarter"), today)


@router.get("/usage", dependencies=[Depends(EVERYONE)])
def usage_page(request: Request, who: Actor) -> Response:
    sup = _sup(request)
    lang = lang_of(request)
    quarter = _quarter(request, sup)
    standby = _usage.Standby.of(request.app.state.settings)
    rows = _usage.usage(sup.store, quarter, sup.timezone, standby=standby, now=sup.alerts.now())
    year = int(quarter[:4])
    choices = [f"{y}-Q{q}" for y in (year - 1, year, year + 1) for q in (1, 2, 3, 4)]
    options = "".join(f'<option{" selected" if c == quarter else ""}>{c}</option>' for c in choices)
    form = (f'<form class="inline-form" method="get" action="/usage"><label for="quarter">{e(t(lang, "quarter"))}'
            f'</label><select id="quarter" name="quarter">{options}</select>'
            f'<button type="submit">{e(t(lang, "show"))}</button>'
            f'<a href="/usage.csv?quarter={quarter}" download="preau-usage-{quarter}.csv">{e(t(lang, "csv"))}</a></form>')
    cols = _usage.COLUMNS
    head = "".join(f'<th scope="col"{" class=num" if i > 2 else ""}>{e(t(lang, c))}</th>' for i, c in enumerate(cols))
    lines = "".join("<tr>" + "".join(f'<td{" class=num" if i > 2 else ""}>{e(str(v))}</td>'
                                     for i, v in enumerate(r.row())) + "</tr>" for r in rows)
    total = _usage.Usage("", "", "")
    for r in rows:
        total.sessions += r.sessions
        total.session_minutes += r.session_minutes
        total.projector_hours += r.projector_hours
        total.ap_minutes += r.ap_minutes
        total.standby_kwh_saved += r.standby_kwh_saved
    foot = (f'<tfoot><tr><th scope="row" colspan="3">{e(t(lang, "total"))}</th>'
            + "".join(f'<td class="num">{v}</td>' for v in total.row()[3:]) + "</tr></tfoot>")
    table = (f'<table id="usage"><caption>{e(t(lang, "usage_title"))} {e(quarter)}</caption><thead><tr>{head}</tr>'
             f'</thead><tbody>{lines}</tbody>{foot}</table>')
    assumptions = t(lang, "standby_note", on=f"{standby.on_w:g}", standby=f"{standby.standby_w:g}",
                    end=standby.day_end.strftime("%H:%M"), after=_usage.STANDBY_AFTER_S // 60)
    body = (form + table + f'<p class="hint">{e(t(lang, "usage_note"))}</p>'
            f'<p class="hint" id="standby-note">{e(assumptions)}</p>')
    return page(request, layout(lang, t(lang, "usage_title"), body, principal=who, active="/usage", path="/usage"))


@router.get("/usage.csv", dependencies=[Depends(EVERYONE)])
def usage_csv(request: Request) -> Response:
    sup = _sup(request)
    quarter = _quarter(request, sup)
    text = _usage.to_csv(_usage.usage(sup.store, quarter, sup.timezone,
                                      standby=_usage.Standby.of(request.app.state.settings), now=sup.alerts.now()))
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="preau-usage-{quarter}.csv"',
                             "Cache-Control": "no-store"})


# alerts -------------------------------------------------------------------------------------------------


def _alert_table(lang: str, sup: Supervision, who: Principal, alerts: list[dict], caption: str, table_id: str, *,
                 actions: bool, empty: str, closed: bool = False) -> str:
    if not alerts:
        return f'<h2>{e(caption)}</h2><p>{e(t(lang, empty))}</p>'
    tz = sup.timezone
    can_act = actions and who.role in HANDLERS.roles
    cols = ["opened", "rule", "school", "room", "detail", "acked", "closed" if closed else "cleared", "mail"]
    if can_act:
        cols.append("actions")
    head = "".join(f'<th scope="col">{e(t(lang, c))}</th>' for c in cols)
    lines = []
    for a in alerts:
        acked = "—"
        if a["acked_at"]:
            acked = f'{local_time(a["acked_at"], tz)} — {_who(lang, sup, a["acked_by"])}'
        end = a["closed_at"] if closed else a["cleared_at"]
        end_text = local_time(end, tz)
        if closed and a["closed_by"]:
            end_text += f' — {_who(lang, sup, a["closed_by"])}'
        mail = t(lang, "mail_sent") if a["mailed_at"] else (
            t(lang, "mail_pending") + (f' ({a["mail_error"]})' if a["mail_error"] else "")
            if sup.rules.smtp else t(lang, "mail_off"))
        buttons = ""
        if can_act:
            forms = []
            for action in (("ack",) if not a["acked_at"] else ()) + ("close",):
                forms.append(f'<form method="post" action="/alerts/{a["id"]}/{action}">'
                             f'<input type="hidden" name="csrf" value="{e(who.csrf or "")}">'
                             f'<button type="submit" aria-label="{e(t(lang, action))} {a["id"]}">'
                             f'{e(t(lang, action))}</button></form>')
            buttons = "<td>" + "".join(forms) + "</td>"
        room = e(a["room"] or "—")
        lines.append(f'<tr id="alert-{a["id"]}" class="{"alert-open" if not closed else ""}">'
                     f'<td>{e(local_time(a["opened_at"], tz))}</td><td>{e(rule_word(lang, a["rule"]))}</td>'
                     f'<td><a href="/schools/{e(a["school"])}">{e(a["school"])}</a></td><td>{room}</td>'
                     f'<td>{e(_detail(a))}</td><td>{e(acked)}</td><td>{e(end_text)}</td><td>{e(mail)}</td>'
                     f'{buttons}</tr>')
    return (f'<table id="{table_id}"><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(lines)}</tbody></table>')


def _alerts_body(request: Request, sup: Supervision, who: Principal, lang: str, notice: str = "") -> str:
    school = request.query_params.get("school") or None
    if school is not None:
        school = school[:40]
    for key, word in (("acked", "acked_notice"), ("closed", "closed_notice"), ("gone", "gone")):
        done = request.query_params.get(key)
        if done and done.isdigit() and len(done) <= 12:
            notice = t(lang, word, id=done)
    if request.query_params.get("mail") == "ok":
        notice = t(lang, "mail_test_done")
    body = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    body += _alert_table(lang, sup, who, sup.book.open_alerts(school), t(lang, "open_title"), "open-alerts",
                         actions=True, empty="no_alert")
    body += _alert_table(lang, sup, who, sup.book.history(school, limit=200), t(lang, "history_title"), "history",
                         actions=False, empty="no_history", closed=True)
    rules = "".join(f'<tr><th scope="row">{e(rule_word(lang, name))}</th>'
                    f'<td><code>{e(", ".join(f"{k} = {v}" for k, v in params.items() if v is not None) or "—")}'
                    f'</code></td></tr>' for name, params in sup.rules.rules.items())
    body += (f'<table id="rules"><caption>{e(t(lang, "rules_title"))}</caption><thead><tr>'
             f'<th scope="col">{e(t(lang, "rule"))}</th><th scope="col">{e(t(lang, "parameters"))}</th></tr></thead>'
             f'<tbody>{rules}</tbody></table>' if rules else f'<p>{e(t(lang, "no_rules"))}</p>')
    smtp = sup.rules.smtp
    body += f'<p>{e(t(lang, "mail"))} : {e(", ".join(smtp.to) if smtp else t(lang, "mail_off"))}</p>'
    if who.role == "supervisor" and smtp is not None:
        body += (f'<form method="post" action="/alerts/mail-test"><input type="hidden" name="csrf" '
                 f'value="{e(who.csrf or "")}"><button type="submit">{e(t(lang, "mail_test"))}</button></form>')
    return body


@router.get("/alerts", dependencies=[Depends(EVERYONE)])
def alerts_page(request: Request, who: Actor) -> Response:
    sup = _sup(request)
    lang = lang_of(request)
    return page(request, layout(lang, t(lang, "alerts_title"), _alerts_body(request, sup, who, lang), principal=who,
                                active="/alerts", path="/alerts"))


@router.post("/alerts/mail-test", dependencies=[Depends(SUPERVISOR)])
async def mail_test(request: Request, who: Actor) -> Response:
    sup = _sup(request)
    lang = lang_of(request)
    smtp = sup.rules.smtp
    if smtp is None:
        return see_other("/alerts")
    sample = {"id": 0, "rule": "test", "school": "—", "room": "", "detail": {"who": who.actor},
              "opened_at": sup.alerts.now()}
    try:
        await asyncio.to_thread(send_mail, smtp, mail_for(sample, smtp, sup.timezone))
    except (OSError, smtplib.SMTPException) as err:
        notice = t(lang, "mail_test_failed", why=f"{type(err).__name__}: {str(err)[:200]}")
        body = await asyncio.to_thread(_alerts_body, request, sup, who, lang, notice)
        # 200: the page with the reason (a 4xx page is a console error in browsers)
        return page(request, layout(lang, t(lang, "alerts_title"), body, principal=who, active="/alerts",
                                    path="/alerts"))
    return see_other("/alerts?mail=ok")


@router.post("/alerts/{alert_id}/{action}", dependencies=[Depends(HANDLERS)])
async def alert_action(request: Request, alert_id: int, action: str, who: Actor) -> Response:
    sup = _sup(request)
    if action not in ("ack", "close") or not 0 < alert_id < 2**62:
        return Response("no such action", status_code=404, media_type="text/plain")
    change = sup.book.acknowledge if action == "ack" else sup.book.close
    done = await asyncio.to_thread(change, alert_id, who.actor, sup.alerts.now())
    if not done:
        return see_other(f"/alerts?gone={alert_id}")
    return see_other(f"/alerts?{'acked' if action == 'ack' else 'closed'}={alert_id}")


# the API's description ------------------------------------------------------------------------------------


@router.get("/docs", dependencies=[Depends(EVERYONE)])
async def docs_page(request: Request, who: Actor) -> Response:
    """The API's routes from /openapi.json (behind this log-in too), read by
    a script shipped in the package: FastAPI's /docs takes Swagger UI from
    a CDN and needs no log-in."""
    lang = lang_of(request)
    return page(request, layout(lang, t(lang, "docs_title"), api_docs(), principal=who, active="/docs",
                                path="/docs", scripts=(API_DOCS_SCRIPT,)))
