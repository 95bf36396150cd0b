"""Who is asking, and may they: one check for a service's pages and API.

Two ways in. A machine client (a script, a monitoring tool) sends a bearer
token of the service (`Access.tokens`: {role: token}). A person logs in
with an account (common/web/accounts.py) and gets a session: a random
token in a cookie that is Secure, HttpOnly and SameSite=Strict, named with
the `__Host-` prefix (so no other host or path can set it), kept in the
service's memory, over after SESSION_S, at log-out, or as soon as the
account's password is reset or the account removed. A request made with
the cookie that changes something carries the session's CSRF token (form
field `csrf` or header `X-CSRF-Token`).

Every route names the roles it admits with `Allow(...)`: each service's
route table is walked by its tests (tests/test_gateway_auth.py,
tests/test_city_pages.py), so a route without one fails them. Log-in
attempts are limited per client address and per login. The roles are the
service's: the school's director, technician, viewer; the city's
supervisor, technician, viewer."""

# No `from __future__ import annotations`: FastAPI reads the signature of
# Allow.__call__ (an instance has no __globals__ to resolve names in).
import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

from fastapi import HTTPException, Request

from common.auth import is_loopback

from .accounts import Account, AccountStore

SESSION_S = 12 * 3600  # a school day and its evening, then log in again
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
# Log-in: 5 failures per client address per minute, 20 per login per 15
# minutes (a pupil's laptop must not be able to try passwords, nor lock the
# director out for long).
IP_LIMIT = (5, 60.0)
LOGIN_LIMIT = (20, 900.0)


@dataclass(frozen=True)
class Principal:
    role: str  # one of the service's roles
    account: str  # u-0001, or token-ROLE for a bearer token
    via: str  # "session" or "bearer"
    login: str | None = None
    csrf: str | None = None

    @property
    def actor(self) -> str:
        """What the audit log stores: a role and an account id, never a name."""
        return f"{self.role}:{self.account}"


@dataclass
class Session:
    account: str
    role: str
    csrf: str
    expires: float
    changed: float  # the account's password change when the session began


class Sessions:
    """In memory: a service restart logs everybody out, which is cheap (a
    log-in) and leaves nothing on the disk to steal. Keyed by the token's
    SHA-256, so a memory dump does not give a usable cookie either."""

    def __init__(self, lifetime_s: float = SESSION_S, clock: Callable[[], float] = time.time) -> None:
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._by_hash: dict[bytes, Session] = {}

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def create(self, account: Account) -> tuple[str, Session]:
        now = self.clock()
        for key in [k for k, s in self._by_hash.items() if s.expires <= now]:
            del self._by_hash[key]
        token = secrets.token_urlsafe(32)
        session = Session(account.id, account.role, secrets.token_urlsafe(24), now + self.lifetime_s, account.changed)
        self._by_hash[self._key(token)] = session
        return token, session

    def get(self, token: str) -> Session | None:
        key = self._key(token)
        session = self._by_hash.get(key)
        if session is not None and session.expires <= self.clock():
            del self._by_hash[key]
            return None
        return session

    def drop(self, token: str) -> None:
        self._by_hash.pop(self._key(token), None)


