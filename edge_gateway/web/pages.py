"""The gateway's pages: log-in, the live classroom grid, overrides, the
audit log, the boards, and a reader of the OpenAPI description. Each
route names its roles (`Allow`); a form's POST carries the session's CSRF
token and answers with a redirect (post/redirect/get), or the form again
with the gateway's message at the field it is about."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic_core import PydanticCustomError

from common.web.auth import Access, Allow, Principal, actor, form_of
from common.web.login import add_login_routes, lang_of, page, see_other
from common.web.render import API_DOCS_SCRIPT, api_docs

from .. import fleet
from ..gateway import Gateway, GatewayError, OverrideError
from ..history import read_audit, read_overrides
from ..overrides_input import parse_moment, to_unix
from ..policy.explain import plan
from .i18n import local_time, override_message, role_word, t
from .live import feed_of
from .render import e, event_item, field_error, layout, room_card, sse

EVERYONE = Allow("director", "technician", "viewer", page=True)
DIRECTOR = Allow("director", page=True)
TECHNICIANS = Allow("director", "technician", page=True)
HEARTBEAT_S = 15.0

router = APIRouter(include_in_schema=False)
Actor = Annotated[Principal, Depends(actor)]


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _access(request: Request) -> Access:
    return request.app.state.access


add_login_routes(router, t, layout, EVERYONE)


# the live grid ----------------------------------------------------------------------------


@router.get("/", dependencies=[Depends(EVERYONE)])
async def grid(request: Request, who: Actor) -> Response:
    gateway = _gateway(request)
    lang = lang_of(request)
    tz = gateway.config.policy.timezone
    feed = feed_of(request.app.state, gateway)
    await feed.refresh()
    cards = "".join(room_card(lang, feed.rooms[r], tz) for r in sorted(feed.rooms))
    events = "".join(event_item(lang, ev, tz) for ev in feed.events) or f'<li class="empty">{e(t(lang, "no_events"))}</li>'
    body = (f'<p class="live" id="live-status" role="status" data-on="{e(t(lang, "live_on"))}" '
            f'data-off="{e(t(lang, "live_off"))}" data-now="{gateway.clock():.3f}">…</p>'
            f'<section class="grid" id="grid" aria-label="{e(t(lang, "grid_title"))}">{cards}</section>'
            f'<section class="events"><h2>{e(t(lang, "events_title"))}</h2><ol id="events">{events}</ol></section>')
    return page(request, layout(lang, t(lang, "grid_title"), body, principal=who, active="/", path="/",
                                scripts=("live.js",)))


@router.get("/live", dependencies=[Depends(EVERYONE)])
async def live(request: Request) -> StreamingResponse:
    """Server-sent events: `room` (a card's new HTML) and `event` (a line
    of the events list), each with the gateway's time for the countdowns."""
    gateway = _gateway(request)
    lang = lang_of(request)
    tz = gateway.config.policy.timezone
    feed = feed_of(request.app.state, gateway)
    access = _access(request)
    cookie = request.cookies.get(access.cookie)

    async def stream():
        queue = await feed.subscribe()
        try:
            yield b"retry: 1000\n\n"
            for room in sorted(feed.rooms):  # a page that reconnects catches up at once
                yield sse("room", {"room": room, "html": room_card(lang, feed.rooms[room], tz), "now": gateway.clock()})
            loop = asyncio.get_running_loop()
            next_look = loop.time() + HEARTBEAT_S
            while True:
                try:
                    kind, item = await asyncio.wait_for(queue.get(), max(0.0, next_look - loop.time()))
                except TimeoutError:
                    kind, item = None, None
                if loop.time() >= next_look:  # busy or idle, the session is looked at every HEARTBEAT_S
                    next_look = loop.time() + HEARTBEAT_S
                    if cookie and access.principal(request) is None:
                        # over (expired, logged out elsewhere, password reset): said, so that the page goes to
                        # the log-in form instead of reconnecting into a 401
                        yield sse("session", {"over": True})
                        return
                    if kind is None:
                        yield b": still here\n\n"
                if kind == "room":
                    assert item is not None
                    yield sse("room", {"room": item["room"], "html": room_card(lang, item, tz), "now": gateway.clock()})
                elif kind == "event":
                    assert item is not None
                    yield sse("event", {"html": event_item(lang, item, tz)})
        finally:
            feed.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# overrides ------------------------------------------------------------------------------------


