"""Who may use the gateway's pages and API: accounts with argon2 hashes,
sessions in Secure, HttpOnly, SameSite=Strict cookies, CSRF on every change
made with the cookie, log-in rate limiting, roles on every route (walked
from the app's route table, so a new route cannot be forgotten), the
first account at the first start, and the CLI."""

from __future__ import annotations

import html
import io
import json
import os
import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from common.web.accounts import FIRST_PASSWORD_FILE, AccountError
from common.web.auth import Access, LoginLimiter, Sessions
from devkit.testing import school_clock
from edge_gateway.accounts import AccountStore, ensure_first
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from edge_gateway.history import read_audit
from tests.routes import allow_of, routes_of

pytestmark = pytest.mark.broker

DIRECTOR_TOKEN = "director-token-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789"
PASSWORDS = {"direction": "le-bon-mot-de-passe-1", "tech": "le-bon-mot-de-passe-2", "lecture": "le-bon-mot-de-passe-3"}
ROLES = {"direction": "director", "tech": "technician", "lecture": "viewer"}
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # argon2id all the same, fast for tests


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_access(path: str, clock: Clock | None = None) -> Access:
    """An app's accounts (one per role), with a cheap hash and a clock the test moves."""
    clock = clock or Clock()
    store = AccountStore(path, hasher=CHEAP)
    for login, role in ROLES.items():
        store.add(login, role, PASSWORDS[login])
    return Access(store, lambda: {"director": DIRECTOR_TOKEN, "viewer": VIEWER_TOKEN},
                  sessions=Sessions(clock=clock), limiter=LoginLimiter(clock=clock))


def school_gateway(mosquitto, tmp_path) -> Gateway:
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "gateway_id": "gw-0341234a", "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {}}, "policy": {"zone": "C"}})
    return Gateway(config, clock=school_clock(), reconnect_max_s=1).start()


@pytest.fixture
def gateway(mosquitto, tmp_path):
    gw = school_gateway(mosquitto, tmp_path)
    yield gw
    gw.stop()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(gateway, tmp_path, clock):
    return create_app(gateway, ApiSettings(token=DIRECTOR_TOKEN, viewer_token=VIEWER_TOKEN),
                      access=make_access(str(tmp_path / "accounts.json"), clock))


def browser(app, host: str = "10.0.0.5") -> TestClient:
    # https: a Secure cookie is only sent back over a secure connection
    return TestClient(app, base_url="https://gateway.test", client=(host, 50000), follow_redirects=False)


def form_token(client: TestClient, path: str = "/login") -> str:
    text = client.get(path).text
    marker = 'name="csrf" value="'
    return text[text.index(marker) + len(marker):].split('"', 1)[0]


def log_in(client: TestClient, login: str, password: str | None = None):
    token = form_token(client)
    return client.post("/login", data={"login": login, "password": password or PASSWORDS[login], "csrf": token})


def session_for(app, login: str) -> tuple[TestClient, str]:
    """A browser logged in as `login`, and its CSRF token."""
    client = browser(app)
    r = log_in(client, login)
    assert r.status_code == 303, r.text
    return client, form_token(client, "/overrides")


# log-in ---------------------------------------------------------------------------------------


def test_log_in_sets_a_secure_httponly_strict_cookie_and_a_wrong_password_does_not(app):
    client = browser(app)
    assert client.get("/").status_code == 303 and client.get("/").headers["location"] == "/login?next=/"
    r = log_in(client, "direction", "not-the-password")
    assert r.status_code == 401 and "Identifiant ou mot de passe incorrect" in r.text
    assert "__Host-preau-session" not in r.headers.get("set-cookie", "")
    r = log_in(client, "nobody", "whatever-it-is")
    assert r.status_code == 401 and "Identifiant ou mot de passe incorrect" in r.text  # the same answer
    r = log_in(client, "direction")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = [c for c in r.headers.get_list("set-cookie") if c.startswith("__Host-preau-session=")][0]
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    page = client.get("/")
    assert page.status_code == 200 and 'lang="fr"' in page.text and "direction" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_log_in_goes_back_where_it_was_asked_only_on_this_site(app):
    client = browser(app)
    assert client.get("/audit").headers["location"] == "/login?next=/audit"
    token = form_token(client)
    r = client.post("/login?next=/audit", data={"login": "direction", "password": PASSWORDS["direction"], "csrf": token})
    assert r.headers["location"] == "/audit"
    for elsewhere in ("//evil.example/x", "/\t/evil.example", "/\\evil.example", "https://evil.example"):
        client = browser(app)
        token = form_token(client)
        r = client.post("/login", params={"next": elsewhere},
                        data={"login": "direction", "password": PASSWORDS["direction"], "csrf": token})
        assert r.headers["location"] == "/", elsewhere


