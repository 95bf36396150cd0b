"""The log-in form, log-in and log-out, and the small helpers every page
uses (its language, its answer, a redirect), for any service: the words
and the layout are the service's."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .auth import Access, Allow, form_of, login_url, safe_next
from .i18n import LANG_COOKIE, LANGS
from .render import e

# layout(lang, title, body, path=...) of the service
Layout = Callable[..., str]


def access_of(request: Request) -> Access:
    return request.app.state.access


def lang_of(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked
    cookie = request.cookies.get(LANG_COOKIE)
    return cookie if cookie in LANGS else "fr"


def page(request: Request, html: str, status: int = 200) -> HTMLResponse:
    response = HTMLResponse(html, status_code=status)
    asked = request.query_params.get("lang")
    if asked in LANGS:
        # a preference, not a secret: readable by nobody's script all the same
        response.set_cookie(LANG_COOKIE, asked, max_age=365 * 86400, path="/", samesite="strict", httponly=True,
                            secure=access_of(request).secure)
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def login_redirect(next_url: str) -> RedirectResponse:
    return see_other(login_url(next_url))


def add_login_routes(router: APIRouter, t: Callable[..., str], layout: Layout, everyone: Allow) -> None:
    """GET and POST /login (open; limited), POST /logout (`everyone`: any role of the service)."""

    def login_page(request: Request, lang: str, token: str, error: str = "", login: str = "", status: int = 200):
        next_url = safe_next(request.query_params.get("next"))
        body = (
            f'<form class="card login" method="post" action="/login?next={e(next_url)}">'
            f'{f"<p class=error role=alert>{e(error)}</p>" if error else ""}'
            f'<input type="hidden" name="csrf" value="{e(token)}">'
            f'<label for="login">{e(t(lang, "user"))}</label>'
            f'<input id="login" name="login" autocomplete="username" required value="{e(login)}">'
            f'<label for="password">{e(t(lang, "password"))}</label>'
            f'<input id="password" name="password" type="password" autocomplete="current-password" required>'
            f'<button type="submit">{e(t(lang, "sign_in"))}</button></form>')
        response = page(request, layout(lang, t(lang, "login_title"), body, path="/login"), status)
        access_of(request).set_cookie(response, access_of(request).login_cookie, token, max_age=3600)
        return response

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        """Open: the form, with a log-in CSRF token (a cookie and a field that must match)."""
        return login_page(request, lang_of(request), secrets.token_urlsafe(24))

    @router.post("/login")
    async def login(request: Request) -> Response:
        """Open, limited: 5 failures a minute per address, 20 per login per 15 minutes."""
        access = access_of(request)
        lang = lang_of(request)
        form = await form_of(request)
        login_name = form.get("login", "")[:40]
        expected = request.cookies.get(access.login_cookie, "")
        given = form.get("csrf", "")
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            return login_page(request, lang, secrets.token_urlsafe(24), t(lang, "bad_login"), login_name, 403)
        keys = [("ip", request.client.host if request.client else "?"), ("login", login_name)]
        wait = access.limiter.retry_after(keys)
        if wait > 0:
            response = login_page(request, lang, secrets.token_urlsafe(24), t(lang, "too_many", s=int(wait) + 1),
                                  login_name, 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        account = await asyncio.to_thread(access.store.verify, login_name, form.get("password", "")[:256])
        if account is None:
            access.limiter.failed(keys)
            return login_page(request, lang, secrets.token_urlsafe(24), t(lang, "bad_login"), login_name, 401)
        token, _session = access.sessions.create(account)
        response = see_other(safe_next(request.query_params.get("next")))
        access.set_cookie(response, access.cookie, token, max_age=int(access.sessions.lifetime_s))
        response.delete_cookie(access.login_cookie, path="/", secure=access.secure, httponly=True, samesite="strict")
        return response

    @router.post("/logout", dependencies=[Depends(everyone)])
    async def logout(request: Request) -> Response:
        access = access_of(request)
        token = request.cookies.get(access.cookie)
        if token:
            access.sessions.drop(token)
        response = see_other("/login")
        response.delete_cookie(access.cookie, path="/", secure=access.secure, httponly=True, samesite="strict")
        return response