def _override_form(lang: str, gateway: Gateway, principal: Principal, values: dict, errors: dict[str, str]) -> str:
    def err(name: str) -> str:
        return field_error(errors.get(name), f"o-{name}")

    def described(name: str, hint: str = "") -> str:
        ids = " ".join(x for x in (f"o-{name}-hint" if hint else "", f"o-{name}-error" if errors.get(name) else "") if x)
        return f' aria-describedby="{ids}"' if ids else ""

    rooms = "".join(f'<option value="{e(r)}"{" selected" if values.get("room") == r else ""}>{e(r)}</option>'
                    for r in sorted(gateway.config.rooms))

    def radio(name: str, value: str, label: str, default: bool = False) -> str:
        checked = values.get(name, value if default else None) == value
        return (f'<label class="inline"><input type="radio" name="{name}" value="{value}"'
                f'{" checked" if checked else ""}> {e(label)}</label>')

    def check(name: str, label: str) -> str:
        return (f'<label class="inline"><input type="checkbox" name="{name}" value="1"'
                f'{" checked" if values.get(name) else ""}> {e(label)}</label>')

    general = "".join(f"<li>{e(m)}</li>" for k, m in errors.items() if k == "form")
    return (
        f'<form class="card" method="post" action="/overrides" id="override-form">'
        f'<h2>{e(t(lang, "override_new"))}</h2>'
        f'{f"<ul class=error role=alert>{general}</ul>" if general else ""}'
        f'<input type="hidden" name="csrf" value="{e(principal.csrf or "")}">'
        f'<fieldset><legend>{e(t(lang, "scope"))}</legend>{radio("scope", "room", t(lang, "scope_room"), True)}'
        f'{radio("scope", "school", t(lang, "scope_school"))}{err("scope")}</fieldset>'
        f'<label for="o-room">{e(t(lang, "room"))}</label><select id="o-room" name="room"{described("room")}>'
        f'{rooms}</select>{err("room")}'
        f'<fieldset><legend>{e(t(lang, "effect"))}</legend>{radio("effect", "deny", t(lang, "effect_deny"), True)}'
        f'{radio("effect", "allow", t(lang, "effect_allow"))}{check("ap", t(lang, "ap_also"))}'
        f'{check("ap_only", t(lang, "ap_only"))}{err("effect")}{err("ap")}{err("ap_only")}</fieldset>'
        f'<label for="o-starts">{e(t(lang, "starts"))}</label>'
        f'<input id="o-starts" name="starts" type="datetime-local" value="{e(values.get("starts", ""))}"'
        f'{described("starts", "hint")}><p class="hint" id="o-starts-hint">{e(t(lang, "starts_hint"))}</p>{err("starts")}'
        f'<label for="o-expires">{e(t(lang, "expires"))}</label>'
        f'<input id="o-expires" name="expires" type="datetime-local" required value="{e(values.get("expires", ""))}"'
        f'{described("expires")}>{err("expires")}'
        f'<label for="o-why">{e(t(lang, "why"))}</label>'
        f'<input id="o-why" name="why" required maxlength="200" value="{e(values.get("why", ""))}"'
        f'{described("why", "hint")}><p class="hint" id="o-why-hint">{e(t(lang, "why_hint"))}</p>{err("why")}'
        f'<button type="submit">{e(t(lang, "add"))}</button></form>')