@dataclass
class LoginLimiter:
    """Failed log-ins in a sliding window, per key (an address, a login)."""

    clock: Callable[[], float] = time.monotonic
    _failures: dict[tuple[str, str], deque] = field(default_factory=dict)

    def _limit(self, kind: str) -> tuple[int, float]:
        return IP_LIMIT if kind == "ip" else LOGIN_LIMIT

    def retry_after(self, keys: list[tuple[str, str]]) -> float:
        """Seconds until a try is allowed again; 0 when it is now."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            count, window = self._limit(key[0])
            q = self._failures.get(key)
            if q is None:
                continue
            while q and q[0] <= now - window:
                q.popleft()
            if len(q) >= count:
                wait = max(wait, q[0] + window - now)
        return wait

    def failed(self, keys: list[tuple[str, str]]) -> None:
        now = self.clock()
        if len(self._failures) > 10_000:  # a flood of addresses or logins: forget the oldest
            self._failures.clear()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)


class Access:
    """The app's accounts, sessions, log-in limiter and bearer tokens."""

    def __init__(self, store: AccountStore, tokens: Callable[[], Mapping[str, str | None]], *,
                 secure_cookies: bool = True, sessions: Sessions | None = None,
                 limiter: LoginLimiter | None = None, cookie_name: str = "preau-session") -> None:
        self.store = store
        self.tokens = tokens
        self.secure = secure_cookies
        self.sessions = sessions or Sessions()
        self.limiter = limiter or LoginLimiter()
        # __Host-: only a Secure cookie, set by this host for path /, can bear the name
        # A service's own name: cookies do not tell ports apart, and a school's gateway and a city's
        # service may be reached on one host name.
        self.cookie = f"__Host-{cookie_name}" if secure_cookies else cookie_name
        login_name = cookie_name.replace("session", "login") if "session" in cookie_name else cookie_name + "-login"
        self.login_cookie = f"__Host-{login_name}" if secure_cookies else login_name

    def bearer_role(self, token: str) -> str | None:
        found = None
        for role, expected in self.tokens().items():
            # every role compared: the time taken says nothing about which matched
            if expected and hmac.compare_digest(token.encode(), expected.encode()) and found is None:
                found = role
        return found

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            role = self.bearer_role(token.strip())
            return Principal(role, f"token-{role}", "bearer") if role else None
        cookie = request.cookies.get(self.cookie)
        if not cookie:
            return None
        session = self.sessions.get(cookie)
        if session is None:
            return None
        account = self.store.get(session.account)
        if account is None or account.changed != session.changed or account.role != session.role:
            self.sessions.drop(cookie)  # removed, password reset or role changed: over
            return None
        return Principal(account.role, account.id, "session", account.login, session.csrf)

    def set_cookie(self, response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure, httponly=True,
                            samesite="strict")


class NeedsLogin(Exception):
    """A page asked for without a session: to the log-in form (303)."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageForbidden(Exception):
    """A page the account's role may not see (403, as a page)."""


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each); the body is
    bounded by the app's BodyLimit."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


class Allow:
    """The dependency every route has: the roles it admits. `page=True`: a
    person's page, whose refusal is the log-in form or a page; otherwise
    401 (with WWW-Authenticate) and 403 in JSON. `loopback=True`: open to
    the machine itself (a local Prometheus). The app's `state.access` is
    its Access."""

    def __init__(self, *roles: str, page: bool = False, loopback: bool = False) -> None:
        self.roles = roles
        self.page = page
        self.loopback = loopback

    def __repr__(self) -> str:
        return f"Allow{self.roles}"

    async def __call__(self, request: Request) -> Principal | None:
        if self.loopback and is_loopback(request.client.host if request.client else None):
            return None
        access: Access = request.app.state.access
        principal = access.principal(request)
        if principal is None:
            if self.page and request.method in SAFE_METHODS:
                raise NeedsLogin(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            raise HTTPException(status_code=401, detail="log in, or send a valid bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        if principal.role not in self.roles:
            if self.page and request.method in SAFE_METHODS:
                raise PageForbidden()
            raise HTTPException(status_code=403, detail=f"this needs the {' or '.join(self.roles)} role")
        if principal.via == "session" and request.method not in SAFE_METHODS:
            await check_csrf(request, principal)
        request.state.principal = principal
        return principal


async def check_csrf(request: Request, principal: Principal) -> None:
    given = request.headers.get(CSRF_HEADER) or (await form_of(request)).get(CSRF_FIELD, "")
    if not principal.csrf or not hmac.compare_digest(given.encode(), principal.csrf.encode()):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token: reload the page and try again")


def actor(request: Request) -> Principal:
    """The principal that the route's Allow admitted (a dependency for the
    handlers that write an audit log)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:  # a route without Allow: a programming error, refused
        raise HTTPException(status_code=403, detail="no identity")
    return principal


def login_url(next_url: str) -> str:
    return "/login?next=" + quote(next_url, safe="/")


_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%=&?-]{0,200}$")


def safe_next(value: str | None) -> str:
    """Where to go after log-in: a path of this site only. No `//host`, no
    backslash, no space or control character (a browser drops a tab from a
    URL, so "/\t/evil.example" would become "//evil.example")."""
    if not value or not _NEXT.match(value):
        return "/"
    return value
