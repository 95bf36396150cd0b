"""HTML for the pages: a layout, the room card (rendered here only, for the
first page and for every live update alike), and small helpers. Plain
HTML and CSS, escaped with markupsafe; no template engine to install."""

from __future__ import annotations

from markupsafe import Markup

from common.web import render as _common
from common.web.auth import Principal
from common.web.render import e, field_error, sse  # noqa: F401 - the pages take them from here

from .i18n import event_words, local_time, projector_word, role_word, t

LINKS = (("/", "nav_grid", ("director", "technician", "viewer")),
         ("/overrides", "nav_overrides", ("director", "technician", "viewer")),
         ("/boards", "nav_boards", ("director", "technician", "viewer")),
         ("/week", "nav_week", ("director", "technician", "viewer")),
         ("/radio", "nav_radio", ("director", "technician", "viewer")),
         ("/audit", "nav_audit", ("director",)),
         ("/docs", "nav_docs", ("director", "technician", "viewer")))


def layout(lang: str, title: str, body: str | Markup, *, principal: Principal | None = None, active: str = "",
           path: str = "/", scripts: tuple[str, ...] = ()) -> str:
    return _common.layout(t, role_word, lang, title, body, principal=principal, links=LINKS, active=active,
                          path=path, scripts=scripts)


def room_card(lang: str, room: dict, timezone: str) -> str:
    """One classroom, as the grid shows it (also sent as is over server-sent events)."""
    name = room["room"]
    online = room.get("online")
    status = "online" if online else ("offline" if online is False else "never")
    status_word = t(lang, {"online": "online", "offline": "offline", "never": "never_seen"}[status])
    session = room.get("session") or "idle"
    if not online:
        session_html = "—"
    elif session == "active":
        left = ""
        if room.get("ends_at"):
            left = (f', <span class="left" data-ends="{room["ends_at"]:.0f}" data-tpl="{e(t(lang, "time_left"))}">'
                    f'</span>')
        session_html = f'{e(t(lang, "session_active"))}{left}'
    else:
        session_html = e(t(lang, f"session_{session}") if session in ("idle", "requesting") else session)
    projector = "—"
    if online and room.get("projector"):
        projector = e(projector_word(lang, room["projector"]))
        if room.get("lamp_h") is not None:
            projector += ", " + e(t(lang, "lamp", h=room["lamp_h"]))
    if room.get("wifi") == "never":
        ap = e(t(lang, "wifi_never"))
    elif not online or room.get("ap") is None:
        ap = "—"
    else:
        ap = e(t(lang, "ap_on" if room["ap"] else "ap_off"))
    kit = "—"
    if online:
        kit = e(room.get("kit") or t(lang, "no_kit"))
        air = room.get("air") or {}
        readings = [f"CO₂ {air['co2']:g} ppm" if "co2" in air else "", f"{air['t']:g} °C" if "t" in air else "",
                    f"{air['rh']:g} %HR" if "rh" in air else "", f"{air['lux']:g} lx" if "lux" in air else ""]
        readings = [r for r in readings if r]
        if readings:
            kit += " — " + e(", ".join(readings))
    board = ", ".join(x for x in (
        f'{t(lang, "firmware")} {room["fw"]}' if room.get("fw") else "",
        f'{t(lang, "last_seen")} {local_time(room["last_seen"], timezone, with_date=False)}' if room.get("last_seen") else "",
    ) if x) or "—"
    ap_state = "never" if room.get("wifi") == "never" else ("on" if online and room.get("ap") else "off")
    return (
        f'<article class="room {status}" id="room-{e(name)}" aria-labelledby="room-{e(name)}-h" '
        f'data-online="{status}" data-session="{e(session if online else "none")}" data-ap="{ap_state}" '
        f'data-projector="{e(room.get("projector") or "none")}">'
        f'<h2 id="room-{e(name)}-h"><a href="/rooms/{e(name)}">{e(name)}</a> <span class="badge {status}">{e(status_word)}</span></h2><dl>'
        f'<div><dt>{e(t(lang, "session"))}</dt><dd class="session">{session_html}</dd></div>'
        f'<div><dt>{e(t(lang, "projector"))}</dt><dd class="projector">{projector}</dd></div>'
        f'<div><dt>{e(t(lang, "ap"))}</dt><dd class="ap">{ap}</dd></div>'
        f'<div><dt>{e(t(lang, "kit"))}</dt><dd class="kit">{kit}</dd></div>'
        f'<div><dt>{e(t(lang, "board"))}</dt><dd class="board">{e(board)}</dd></div>'
        '</dl></article>'
    )


def event_item(lang: str, event: dict, timezone: str) -> str:
    return (f'<li><time>{e(local_time(event["at"], timezone, with_date=False))}</time> '
            f'<strong>{e(event["room"])}</strong> {e(event_words(lang, event["type"], event["data"]))}</li>')