async def _overrides_page(request: Request, principal: Principal, values: dict | None = None,
                          errors: dict[str, str] | None = None, status: int = 200) -> Response:
    gateway = _gateway(request)
    lang = lang_of(request)
    tz = gateway.config.policy.timezone
    rows = await asyncio.to_thread(read_overrides, gateway.config.db, now=gateway.clock(), limit=200)
    notice = ""
    for key in ("added", "cancelled"):
        done = request.query_params.get(key)
        if done and len(done) <= 40:
            notice = f'<p class="notice" role="status">{e(t(lang, "override_" + key, id=done))}</p>'
    head = (f'<tr><th scope="col">{e(t(lang, "scope"))}</th><th scope="col">{e(t(lang, "effect"))}</th>'
            f'<th scope="col">{e(t(lang, "starts"))}</th><th scope="col">{e(t(lang, "expires"))}</th>'
            f'<th scope="col">{e(t(lang, "why"))}</th><th scope="col">{e(t(lang, "by"))}</th>'
            + (f'<th scope="col">{e(t(lang, "actions"))}</th>' if principal.role == "director" else "") + "</tr>")
    lines = []
    for o in rows:
        effect = t(lang, "effect_" + o["effect"]) + (" (Wi-Fi)" if o["ap_only"] or o["ap"] else "")
        cancel = ""
        if principal.role == "director":
            cancel = (f'<td><form method="post" action="/overrides/{e(o["id"])}/cancel">'
                      f'<input type="hidden" name="csrf" value="{e(principal.csrf or "")}">'
                      f'<button type="submit" aria-label="{e(t(lang, "cancel"))} {e(o["id"])}">'
                      f'{e(t(lang, "cancel"))}</button></form></td>')
        lines.append(f'<tr id="override-{e(o["id"])}"><td>{e(o["room"] or t(lang, "scope_school"))}</td>'
                     f'<td>{e(effect)}</td><td>{e(local_time(o["starts"], tz))}</td>'
                     f'<td>{e(local_time(o["expires"], tz))}</td><td>{e(o["why"])}</td>'
                     f'<td>{e(_who(lang, request, o["who"]))}</td>{cancel}</tr>')
    table = (f'<table><caption>{e(t(lang, "overrides_title"))}</caption><thead>{head}</thead>'
             f'<tbody>{"".join(lines)}</tbody></table>' if lines else f'<p>{e(t(lang, "none_in_force"))}</p>')
    form = _override_form(lang, gateway, principal, values or {}, errors or {}) if principal.role == "director" else ""
    body = notice + table + form
    return page(request, layout(lang, t(lang, "nav_overrides"), body, principal=principal, active="/overrides",
                                path="/overrides"), status)


def _who(lang: str, request: Request, who: str) -> str:
    """"director:u-0001" as "direction (u-0001, login)"; older free text as it was stored."""
    role, _, account = who.partition(":")
    if not account:
        return who
    found = _access(request).store.get(account)
    return f"{role_word(lang, role)} ({account}{', ' + found.login if found else ''})"


@router.get("/overrides", dependencies=[Depends(EVERYONE)])
async def overrides_page(request: Request, who: Actor) -> Response:
    return await _overrides_page(request, who)


def _field_of(message: str) -> str:
    head = message.split(":", 1)[0].strip()
    return head if head in ("scope", "room", "effect", "ap", "ap_only", "starts", "expires", "why") else "form"


@router.post("/overrides", dependencies=[Depends(DIRECTOR)])
async def add_override(request: Request, who: Actor) -> Response:
    gateway = _gateway(request)
    form = await form_of(request)
    values = {k: form.get(k, "")[:200] for k in ("scope", "room", "effect", "ap", "ap_only", "starts", "expires", "why")}
    errors: dict[str, str] = {}
    tz = gateway.config.policy.timezone
    times: dict[str, float | None] = {"starts": None, "expires": None}
    for name in times:
        if values[name]:
            try:
                times[name] = to_unix(parse_moment(values[name]), tz)
            except PydanticCustomError as err:
                errors[name] = override_message(lang_of(request), name, f"{name}: {err.message()}")
        elif name == "expires":
            errors[name] = "expires: " + ("donnez la date et l'heure de fin" if lang_of(request) == "fr"
                                          else "give the end's date and time")
    if not errors:
        try:
            row = await gateway.add_override(scope=values["scope"] or "room",
                                             room=values["room"] if values["scope"] != "school" else None,
                                             effect=values["effect"] or "deny", ap=bool(values["ap"]),
                                             ap_only=bool(values["ap_only"]), starts=times["starts"],
                                             expires=times["expires"], who=who.actor, why=values["why"])
        except OverrideError as err:
            field = _field_of(str(err))
            errors[field] = override_message(lang_of(request), field, str(err))
        except GatewayError as err:
            errors["form"] = str(err)
        else:
            return see_other(f"/overrides?added={row['id']}")
    # 200: the form again, with the messages at their fields (a 4xx page is a console error in browsers)
    return await _overrides_page(request, who, values, errors)