def test_log_in_is_rate_limited_per_address_and_per_login(app, clock):
    client = browser(app, "10.0.0.7")
    for _ in range(5):
        assert log_in(client, "direction", "wrong-password-x").status_code == 401
    r = log_in(client, "direction")  # the right one, too late
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0 and "Trop d'essais" in html.unescape(r.text)
    other = browser(app, "10.0.0.8")  # another machine is not held back by this one
    assert log_in(other, "direction").status_code == 303
    clock.now += 61
    assert log_in(client, "direction").status_code == 303
    # one login tried from many addresses: 20 failures, then that login waits
    for i in range(20):
        assert log_in(browser(app, f"10.1.0.{i}"), "tech", "wrong-password-x").status_code == 401
    assert log_in(browser(app, "10.2.0.1"), "tech").status_code == 429
    clock.now += 901
    assert log_in(browser(app, "10.2.0.1"), "tech").status_code == 303


def test_the_log_in_form_has_its_own_csrf_token(app):
    client = browser(app)
    r = client.post("/login", data={"login": "direction", "password": PASSWORDS["direction"]})
    assert r.status_code == 403
    form_token(client)
    r = client.post("/login", data={"login": "direction", "password": PASSWORDS["direction"], "csrf": "forged"})
    assert r.status_code == 403


# sessions ----------------------------------------------------------------------------------------


def test_expired_forged_and_reset_sessions_are_refused(app, clock):
    client, _ = session_for(app, "direction")
    assert client.get("/api/rooms").status_code == 200
    clock.now += 12 * 3600 + 1
    assert client.get("/api/rooms").status_code == 401
    assert client.get("/").status_code == 303
    forged = browser(app)
    forged.cookies.set("__Host-preau-session", "a" * 43, domain="gateway.test")
    assert forged.get("/api/rooms").status_code == 401 and forged.get("/").status_code == 303
    # a password reset (preau gateway account reset) ends the account's sessions
    client, _ = session_for(app, "tech")
    assert client.get("/api/rooms").status_code == 200
    app.state.access.store.reset("tech", "un-autre-mot-de-passe")
    assert client.get("/api/rooms").status_code == 401
    # log-out ends it too
    client, csrf = session_for(app, "lecture")
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/api/rooms").status_code == 401


