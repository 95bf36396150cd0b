"""The city's supervision pages (cloud_bridge/web/): log-in with the city's
roles (supervisor, technician, viewer), every page and route refused
without a session and with the wrong role (walked from the app's route
table, so a new route cannot be forgotten), the first supervisor at the
first start, `preau city account`; then, in Debian's headless Chromium
(Playwright's sync API), against the real city service on the locked city
broker fed through the real ingest: log in, see a school and its rooms,
acknowledge and close the alert a projector fault raised, download the
usage CSV. axe-core on every page (no serious or critical violation), any
console error fails, screenshots in artifacts/city-pages/. Every wait is on
a condition, never a fixed sleep."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import stat
import threading
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from cloud_bridge.alerts import Rules
from cloud_bridge.api import create_app
from cloud_bridge.service import City, url_of
from cloud_bridge.settings import CitySettings
from cloud_bridge.store import CityStore
from cloud_bridge.web import PagesSettings, install
from cloud_bridge.web.accounts import CityAccountStore, ensure_first
from cloud_bridge.web.accounts import main as account_main
from common.web.auth import LoginLimiter, Sessions
from devkit.testing import wait_for
from protocol.citylink import parse_batch
from tests.routes import allow_of, routes_of

SCHOOL = "0341234a"
GATEWAY_ID = "gw-0341234a"
TOKEN = "city-operator-token-0123456789"
PASSWORDS = {"supervision": "le-bon-mot-de-passe-1", "tech-ville": "le-bon-mot-de-passe-2",
             "lecture": "le-bon-mot-de-passe-3"}
ROLES = {"supervision": "supervisor", "tech-ville": "technician", "lecture": "viewer"}
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # argon2id all the same, fast for tests
COOKIE = "__Host-preau-city-session"
WAIT_S = 30.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def accounts_in(path: Path) -> CityAccountStore:
    store = CityAccountStore(str(path), hasher=CHEAP)
    for login, role in ROLES.items():
        store.add(login, role, PASSWORDS[login])
    return store


def pages_settings(tmp_path: Path, rules: dict | None = None) -> PagesSettings:
    accounts_in(tmp_path / "city-accounts.json")
    return PagesSettings(str(tmp_path / "city-accounts.json"), str(tmp_path / "city-alerts.db"),
                         Rules.from_dict(rules or {"every_s": 0.2, "rules": {"gateway_offline": {"minutes": 0},
                                                                             "projector_error": {}}}, environ={}))


def batch(records: list[dict]) -> bytes:
    return json.dumps({"v": 1, "school": SCHOOL, "gateway": GATEWAY_ID, "records": records}).encode()


def birth(boot: int = 7) -> dict:
    return {"v": 1, "online": True, "boot": boot, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5120,
            "session": "idle", "ap": False, "devices": ["button", "projector"]}


# the app over a real store, without a broker --------------------------------------------------------------


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(tmp_path, clock):
    store = CityStore(str(tmp_path / "city.db"))
    store.store_batch(parse_batch(SCHOOL, batch([
        {"seq": 1, "room": "cm2-b", "kind": "state", "at": 100.0, "body": birth()},
        {"seq": 2, "room": "cp-a", "kind": "state", "at": 100.0, "body": birth(3)},
    ])), received_at=103.0)
    store.set_gateway_state(SCHOOL, False, GATEWAY_ID, 104.0)
    settings = CitySettings(token=TOKEN, db_path=str(tmp_path / "city.db"))
    app = create_app(store, settings)
    install(app, store, settings, pages_settings(tmp_path), environ={}, hasher=CHEAP,
            sessions=Sessions(clock=clock), limiter=LoginLimiter(clock=clock))
    app.state.supervision.alerts.evaluate()  # the gateway is offline: alert 1
    yield app
    store.close()


def browser(app, host: str = "10.0.0.5") -> TestClient:
    # https: a Secure cookie is only sent back over a secure connection
    return TestClient(app, base_url="https://city.test", client=(host, 50000), follow_redirects=False)


def form_token(client: TestClient, path: str = "/login") -> str:
    text = client.get(path).text
    marker = 'name="csrf" value="'
    return text[text.index(marker) + len(marker):].split('"', 1)[0]


def session_for(app, login: str) -> tuple[TestClient, str]:
    client = browser(app)
    token = form_token(client)
    r = client.post("/login", data={"login": login, "password": PASSWORDS[login], "csrf": token})
    assert r.status_code == 303, r.text
    return client, form_token(client, "/alerts")


def test_log_in_sets_the_citys_own_secure_cookie(app, clock):
    client = browser(app)
    assert client.get("/").headers["location"] == "/login?next=/"
    token = form_token(client)
    r = client.post("/login", data={"login": "supervision", "password": "pas-le-bon-mot", "csrf": token})
    assert r.status_code == 401 and "Identifiant ou mot de passe incorrect" in r.text
    token = form_token(client)
    r = client.post("/login", data={"login": "supervision", "password": PASSWORDS["supervision"], "csrf": token})
    assert r.status_code == 303
    cookie = [c for c in r.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")][0]
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= {a.strip().lower() for a in cookie.split(";")[1:]}
    page = client.get("/")
    assert page.status_code == 200 and 'lang="fr"' in page.text and SCHOOL in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'lang="en"' in client.get("/?lang=en").text and 'lang="en"' in client.get("/").text  # remembered
    clock.now += 12 * 3600 + 1
    assert client.get("/").status_code == 303  # the session is over
    # the operator's bearer token opens the API, not the pages; a session does not open the API
    api = TestClient(app, follow_redirects=False)
    assert api.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert api.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 303
    fresh, _ = session_for(app, "supervision")
    assert fresh.get("/api/status").status_code == 401


def test_roles_on_alerts(app):
    viewer, csrf = session_for(app, "lecture")
    assert viewer.get("/alerts").status_code == 200 and "Acquitter" not in viewer.get("/alerts").text
    assert viewer.post("/alerts/1/ack", data={"csrf": csrf}).status_code == 403
    tech, csrf = session_for(app, "tech-ville")
    assert tech.post("/alerts/1/ack", data={"csrf": "wrong"}).status_code == 403
    r = tech.post("/alerts/1/ack", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/alerts?acked=1"
    assert tech.post("/alerts/mail-test", data={"csrf": csrf}).status_code == 403
    sup, csrf = session_for(app, "supervision")
    r = sup.post("/alerts/1/close", data={"csrf": csrf})
    assert r.headers["location"] == "/alerts?closed=1"
    assert sup.post("/alerts/1/close", data={"csrf": csrf}).headers["location"] == "/alerts?gone=1"
    tech_id = app.state.access.store.by_login("tech-ville").id
    sup_id = app.state.access.store.by_login("supervision").id
    [closed] = app.state.supervision.book.history()
    # the role and the account id, never a name
    assert (closed["acked_by"], closed["closed_by"]) == (f"technician:{tech_id}", f"supervisor:{sup_id}")


# every route, from the route table -----------------------------------------------------------------------

OPEN = {("/login", "GET"), ("/login", "POST")}
# The API's description: the operator's token, as the API it describes, or a person's log-in
# (the /docs page reads it); refused as JSON (401), not sent to the log-in form.
FOR_THE_OPERATOR_OR_A_PERSON = {"/openapi.json"}
SAMPLES = {"school": SCHOOL, "room": "cm2-b", "alert_id": "1", "action": "ack"}


def test_every_route_refuses_without_a_session_and_with_the_wrong_role(app):
    sessions = {role: session_for(app, login) for login, role in ROLES.items()}
    pages = 0
    seen = set()
    for full_path, methods, route in routes_of(app):
        if isinstance(route, Mount):
            assert full_path in ("/static", "/static/common"), full_path  # the pages' CSS: nothing else is open
            continue
        if full_path in FOR_THE_OPERATOR_OR_A_PERSON:
            assert allow_of(route) is None and methods == {"GET"}
            anonymous = browser(app).get(full_path)
            assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
            forged = browser(app)
            forged.cookies.set(COOKIE, "forged-" + "x" * 40, domain="city.test")
            assert forged.get(full_path).status_code == 401
            assert browser(app).get(full_path, headers={"Authorization": "Bearer " + "x" * 30}).status_code == 401
            for _role, (client, _csrf) in sessions.items():
                assert client.get(full_path).status_code == 200
            bearer = browser(app).get(full_path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 200 and "/api/records" in bearer.json()["paths"]
            seen.add(("GET", full_path))
            continue
        assert isinstance(route, APIRoute), route  # a plain Starlette route would escape the checks below
        path = full_path.format(**SAMPLES)
        for method in sorted(methods - {"HEAD"}):
            seen.add((method, full_path))
            if (full_path, method) in OPEN:
                assert allow_of(route) is None
                continue
            allow = allow_of(route)
            anonymous = browser(app).request(method, path)
            forged = browser(app)
            forged.cookies.set(COOKIE, "forged-" + "x" * 40, domain="city.test")
            if allow is None:
                # the API (cloud_bridge/api.py): the operator's bearer token, which no session replaces;
                # health and metrics open to loopback only
                assert route.include_in_schema or full_path in ("/healthz", "/metrics"), \
                    f"{method} {full_path}: a page without Allow"
                assert anonymous.status_code == 401, (method, path, anonymous.status_code)
                for _role, (client, _csrf) in sessions.items():
                    assert client.request(method, path).status_code == 401, (method, path)
                continue
            pages += 1
            page_get = method == "GET"
            if page_get:
                assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login"), path
            else:
                assert anonymous.status_code == 401, (method, path, anonymous.status_code)
            assert forged.request(method, path).status_code == (303 if page_get else 401), path
            bearer = TestClient(app, follow_redirects=False).request(
                method, path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == (303 if page_get else 401), (method, path, bearer.status_code)
            for role, (client, csrf) in sessions.items():
                if role not in allow.roles:
                    headers = {"X-CSRF-Token": csrf} if method != "GET" else {}
                    r = client.request(method, path, headers=headers)
                    assert r.status_code == 403, (method, path, role, r.status_code)
                elif method != "GET":
                    # admitted by role, refused without the session's CSRF token
                    assert client.request(method, path).status_code == 403, (method, path, role)
                else:
                    r = client.request(method, path)
                    assert r.status_code == 200, (method, path, role, r.status_code)
    assert pages >= 10 and {("GET", "/"), ("GET", "/usage.csv"), ("POST", "/alerts/{alert_id}/{action}"),
                            ("POST", "/alerts/mail-test"), ("GET", "/api/status"), ("GET", "/docs"),
                            ("GET", "/openapi.json")} <= seen


WEEK = 7 * 86400.0


def test_the_equipment_page_forecasts_each_lamp_soonest_first(tmp_path, clock):
    clock.now = 1_790_000_000.0  # 2026-09-21
    now = clock.now

    def lamp(seq: int, room: str, at: float, hours: int) -> dict:
        return {"seq": seq, "room": room, "kind": "telemetry", "at": at,
                "body": {"v": 1, "interval_s": 300, "n": 5, "projector": "off", "lamp_h": hours}}

    records = [lamp(1, "ce1", now - 60, 3100), lamp(2, "cp-a", now - 60, 1200)]
    for k in range(9):  # nine weekly readings: cm2-b 20 h a week, 40 h from its life; ce2 10 h a week
        records.append(lamp(3 + 2 * k, "cm2-b", now - (8 - k) * WEEK - 60, 2800 + 20 * k))
        records.append(lamp(4 + 2 * k, "ce2", now - (8 - k) * WEEK - 60, 1000 + 10 * k))
    store = CityStore(str(tmp_path / "city.db"))
    try:
        store.store_batch(parse_batch(SCHOOL, batch(records)), received_at=now)
        settings = CitySettings(token=TOKEN, db_path=str(tmp_path / "city.db"))
        app = create_app(store, settings)
        install(app, store, settings, pages_settings(tmp_path), environ={}, hasher=CHEAP, now=clock,
                sessions=Sessions(clock=clock), limiter=LoginLimiter(clock=clock))
        client, _ = session_for(app, "lecture")
        text = client.get("/equipment").text
        rows = re.findall(r'<tr id="projector-0341234a-([\w-]+)">(.*?)</tr>', text)
        assert [room for room, _ in rows] == ["ce1", "cm2-b", "ce2", "cp-a"]  # soonest replacement first
        cells = dict(rows)
        assert "durée de vie atteinte" in cells["ce1"]
        assert "05/10/2026" in cells["cm2-b"] and "dans moins de 8 semaines" in cells["cm2-b"]
        assert '<td class="num">20</td>' in cells["cm2-b"] and '<td class="num">3000</td>' in cells["cm2-b"]
        assert "/2030" in cells["ce2"] and "badge" not in cells["ce2"]
        assert "pas assez de données" in cells["cp-a"]
        client.cookies.set("preau-lang", "en", domain="city.test")
        english = client.get("/equipment").text
        assert "not enough data" in english and "within 8 weeks" in english
    finally:
        store.close()


def test_the_api_description_page_is_ours_and_shipped(app):
    # FastAPI's /docs would load Swagger UI from a CDN, with no log-in: ours reads
    # /openapi.json with a script of the package (common/web/static/docs.js)
    client, _csrf = session_for(app, "lecture")
    docs = client.get("/docs")
    assert docs.status_code == 200 and '<script src="/static/common/docs.js"' in docs.text
    assert 'data-src="/openapi.json"' in docs.text and "cdn" not in docs.text.lower()
    script = client.get("/static/common/docs.js")
    assert script.status_code == 200 and "fetch(" in script.text and "http" not in script.text
    assert client.get("/openapi.json").json()["info"]["title"] == "Préau city supervision"
    assert client.get("/redoc").status_code == 404


# accounts -----------------------------------------------------------------------------------------------


def test_the_first_start_makes_the_first_supervisor_no_default_password(tmp_path):
    store = CityAccountStore(str(tmp_path / "city-accounts.json"), hasher=CHEAP)
    out = io.StringIO()
    made = ensure_first(store, {"PREAU_CITY_ADMIN_PASSWORD": "donne-par-l-environnement"}, out)
    assert made is not None and (made.login, made.role) == ("supervision", "supervisor")
    assert "donne-par-l-environnement" not in out.getvalue()
    assert ensure_first(store, {}, out) is None
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    # without the variable and without a terminal: a generated password in a 0600 file, never in the log
    other = CityAccountStore(str(tmp_path / "other" / "city-accounts.json"), hasher=CHEAP)
    out = io.StringIO()
    ensure_first(other, {}, out)
    # named after the city's accounts file: a school gateway's beside it is another file
    where = tmp_path / "other" / "city-accounts.first-password"
    assert not (tmp_path / "other" / "accounts.first-password").exists()
    password = where.read_text().split("password: ")[1].strip()
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600 and password not in out.getvalue()
    assert other.verify("supervision", password)
    with pytest.raises(ValueError, match="last supervisor"):
        other.remove("supervision")


def test_install_makes_the_first_account_beside_the_database(tmp_path):
    store = CityStore(str(tmp_path / "city.db"))
    try:
        settings = CitySettings(token=TOKEN, db_path=str(tmp_path / "city.db"))
        out = io.StringIO()
        install(create_app(store, settings), store, settings,
                environ={"PREAU_CITY_ADMIN_PASSWORD": "le-mot-de-passe-du-maire"}, hasher=CHEAP, out=out)
        assert CityAccountStore(str(tmp_path / "city-accounts.json")).verify("supervision", "le-mot-de-passe-du-maire")
        # The alerts are in the city's database (cloud_bridge/alerts.py), no file of their own.
        assert not (tmp_path / "city-alerts.db").exists()
    finally:
        store.close()


def test_a_wrong_rules_file_or_setting_stops_the_start(tmp_path):
    from cloud_bridge.errors import CitySettingsError

    settings = CitySettings(token=TOKEN, db_path=str(tmp_path / "city.db"))
    (tmp_path / "city-alerts.toml").write_text("[rules.gateway_ofline]\nminutes = 5\n")
    with pytest.raises(CitySettingsError, match="unknown rule"):
        PagesSettings.from_env(settings, {})
    (tmp_path / "city-alerts.toml").write_text("[rules.gateway_offline]\nminutes = 5\n")
    assert PagesSettings.from_env(settings, {}).rules.rules["gateway_offline"]["minutes"] == 5
    with pytest.raises(CitySettingsError, match="PREAU_CITY_COOKIE_SECURE"):
        PagesSettings.from_env(settings, {"PREAU_CITY_COOKIE_SECURE": "yes"})
    with pytest.raises(CitySettingsError, match="PREAU_CITY_TIMEZONE"):
        PagesSettings.from_env(settings, {"PREAU_CITY_TIMEZONE": "Mars/Olympus"})


def test_the_command_line_adds_resets_removes_and_lists(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "city.db")
    assert account_main(["add", "tech-ville", "--role", "technician", "--db", db]) == 0
    password = capsys.readouterr().out.split("password: ")[1].split()[0]
    store = CityAccountStore(str(tmp_path / "city-accounts.json"))
    assert store.verify("tech-ville", password).role == "technician"
    monkeypatch.setattr("sys.stdin", io.StringIO("choisi-par-le-technicien\n"))
    assert account_main(["reset", "tech-ville", "--password-stdin", "--db", db]) == 0
    assert "choisi-par-le-technicien" not in capsys.readouterr().out
    assert store.verify("tech-ville", "choisi-par-le-technicien")
    assert account_main(["list", "--db", db]) == 0
    listed = capsys.readouterr().out
    assert "u-0001" in listed and "technician" in listed and "$argon2" not in listed
    assert account_main(["remove", "tech-ville", "--db", db]) == 0
    assert account_main(["reset", "nobody", "--db", db]) == 1
    with pytest.raises(SystemExit):
        account_main(["add", "x-y", "--role", "director", "--db", db])  # a school's role, not the city's


# in a real browser, on the real city ---------------------------------------------------------------------

playwright_api = pytest.importorskip("playwright.sync_api")
from tests.browser import ARTIFACTS, AXE, CHROMIUM, WAIT_MS, check, launch, new_page  # noqa: E402

expect = playwright_api.expect

SHOTS = ARTIFACTS / "city-pages"
browser_only = pytest.mark.skipif(not os.path.exists(CHROMIUM) or not AXE.exists(),
                                  reason="needs Debian's chromium and node_modules/axe-core")


class CityUnderTest:
    """The city's service as production wires it (City.open: store, ingest,
    API), with the pages installed, served on its own loop in a thread."""

    def __init__(self, settings: CitySettings, pages: PagesSettings) -> None:
        self.city = City.open(settings)
        install(self.city.app, self.city.store, settings, pages, environ={}, hasher=CHEAP)
        sock = self.city.listen()
        self.url = url_of(sock)
        self.server = self.city.server(log_level="warning")
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[sock])),
                                       name="city-pages", daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), WAIT_S, "the city's server")
        assert self.server.started, "the city's server did not start"
        wait_for(lambda: self.city.ingest.ready, WAIT_S, "the city subscribed to its broker")

    @property
    def book(self):
        return self.city.app.state.supervision.book

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.city.close()


@pytest.fixture
def locked_city(tmp_path):
    from devkit.citybroker import LockedCity

    city = LockedCity.start(tmp_path / "pki", schools={SCHOOL: GATEWAY_ID})
    yield city
    city.stop()


@pytest.fixture
def city(locked_city, tmp_path):
    service = CityUnderTest(locked_city.worker_settings("1", db_path=str(tmp_path / "city.db")),
                            pages_settings(tmp_path))
    yield service
    service.stop()


@pytest.fixture
def school_gateway(locked_city, city):
    """The school's gateway reduced to its city link: a paho client with the school's certificate."""
    client = locked_city.client(SCHOOL)
    assert client.connect()
    yield client
    client.client.disconnect()
    client.client.loop_stop()


@pytest.fixture(scope="module")
def chromium():
    yield from launch()


@pytest.fixture
def page(chromium, request):
    yield from new_page(chromium, SHOTS / request.node.name, accept_downloads=True)


def send(gateway, seq0: int, records: list[dict]) -> None:
    for i, r in enumerate(records):
        r.setdefault("seq", seq0 + i)
    gateway.publish(f"preau/v1/city/{SCHOOL}/records", batch(records))


@browser_only
@pytest.mark.broker
def test_a_supervisor_sees_the_school_acknowledges_the_fault_and_downloads_the_usage(city, school_gateway, page):
    expect.set_options(timeout=WAIT_MS)
    now = time.time()
    school_gateway.publish(f"preau/v1/city/{SCHOOL}/gateway",
                           {"v": 1, "online": True, "gateway": GATEWAY_ID, "fw": "0.1.0"}, retain=True)
    started = {"v": 1, "boot": 7, "seq": 1, "uptime_ms": 6000, "time": now, "type": "session.started",
               "data": {"req": 1, "duration_s": 2700, "ap": True, "projector": True, "source": "gateway"}}
    ended = {"v": 1, "boot": 7, "seq": 2, "uptime_ms": 1_806_000, "time": now + 1800, "type": "session.ended",
             "data": {"reason": "teacher", "ran_s": 1800}}
    send(school_gateway, 1, [
        {"room": "cm2-b", "kind": "state", "at": now, "body": birth()},
        {"room": "cp-a", "kind": "state", "at": now, "body": birth(3)},
        {"room": "cm2-b", "kind": "evt", "at": now + 1, "body": started},
        {"room": "cm2-b", "kind": "evt", "at": now + 2, "body": ended},
        {"room": "cm2-b", "kind": "telemetry", "at": now + 3,
         "body": {"v": 1, "interval_s": 300, "n": 5, "session": "active", "ap": True, "projector": "on", "lamp_h": 812}},
    ])
    store = city.city.store
    wait_for(lambda: store.acked(SCHOOL) == 5 and any(s["online"] for s in store.status()["schools"]), WAIT_S,
             "the batch and the gateway's state stored")

    page.goto(city.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    check(page, "login")
    page.get_by_label("Identifiant").fill("supervision")
    page.get_by_label("Mot de passe").fill(PASSWORDS["supervision"])
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(city.url + "/")
    row = page.locator(f"#school-{SCHOOL}")
    expect(row).to_contain_text("en ligne")
    expect(row).to_contain_text("2 / 2")
    check(page, "schools")
    page.get_by_label("Rechercher une école").fill("nulle-part")
    page.get_by_role("button", name="Filtrer").click()
    expect(page.get_by_text("Aucune école ne correspond.")).to_be_visible()
    page.get_by_label("Rechercher une école").fill("0341")
    page.get_by_role("button", name="Filtrer").click()
    page.get_by_role("link", name=SCHOOL).click()
    expect(page).to_have_url(city.url + f"/schools/{SCHOOL}")
    expect(page.locator("#room-cm2-b")).to_contain_text("0.1.0")
    expect(page.locator("#room-cp-a")).to_contain_text("en ligne")
    check(page, "school")

    # the fault: cp-a's projector says "error", through the real ingest
    send(school_gateway, 6, [{"room": "cp-a", "kind": "telemetry", "at": now + 4,
                              "body": {"v": 1, "interval_s": 300, "n": 5, "projector": "error", "lamp_h": 2100}}])
    [alert] = wait_for(lambda: city.book.open_alerts(), WAIT_S, "the alert opened")
    assert (alert["rule"], alert["room"]) == ("projector_error", "cp-a")
    page.get_by_role("link", name="Alertes").click()
    line = page.locator(f"#alert-{alert['id']}")
    expect(line).to_contain_text("vidéoprojecteur en erreur")
    check(page, "alerts-open")
    line.get_by_role("button", name="Acquitter").click()
    expect(page.get_by_role("status")).to_contain_text(f"Alerte {alert['id']} acquittée")
    expect(line).to_contain_text("supervision (u-0001, supervision)")
    line.get_by_role("button", name="Clore").click()
    expect(page.get_by_role("status")).to_contain_text(f"Alerte {alert['id']} close")
    expect(page.locator("#history")).to_contain_text("vidéoprojecteur en erreur")
    check(page, "alerts-history")
    assert city.book.history()[0]["closed_by"] == "supervisor:u-0001"

    page.get_by_role("link", name="Équipement").click()
    expect(page.locator("#projectors")).to_contain_text("2100")
    expect(page.locator("#projector-0341234a-cp-a")).to_contain_text("pas assez de données")  # one reading so far
    expect(page.locator("#projector-0341234a-cp-a")).to_contain_text("en erreur")  # the state in words
    expect(page.locator("#projector-0341234a-cm2-b")).to_contain_text("allumé")
    check(page, "equipment")
    page.get_by_role("link", name="Utilisation").click()
    expect(page.locator("#usage")).to_contain_text("cm2-b")
    check(page, "usage")
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Télécharger le CSV").click()
    download = downloading.value
    text = Path(download.path()).read_text()
    lines = text.strip().splitlines()
    # the energy saved comes last: the first columns keep their places
    assert lines[0] == "school,room,month,sessions,session_minutes,projector_hours,ap_minutes,standby_kwh_saved"
    [cm2b] = [x for x in lines[1:] if x.startswith(f"{SCHOOL},cm2-b,")]
    assert cm2b.split(",")[3:7] == ["1", "30.0", "0.08", "5.0"]
    assert float(cm2b.split(",")[7]) >= 0  # ended just now: saved until now, or nothing after 16:30
    # a session of last September in cp-a, 9:00 to 10:00 Paris time, the projector switched off by the
    # board at its end: 6.5 h until 16:30 at 248 W, 1.61 kWh
    nine = 1_789_369_200.0  # 2026-09-14 09:00 Europe/Paris
    send(school_gateway, 7, [
        {"room": "cp-a", "kind": "evt", "at": nine, "body": {**started, "seq": 11, "boot": 3, "time": int(nine)}},
        {"room": "cp-a", "kind": "evt", "at": nine + 3600,
         "body": {**ended, "seq": 12, "boot": 3, "time": int(nine + 3600), "data": {"reason": "expired", "ran_s": 3600}}},
    ])
    wait_for(lambda: store.acked(SCHOOL) == 8, WAIT_S, "September's session stored")
    page.goto(city.url + "/usage?quarter=2026-Q3")
    expect(page.locator("#usage tbody tr").filter(has_text="cp-a")).to_contain_text("1.61")
    expect(page.locator("#standby-note")).to_contain_text("250 W allumé, 2 W en veille")
    expect(page.locator("#usage thead")).to_contain_text("kWh économisés par la veille automatique")
    check(page, "usage-standby")
    # the API's description, read by the shipped script behind the same log-in
    page.get_by_role("link", name="API").click()
    expect(page.locator("#api")).to_contain_text("GET /api/records")
    expect(page.locator("#api")).to_contain_text("cursor (query)")
    check(page, "docs")
    page.get_by_role("link", name="Utilisation").click()
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    check(page, "usage-en")


@browser_only
@pytest.mark.broker
def test_a_gateway_that_goes_offline_raises_an_alert_a_technician_acknowledges(city, school_gateway, page):
    expect.set_options(timeout=WAIT_MS)
    school_gateway.publish(f"preau/v1/city/{SCHOOL}/gateway",
                           {"v": 1, "online": False, "gateway": GATEWAY_ID}, retain=True)
    [alert] = wait_for(lambda: city.book.open_alerts(), WAIT_S, "the alert opened")
    assert alert["rule"] == "gateway_offline"
    page.goto(city.url + "/alerts")
    page.get_by_label("Identifiant").fill("tech-ville")
    page.get_by_label("Mot de passe").fill(PASSWORDS["tech-ville"])
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(city.url + "/alerts")
    line = page.locator(f"#alert-{alert['id']}")
    expect(line).to_contain_text("passerelle hors ligne")
    line.get_by_role("button", name="Acquitter").click()
    expect(line).to_contain_text("technicien")
    check(page, "alerts-technician")
    page.get_by_role("link", name="Écoles").click()
    expect(page.locator(f"#school-{SCHOOL}")).to_contain_text("hors ligne")
    page.get_by_label("Afficher").select_option("offline")
    page.get_by_role("button", name="Filtrer").click()
    expect(page.locator(f"#school-{SCHOOL}")).to_be_visible()
    check(page, "schools-offline")