@router.post("/overrides/{override_id}/cancel", dependencies=[Depends(DIRECTOR)])
async def cancel_override(request: Request, override_id: str, who: Actor) -> Response:
    gateway = _gateway(request)
    if len(override_id) > 40 or not await gateway.cancel_override(override_id, who.actor):
        return await _overrides_page(request, who, errors={"form": f"{override_id[:40]}: ?"}, status=404)
    return see_other(f"/overrides?cancelled={override_id}")


# the audit log ---------------------------------------------------------------------------------


@router.get("/audit", dependencies=[Depends(DIRECTOR)])
async def audit_page(request: Request, who: Actor) -> Response:
    gateway = _gateway(request)
    lang = lang_of(request)
    tz = gateway.config.policy.timezone
    rows = await asyncio.to_thread(read_audit, gateway.config.db, 300)
    lines = "".join(
        f'<tr><td>{e(local_time(r["at"], tz))}</td><td>{e(_who(lang, request, r["who"]))}</td>'
        f'<td>{e(t(lang, "a_" + r["action"]))}</td>'
        f'<td><code>{e(json.dumps(r["detail"], ensure_ascii=False))}</code></td></tr>' for r in rows)
    body = (f'<table><caption>{e(t(lang, "audit_title"))}</caption><thead><tr>'
            f'<th scope="col">{e(t(lang, "when"))}</th><th scope="col">{e(t(lang, "who"))}</th>'
            f'<th scope="col">{e(t(lang, "action"))}</th><th scope="col">{e(t(lang, "detail"))}</th></tr></thead>'
            f'<tbody>{lines}</tbody></table>')
    return page(request, layout(lang, t(lang, "audit_title"), body, principal=who, active="/audit", path="/audit"))


# the boards ---------------------------------------------------------------------------------------


@router.get("/boards", dependencies=[Depends(EVERYONE)])
async def boards_page(request: Request, who: Actor) -> Response:
    gateway = _gateway(request)
    lang = lang_of(request)
    tz = gateway.config.policy.timezone
    provisioned: dict[str, fleet.Board] = {}
    path = gateway.config.fleet_file
    if path and os.path.exists(path):
        with contextlib.suppress(fleet.FleetError, OSError):
            f = await asyncio.to_thread(fleet.load, path)
            provisioned = {b.room: b for b in f.boards if b.active}
    rooms = gateway.rooms()
    notice = ""
    sent = request.query_params.get("sent")
    if sent and len(sent) <= 80:
        room, _, rest = sent.partition(",")
        cmd, _, cid = rest.partition(",")
        notice = f'<p class="notice" role="status">{e(t(lang, "sent", cmd=t(lang, cmd), room=room, id=cid))}</p>'
    can_act = who.role in TECHNICIANS.roles
    confirm = f' data-confirm="{e(t(lang, "confirm"))}"'  # boards.js asks before a reboot or the end of a lesson
    lines = []
    for name in sorted(rooms):
        r = rooms[name]
        board = provisioned.get(name)
        status = t(lang, "provisioned") + f" ({board.username})" if board else t(lang, "not_provisioned")
        online = t(lang, "online") if r.get("online") else (t(lang, "offline") if r.get("online") is False
                                                             else t(lang, "never_seen"))
        buttons = ""
        if can_act:
            buttons = "<td>" + "".join(
                f'<form method="post" action="/boards/{e(name)}/{action}"'
                f'{confirm if action != "identify" else ""}>'
                f'<input type="hidden" name="csrf" value="{e(who.csrf or "")}">'
                f'<button type="submit" aria-label="{e(t(lang, action))} — {e(name)}">{e(t(lang, action))}</button></form>'
                for action in ("identify", "end", "reboot")) + "</td>"
        lines.append(f'<tr id="board-{e(name)}"><th scope="row"><a href="/rooms/{e(name)}">{e(name)}</a></th><td>{e(status)}</td><td>{e(online)}</td>'
                     f'<td>{e(r.get("board") or "—")}</td><td>{e(r.get("fw") or "—")}</td>'
                     f'<td>{e(local_time(r.get("last_seen"), tz))}</td>{buttons}</tr>')
    head = "".join(f'<th scope="col">{e(x)}</th>' for x in (
        t(lang, "room"), t(lang, "provisioning"), t(lang, "status"), t(lang, "board"), t(lang, "firmware"),
        t(lang, "last_seen"), *((t(lang, "actions"),) if can_act else ())))
    body = (notice + f'<table><caption>{e(t(lang, "boards_title"))}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(lines)}</tbody></table>')
    return page(request, layout(lang, t(lang, "nav_boards"), body, principal=who, active="/boards", path="/boards",
                                scripts=("boards.js",)))