def test_changes_made_with_the_cookie_need_the_csrf_token(app, gateway):
    client, csrf = session_for(app, "direction")
    form = {"scope": "room", "room": "cm2-b", "effect": "deny", "expires": "2026-11-24T11:00", "why": "Évaluation"}
    assert client.post("/overrides", data=form).status_code == 403
    assert client.post("/overrides", data=form | {"csrf": "wrong"}).status_code == 403
    r = client.post("/overrides", data=form | {"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/overrides?added=o-000001"
    body = {"scope": "room", "room": "cm2-b", "effect": "deny", "minutes": 30, "why": "Évaluation"}
    assert client.post("/api/overrides", json=body).status_code == 403
    assert client.post("/api/overrides", json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    r = client.post("/api/overrides", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    # the audit names the role and the account id, never a typed name
    account = app.state.access.store.by_login("direction").id
    audit = read_audit(gateway.config.db, 10)
    assert [a["who"] for a in audit] == [f"director:{account}"] * 2
    assert r.json()["who"] == f"director:{account}"


def test_roles(app):
    viewer, csrf = session_for(app, "lecture")
    assert viewer.get("/").status_code == 200
    assert viewer.get("/audit").status_code == 403  # a page saying so
    assert viewer.post("/overrides", data={"csrf": csrf}).status_code == 403
    assert viewer.post("/boards/cm2-b/identify", data={"csrf": csrf}).status_code == 403
    tech, csrf = session_for(app, "tech")
    assert tech.post("/overrides", data={"csrf": csrf}).status_code == 403
    r = tech.post("/boards/cm2-b/identify", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"].startswith("/boards?sent=cm2-b,identify,b-")
    r = tech.post("/api/rooms/cm2-b/board/identify", json={"seconds": 3}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 202
    # the machine clients' bearer tokens keep working, without CSRF (a browser never sends them by itself)
    api = TestClient(app)
    assert api.post("/api/rooms/cm2-b/board/end", headers={"Authorization": f"Bearer {DIRECTOR_TOKEN}"}).status_code == 202
    assert api.post("/api/rooms/cm2-b/board/end", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}).status_code == 403


# every route, from the route table ------------------------------------------------------------------

# Open on purpose: health for systemd and the city's probes; the log-in; and
# the boards' OTA downloads, which carry their own authentication (the
# manifest is signed with the room's board key, each file named by its
# SHA-256: docs/ota.md), tested in tests/test_ota_gateway.py.
OPEN = {("/healthz", "GET"), ("/login", "GET"), ("/login", "POST"),
        ("/ota/{room}/{order_id}/manifest", "GET"), ("/ota/blobs/{digest}", "GET")}
SAMPLES = {"room": "cm2-b", "action": "identify", "command_id": "b-1-1", "override_id": "o-000001",
           "order_id": "u-1-1", "digest": "0" * 64}
STREAMING = {"/live"}  # answers for ever once admitted: only its refusals are tried


def test_every_route_refuses_without_a_session_and_with_the_wrong_role(app):
    sessions = {role: session_for(app, login) for login, role in ROLES.items()}
    tried = 0
    seen = set()
    for full_path, methods, route in routes_of(app):
        if isinstance(route, Mount):
            assert full_path in ("/static", "/static/common"), full_path  # the pages' CSS and scripts: nothing else is open
            continue
        assert isinstance(route, APIRoute), route  # a plain Starlette route would escape the checks below
        path = full_path.format(**SAMPLES)
        for method in sorted(methods - {"HEAD"}):
            seen.add((method, full_path))
            allow = allow_of(route)
            if (full_path, method) in OPEN:
                assert allow is None, route.path
                continue
            assert allow is not None, f"{method} {full_path} names no roles (Allow)"
            tried += 1
            anonymous = browser(app).request(method, path)
            page_get = method == "GET" and not route.include_in_schema and full_path != "/openapi.json"
            if page_get:
                assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login"), path
            else:
                assert anonymous.status_code == 401, (method, path, anonymous.status_code)
            forged = browser(app)
            forged.cookies.set("__Host-preau-session", "forged-" + "x" * 40, domain="gateway.test")
            assert forged.request(method, path).status_code in ((303,) if page_get else (401,)), path
            wrong = TestClient(app, follow_redirects=False).request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == (303 if page_get else 401), (method, path, wrong.status_code)
            for role, (client, csrf) in sessions.items():
                headers = {"X-CSRF-Token": csrf} if method != "GET" else {}
                if role not in allow.roles:
                    r = client.request(method, path, headers=headers)
                    assert r.status_code == 403, (method, path, role, r.status_code)
                elif method != "GET":
                    # admitted by role, refused without the session's CSRF token
                    assert client.request(method, path).status_code == 403, (method, path, role)
                elif full_path not in STREAMING:
                    r = client.request(method, path)
                    assert r.status_code not in (401, 403), (method, path, role, r.status_code)
            bearer = {"director": DIRECTOR_TOKEN, "viewer": VIEWER_TOKEN}
            for role, token in bearer.items():
                if role not in allow.roles:
                    r = TestClient(app).request(method, path, headers={"Authorization": f"Bearer {token}"})
                    assert r.status_code == 403, (method, path, role)
    assert tried >= 20 and {("GET", "/api/rooms"), ("POST", "/overrides"), ("GET", "/live")} <= seen


# accounts ---------------------------------------------------------------------------------------------


def test_accounts_file_is_private_and_holds_argon2_hashes_only(tmp_path):
    store = AccountStore(str(tmp_path / "accounts.json"), hasher=CHEAP)
    a = store.add("direction", "director", "un-mot-de-passe-assez-long")
    assert a.id == "u-0001" and a.hash.startswith("$argon2id$")
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    text = Path(store.path).read_text()
    assert "un-mot-de-passe-assez-long" not in text
    assert store.verify("direction", "un-mot-de-passe-assez-long") == a
    assert store.verify("direction", "un-autre") is None and store.verify("personne", "x" * 12) is None
    with pytest.raises(AccountError, match="exists already"):
        store.add("direction", "viewer", "un-mot-de-passe-assez-long")
    with pytest.raises(AccountError, match="password"):
        store.add("court", "viewer", "court")
    with pytest.raises(AccountError, match="login"):
        store.add("Mme Dupont", "viewer", "un-mot-de-passe-assez-long")
    with pytest.raises(AccountError, match="last director"):
        store.remove("direction")
    b = store.add("tech", "technician", "un-mot-de-passe-assez-long")
    store.remove("tech")
    assert store.add("tech2", "technician", "un-mot-de-passe-assez-long").id != b.id  # ids are never reused
    assert json.loads(text)["accounts"][0]["role"] == "director"


def test_the_first_start_makes_the_first_director_no_default_password(tmp_path):
    store = AccountStore(str(tmp_path / "accounts.json"), hasher=CHEAP)
    out = io.StringIO()
    made = ensure_first(store, {"PREAU_ADMIN_PASSWORD": "donne-par-l-environnement"}, out)
    assert made is not None and made.role == "director" and made.login == "direction"
    assert "donne-par-l-environnement" not in out.getvalue()  # never echoed
    assert store.verify("direction", "donne-par-l-environnement")
    assert ensure_first(store, {}, out) is None  # once only
    # without the variable, and no terminal (a service): a generated password, in a 0600 file, not in the log
    store = AccountStore(str(tmp_path / "other" / "accounts.json"), hasher=CHEAP)
    out = io.StringIO()
    ensure_first(store, {}, out)
    where = tmp_path / "other" / FIRST_PASSWORD_FILE
    password = where.read_text().split("password: ")[1].strip()
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600 and password not in out.getvalue() and str(where) in out.getvalue()
    assert len(password) >= 16 and store.verify("direction", password)


def test_the_command_line_adds_resets_and_lists(tmp_path, capsys, monkeypatch):
    from preau.cli import main

    config = tmp_path / "school.toml"
    config.write_text('school = "0341234a"\ngateway_id = "gw-0341234a"\ndb = "gw.sqlite"\n[school_broker]\n'
                      'host = "127.0.0.1"\nport = 1883\n[policy]\nzone = "C"\n[rooms.cm2-b]\n')
    assert main(["gateway", "account", "add", "tech-mairie", "--role", "technician", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    password = shown.split("password: ")[1].split()[0]
    store = AccountStore(str(tmp_path / "accounts.json"))
    assert store.verify("tech-mairie", password).role == "technician"
    monkeypatch.setattr("sys.stdin", io.StringIO("choisi-par-le-technicien\n"))
    assert main(["gateway", "account", "reset", "tech-mairie", "--password-stdin", "--config", str(config)]) == 0
    assert "choisi-par-le-technicien" not in capsys.readouterr().out
    assert store.verify("tech-mairie", "choisi-par-le-technicien")
    assert main(["gateway", "account", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert "u-0001" in listed and "technician" in listed and "$argon2" not in listed
    assert main(["gateway", "account", "reset", "nobody", "--config", str(config)]) == 1
