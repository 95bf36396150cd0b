"""The city's supervision pages, for people: log-in and roles (supervisor,
technician, viewer; common/web/auth.py), schools at a glance, a school's
classrooms, equipment, usage for a quarter with its CSV, and alerts
(cloud_bridge/alerts.py), in French by default and English. Every asset
is in static/, shipped with the package: no CDN.

`install(app, store, settings)` adds them to the city's app (the one
cloud_bridge.api.create_app builds): the pages, the accounts and their
sessions, the security headers, and the alerts' periodic task, started
and stopped by the app's lifespan."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO, cast

from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from common.web.accounts import AccountError
from common.web.auth import Access, LoginLimiter, NeedsLogin, PageForbidden, Sessions
from common.web.http import BodyLimit, SecurityHeaders
from common.web.login import lang_of, login_redirect
from common.web.render import COMMON_STATIC

from ..alerts import ALERTS_FILE, RULES_ENV, RULES_FILE, AlertBook, Alerts, AlertsError, Rules
from ..errors import CitySettingsError
from ..settings import CitySettings
from .accounts import CityAccountStore, default_path, ensure_first

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
COOKIE_SECURE_ENV = "PREAU_CITY_COOKIE_SECURE"
TIMEZONE_ENV = "PREAU_CITY_TIMEZONE"
ALERTS_DB_ENV = "PREAU_CITY_ALERTS_DB"


@dataclass(frozen=True)
class PagesSettings:
    """Where the pages keep their accounts and alerts, and the rules."""

    accounts_file: str
    alerts_file: str
    rules: Rules
    timezone: str = "Europe/Paris"
    secure_cookies: bool = True

    @classmethod
    def from_env(cls, settings: CitySettings, environ: Mapping[str, str] | None = None) -> PagesSettings:
        """Beside the city's database (`--db`) unless the environment says:
        PREAU_CITY_ACCOUNTS, PREAU_CITY_ALERTS_DB, PREAU_CITY_ALERTS (the
        rules, TOML; default city-alerts.toml beside the database if it
        exists, else every rule with its defaults), PREAU_CITY_TIMEZONE,
        PREAU_CITY_COOKIE_SECURE (0: cookies without Secure, for plain
        HTTP on a trusted network)."""
        environ = os.environ if environ is None else environ
        beside = os.path.dirname(os.path.abspath(settings.db_path))
        rules_file = environ.get(RULES_ENV) or os.path.join(beside, RULES_FILE)
        try:
            if environ.get(RULES_ENV) or os.path.exists(rules_file):
                rules = Rules.load(rules_file, environ)
            else:
                rules = Rules.default()
        except AlertsError as e:
            raise CitySettingsError(f"alerts: {e}") from None
        secure = environ.get(COOKIE_SECURE_ENV, "1")
        if secure not in ("0", "1"):
            raise CitySettingsError(f"{COOKIE_SECURE_ENV}: expected 0 or 1, got {secure!r}")
        timezone = environ.get(TIMEZONE_ENV, "Europe/Paris")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(timezone)
        except (ValueError, KeyError, OSError):
            raise CitySettingsError(f"{TIMEZONE_ENV}: unknown time zone {timezone!r}") from None
        return cls(accounts_file=default_path(settings.db_path, environ),
                   alerts_file=environ.get(ALERTS_DB_ENV) or os.path.join(beside, ALERTS_FILE),
                   rules=rules, timezone=timezone, secure_cookies=secure == "1")


def install(app: FastAPI, store, settings: CitySettings, pages: PagesSettings | None = None, *,
            environ: Mapping[str, str] | None = None, hasher: PasswordHasher | None = None,
            now: Callable[[], float] = time.time, out: TextIO | None = None,
            sessions: Sessions | None = None, limiter: LoginLimiter | None = None) -> None:
    """Add the supervision pages, their accounts and the alerts to the
    city's `app`, over `store` (a CityStore: its public reads only). At the
    first start (no account yet) the first supervisor is made. The
    alerts' task runs in the app's lifespan. CitySettingsError when the
    rules, the accounts file or the environment are wrong."""
    from . import pages as routes

    environ = os.environ if environ is None else environ
    pages = pages or PagesSettings.from_env(settings, environ)
    accounts = CityAccountStore(pages.accounts_file, hasher=hasher)
    try:
        ensure_first(accounts, environ, sys.stderr if out is None else out)
    except AccountError as e:
        raise CitySettingsError(f"city accounts: {e}") from None
    # People only: the operator's token opens /api, not the pages.
    app.state.access = Access(accounts, lambda: {}, secure_cookies=pages.secure_cookies, sessions=sessions,
                              limiter=limiter, cookie_name="preau-city-session")
    book = AlertBook(store, legacy=pages.alerts_file)  # the previous release's file, imported once
    alerts = Alerts(store, book, pages.rules, timezone=pages.timezone, now=now)
    app.state.supervision = routes.Supervision(store, accounts, book, alerts, pages.rules, pages.timezone)
    app.include_router(routes.router)
    app.mount("/static/common", StaticFiles(directory=COMMON_STATIC), name="static-common")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(NeedsLogin, _needs_login)
    app.add_exception_handler(PageForbidden, _page_forbidden)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[object]:
        async with inner(a) as state:
            alerts.start()
            try:
                yield state
            finally:
                await alerts.stop()

    app.router.lifespan_context = cast(Any, lifespan)  # the same kind of context as the one it wraps


async def _needs_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NeedsLogin)
    return login_redirect(exc.next_url)


async def _page_forbidden(request: Request, exc: Exception) -> Response:
    from .i18n import t
    from .pages import layout

    lang = lang_of(request)
    principal = request.app.state.access.principal(request)
    return HTMLResponse(layout(lang, t(lang, "forbidden"), f"<p>{t(lang, 'forbidden_text')}</p>", principal=principal),
                        status_code=403)