@router.post("/boards/{room}/{action}", dependencies=[Depends(TECHNICIANS)])
async def board_command(request: Request, room: str, action: str, who: Actor) -> Response:
    gateway = _gateway(request)
    if room not in gateway.config.rooms or action not in ("identify", "end", "reboot"):
        return Response("no such room or command", status_code=404, media_type="text/plain")
    sent = await gateway.board_command(room, action, who.actor, 10)
    return see_other(f"/boards?sent={room},{action},{sent['id']}")


# the week's plan -----------------------------------------------------------------------------------


@router.get("/week", dependencies=[Depends(EVERYONE)])
async def week_page(request: Request, who: Actor) -> Response:
    """`preau policy explain` for a week: when each room may have a session,
    with or without its Wi-Fi, and why not (overrides aside)."""
    gateway = _gateway(request)
    lang = lang_of(request)
    today = dt.datetime.fromtimestamp(gateway.clock(), ZoneInfo(gateway.config.policy.timezone)).date()
    asked = request.query_params.get("week", "")
    try:
        day = dt.date.fromisoformat(asked) if asked else today
    except ValueError:
        day = today
    if not dt.date(2000, 1, 1) <= day <= dt.date(2099, 12, 31):
        day = today
    monday = day - dt.timedelta(days=day.weekday())
    text = await asyncio.to_thread(plan, gateway.config.policy, monday, lang)
    label = "Semaine du" if lang == "fr" else "Week of"
    show = "Afficher" if lang == "fr" else "Show"
    body = (f'<form class="inline-form" method="get" action="/week"><label for="week">{e(label)}</label> '
            f'<input id="week" name="week" type="date" value="{monday.isoformat()}"> '
            f'<button type="submit">{e(show)}</button></form>'
            f'<pre class="plan" tabindex="0" aria-label="{e(t(lang, "nav_week"))}">{e(text)}</pre>')
    if who.role == "director":
        body = f'<p><a href="/week/edit">{e(t(lang, "edit_week"))}</a></p>' + body
    return page(request, layout(lang, t(lang, "nav_week"), body, principal=who, active="/week", path="/week"))


# the API's description ---------------------------------------------------------------------


@router.get("/docs", dependencies=[Depends(EVERYONE)])
async def docs_page(request: Request, who: Actor) -> Response:
    """FastAPI's /docs loads Swagger UI from a CDN, which a school network
    may not reach, and no installed package ships it: this page lists the
    routes from /openapi.json with a small script of our own."""
    lang = lang_of(request)
    return page(request, layout(lang, t(lang, "docs_title"), api_docs(), principal=who, active="/docs",
                                path="/docs", scripts=(API_DOCS_SCRIPT,)))
