"""HTML for a service's pages: the layout (header, navigation by role,
log-out, the language switch), a field's error, a server-sent event.
Plain HTML and CSS, escaped with markupsafe; no template engine to
install. The words come from the service (its `t(lang, key)`: keys
"app", "main_nav", "logout", "lang_other", "you")."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup, escape

from .auth import Principal

e = escape
Words = Callable[..., str]  # t(lang, key, **values)
# (href, the word's key, the roles that see the link)
NavLink = tuple[str, str, tuple[str, ...]]


# The look both services share, mounted at /static/common by each (before its /static).
COMMON_STATIC = os.path.join(os.path.dirname(__file__), "static")


# The /docs page of each service: its OpenAPI description read by a small
# script of ours (FastAPI's pages load Swagger UI from a CDN, and need no log-in).
API_DOCS_SCRIPT = "common/docs.js"


def api_docs(spec: str = "/openapi.json") -> str:
    """The /docs page's body: API_DOCS_SCRIPT fills it from `spec`."""
    return f'<div id="api" data-src="{e(spec)}"><p>…</p></div>'


def layout(t: Words, role_word: Callable[[str, str], str], lang: str, title: str, body: str | Markup, *,
           principal: Principal | None = None, links: Sequence[NavLink] = (), active: str = "", path: str = "/",
           scripts: tuple[str, ...] = ()) -> str:
    other = "en" if lang == "fr" else "fr"
    nav = ""
    if principal is not None:
        current = ' aria-current="page"'
        items = "".join(
            f'<li><a href="{href}"{current if href == active else ""}>{e(t(lang, key))}</a></li>'
            for href, key, roles in links if principal.role in roles)
        who = t(lang, "you", login=principal.login or principal.account, role=role_word(lang, principal.role))
        nav = (f'<nav aria-label="{e(t(lang, "main_nav"))}"><ul>{items}</ul></nav>'
               f'<form class="logout" method="post" action="/logout"><span>{e(who)}</span>'
               f'<input type="hidden" name="csrf" value="{e(principal.csrf or "")}">'
               f'<button type="submit">{e(t(lang, "logout"))}</button></form>')
    csrf_meta = f'<meta name="csrf-token" content="{e(principal.csrf)}">' if principal and principal.csrf else ""
    script_tags = "".join(f'<script src="/static/{e(s)}" defer></script>' for s in scripts)
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{csrf_meta}'
        f'<title>{e(title)} — Préau</title><link rel="stylesheet" href="/static/common/base.css">'
        f'<link rel="stylesheet" href="/static/app.css">'
        f'<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">{script_tags}</head><body>'
        f'<header><p class="brand">{e(t(lang, "app"))}</p>{nav}'
        f'<a class="lang" href="{e(path)}?lang={other}" lang="{other}">{e(t(lang, "lang_other"))}</a></header>'
        f'<main id="main"><h1>{e(title)}</h1>{body}</main></body></html>'
    )


def field_error(message: str | None, field_id: str) -> str:
    if not message:
        return ""
    return f'<p class="field-error" id="{field_id}-error" role="alert">{e(message)}</p>'


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
