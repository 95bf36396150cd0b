"""The gateway's pages in a real browser (Debian's headless Chromium, driven
by Playwright's sync API), against a real gateway on the locked school
broker and the real firmware on a simulated board: log in, see a room turn
on in the live grid when the teacher presses its button, add an override
and see the next press denied, read the audit log, identify a board.

Every page is checked by axe-core (shipped in node_modules, injected by
the test: no serious or critical violation), any error in the browser's
console fails the test, and screenshots are kept in artifacts/pages/
(ignored by git). Every wait is on a condition, never a fixed sleep."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path

import pytest

from devkit.http import HttpThread
from devkit.sim.classroom import SimClassroom
from devkit.sim.i2c import SimI2C, SimKit
from devkit.sim.projector import EpsonSim
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.history import read_audit
from tests.helpers import await_for
from tests.test_gateway_auth import DIRECTOR_TOKEN, PASSWORDS, VIEWER_TOKEN, make_access, school_gateway

playwright_api = pytest.importorskip("playwright.sync_api")
from tests.browser import ARTIFACTS, AXE, CHROMIUM, WAIT_MS, check, launch, new_page  # noqa: E402

expect = playwright_api.expect

pytestmark = pytest.mark.broker

SHOTS = ARTIFACTS / "pages"
SITES: dict = {}  # url -> its app, for a test that reaches behind the pages
expect.set_options(timeout=WAIT_MS)  # every expect(...) waits on its condition this long at most (a busy 2-core machine)

if not os.path.exists(CHROMIUM) or not AXE.exists():
    pytest.skip("needs Debian's chromium and node_modules/axe-core", allow_module_level=True)


class BoardLoop:
    """The simulated boards' asyncio loop, in a thread of its own: Playwright's
    sync API must not run inside an event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="boards", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def chromium():
    yield from launch()


@pytest.fixture
def gateway(mosquitto, tmp_path):
    gw = school_gateway(mosquitto, tmp_path)
    yield gw
    gw.stop()


@pytest.fixture
def site(gateway, tmp_path):
    app = create_app(gateway, ApiSettings(token=DIRECTOR_TOKEN, viewer_token=VIEWER_TOKEN),
                     access=make_access(str(tmp_path / "accounts.json")))
    server = HttpThread(app, "127.0.0.1", 0, name="pages")
    SITES[server.url] = app
    yield server.url
    server.stop()
    SITES.pop(server.url, None)


@pytest.fixture
def boards():
    loop = BoardLoop()
    yield loop
    loop.close()


# Tests list the servers before `page`: the browser closes first (its live
# streams with it), then the servers stop.
@pytest.fixture
def page(chromium, request):
    yield from new_page(chromium, SHOTS / request.node.name)


def log_in(page, site: str, login: str = "direction") -> None:
    page.goto(site + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    check(page, "login")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(PASSWORDS[login])
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(site + "/")


def start_board(boards: BoardLoop, mosquitto, tmp_path) -> SimClassroom:
    async def start():
        sim = SimClassroom(mosquitto.board_config("cm2-b"), storage=str(tmp_path / "board"))
        sim.start()
        await await_for(lambda: sim.app.clock.time() is not None, timeout=30, what="the gateway's time")
        return sim

    return boards.run(start())


def test_a_room_turns_on_in_the_live_grid_when_the_teacher_presses(gateway, site, boards, page, mosquitto, tmp_path):
    log_in(page, site)
    card = page.locator("#room-cm2-b")
    expect(card).to_have_attribute("data-online", "never")
    expect(page.locator("#live-status")).to_have_text("En direct")
    check(page, "grid-empty")

    projector = EpsonSim(speed=100)
    bus = SimI2C()
    try:
        sim = boards.run(_board_with_projector(mosquitto, tmp_path, projector, bus))
        # the board's birth, pushed to the open page without a reload
        expect(card).to_have_attribute("data-online", "online")
        expect(card.locator(".board")).to_contain_text("Logiciel 0.1.0")
        expect(card).to_have_attribute("data-session", "idle")
        kit = bus.attach(SimKit("air-co2-01"))  # a travelling kit plugged into the board
        kit.scd4x.co2 = 1450
        expect(card.locator(".kit")).to_contain_text("air-co2-01")
        expect(card.locator(".kit")).to_contain_text("CO₂ 1450 ppm")  # its readings, from the telemetry
        expect(page.locator("#events")).to_contain_text("malle « air-co2-01 » branchée")
        boards.run(sim.press(0.2))  # the teacher's finger
        expect(card).to_have_attribute("data-session", "active")
        expect(card).to_have_attribute("data-ap", "on")
        expect(card.locator(".ap")).to_have_text("allumé")
        expect(card.locator(".left")).to_have_text(re.compile(r"reste (1 h 2\d|1 h 30) min"))  # 90 min granted
        expect(card).to_have_attribute("data-projector", re.compile("warming|on"))
        expect(page.locator("#events")).to_contain_text("séance démarrée par l'enseignant (90 min, Wi-Fi allumé)")
        check(page, "grid-session")

        page.get_by_role("link", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("#room-cm2-b .ap")).to_have_text("on")
        expect(page.locator("#events")).to_contain_text("session started by the teacher")
        check(page, "grid-english")
        page.get_by_role("link", name="Français").click()
        expect(page.locator("html")).to_have_attribute("lang", "fr")

        boards.run(sim.press(2.3))  # a long press ends the lesson
        expect(page.locator("#room-cm2-b")).to_have_attribute("data-session", "idle")
        expect(page.locator("#room-cm2-b")).to_have_attribute("data-ap", "off")
        expect(page.locator("#events")).to_contain_text("séance terminée par l'enseignant")
        boards.run(sim.stop())
        expect(page.locator("#room-cm2-b")).to_have_attribute("data-online", "offline")
    finally:
        projector.close()


async def _board_with_projector(mosquitto, tmp_path, projector, bus) -> SimClassroom:
    sim = SimClassroom(mosquitto.board_config("cm2-b") | {"projector": "epson-escvp21", "tele_s": 5},
                       storage=str(tmp_path / "board"), projector=projector, kit_bus=bus)
    sim.start()
    await await_for(lambda: sim.app.clock.time() is not None, timeout=30, what="the gateway's time")
    return sim


def test_an_override_added_in_the_page_denies_the_press(gateway, site, boards, page, mosquitto, tmp_path):
    log_in(page, site)
    page.get_by_role("link", name="Dérogations").click()
    expect(page.get_by_text("Aucune dérogation en cours.")).to_be_visible()
    form = page.locator("#override-form")
    form.get_by_label("Classe", exact=True).select_option("cm2-b")
    form.get_by_label("Fin (heure de l'école)").fill("2026-11-24T08:00")  # the school's clock says 09:00
    form.get_by_label("Motif").fill("Évaluation sur papier")
    form.get_by_role("button", name="Ajouter").click()
    # refused by the gateway's rules, the message at its field
    expect(page.locator("#o-expires-error")).to_have_text("Fin : la fin doit être dans le futur.")
    check(page, "override-refused")
    form = page.locator("#override-form")
    form.get_by_label("Fin (heure de l'école)").fill("2026-11-24T11:00")
    form.get_by_role("button", name="Ajouter").click()
    expect(page.locator(".notice")).to_have_text("Dérogation o-000001 ajoutée.")
    row = page.locator("#override-o-000001")
    expect(row).to_contain_text("24/11/2026 11:00")
    expect(row).to_contain_text("direction (u-0001, direction)")  # a role and an account, never a typed name
    check(page, "overrides")

    sim = start_board(boards, mosquitto, tmp_path)
    page.get_by_role("link", name="Classes").click()
    card = page.locator("#room-cm2-b")
    expect(card).to_have_attribute("data-online", "online")
    boards.run(sim.press(0.2))
    expect(page.locator("#events")).to_contain_text("séance refusée (override_deny)")
    expect(card).to_have_attribute("data-session", "idle")
    expect(card).to_have_attribute("data-ap", "off")
    assert not sim.relay
    check(page, "grid-denied")

    page.get_by_role("link", name="Journal").click()
    expect(page.locator("tbody tr").first).to_contain_text("dérogation ajoutée")
    expect(page.locator("tbody tr").first).to_contain_text("direction (u-0001, direction)")
    check(page, "audit")

    page.get_by_role("link", name="Cartes").click()
    expect(page.locator("#board-cm2-b")).to_contain_text("en service")
    page.get_by_role("button", name="Identifier (clignoter) — cm2-b").click()
    expect(page.locator(".notice")).to_contain_text("Commande « Identifier (clignoter) » envoyée à cm2-b")
    boards.run(await_for(lambda: sim.led_mode == "identify", timeout=30, what="the LED blinking"))
    check(page, "boards")
    page.once("dialog", lambda dialog: dialog.dismiss())  # "Vraiment ?" — no: nothing is sent
    page.get_by_role("button", name="Redémarrer — cm2-b").click()  # the dialog answered within the click
    expect(page.locator(".notice")).to_contain_text("Identifier")
    assert "board.reboot" not in [a["action"] for a in read_audit(gateway.config.db, 10)]

    page.get_by_role("link", name="La semaine").click()
    expect(page.locator(".plan")).to_contain_text("mardi 24 novembre 2026")
    expect(page.locator(".plan")).to_contain_text("séance + Wi-Fi")
    page.get_by_label("Semaine du").fill("2026-12-21")  # the Christmas holidays (zone C)
    page.get_by_role("button", name="Afficher").click()
    expect(page.locator(".plan")).to_contain_text("lundi 21 décembre 2026")
    check(page, "week")

    page.get_by_role("link", name="API").click()
    expect(page.locator("#api")).to_contain_text("POST /api/overrides")
    check(page, "api")

    page.get_by_role("link", name="Dérogations").click()
    page.get_by_role("button", name="Annuler o-000001").click()
    expect(page.locator(".notice")).to_have_text("Dérogation o-000001 annulée.")
    boards.run(sim.stop())


def test_an_open_grid_goes_to_log_in_when_its_session_ends(site, page, monkeypatch):
    from edge_gateway.web import pages

    monkeypatch.setattr(pages, "HEARTBEAT_S", 0.5)  # how often an idle stream looks at its session
    log_in(page, site, "tech")
    expect(page.locator("#live-status")).to_have_text("En direct")
    SITES[site].state.access.store.reset("tech", "un-nouveau-mot-de-passe")  # preau gateway account reset
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))


def test_a_viewer_sees_the_grid_but_no_forms_and_a_logged_out_page_goes_to_log_in(site, page):
    log_in(page, site, "lecture")
    expect(page.get_by_role("link", name="Journal")).to_have_count(0)
    page.get_by_role("link", name="Dérogations").click()
    expect(page.locator("#override-form")).to_have_count(0)
    page.get_by_role("link", name="Cartes").click()
    expect(page.get_by_role("button", name=re.compile("Identifier"))).to_have_count(0)
    check(page, "viewer-boards")
    page.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(site + "/audit")
    expect(page).to_have_url(re.compile(r"/login\?next=/audit$"))


@pytest.fixture
def filed_site(mosquitto, tmp_path):
    """A gateway started from a school.toml, as in production: its week can be edited."""
    from devkit.testing import school_clock
    from edge_gateway.config import Config
    from edge_gateway.gateway import Gateway
    from tests.test_gateway_policy import write_config

    path = write_config(tmp_path, mosquitto.port)
    gw = Gateway(Config.load(path), clock=school_clock("2026-11-24T09:00:00+01:00"), reconnect_max_s=1).start()
    gw.config_path = path
    app = create_app(gw, ApiSettings(token=DIRECTOR_TOKEN, config_path=path),
                     access=make_access(str(tmp_path / "accounts.json")))
    server = HttpThread(app, "127.0.0.1", 0, name="pages")
    yield server.url, gw, path
    server.stop()
    gw.stop()


def test_the_week_edited_in_the_page_is_checked_shown_then_applied(filed_site, page):
    site, gateway, path = filed_site
    log_in(page, site)
    page.get_by_role("link", name="La semaine").click()
    page.get_by_role("link", name="Modifier les créneaux de la semaine").click()
    tuesday = page.locator("#day-tuesday")
    # the built-in week: accueil, classe 08:30-11:45, déjeuner 11:45-13:30, ...
    expect(tuesday.get_by_label("Créneau 2 : fin")).to_have_value("11:45")
    tuesday.get_by_label("Créneau 2 : fin").fill("12:00")  # now overlaps lunch
    page.get_by_role("button", name="Vérifier et voir la semaine").click()
    error = page.locator("#tuesday-2-error")  # at the lunch row, in the checker's words
    expect(error).to_contain_text("week.tuesday.periods[2]: overlaps periods[1] (08:30-12:00)")
    check(page, "week-refused")
    tuesday = page.locator("#day-tuesday")
    tuesday.get_by_label("Créneau 3 : début").fill("12:00")
    page.get_by_role("button", name="Vérifier et voir la semaine").click()
    expect(page.locator(".notice")).to_contain_text("Configuration valable")
    expect(page.locator(".plan")).to_contain_text("08:30–12:00")  # the explain view, before anything is saved
    assert "[week.tuesday]" not in Path(path).read_text()
    check(page, "week-preview")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator(".notice")).to_have_text("Semaine enregistrée et appliquée.")
    assert "[week.tuesday]" in Path(path).read_text()
    assert str(gateway.config.policy.week["tuesday"][1].end) == "12:00:00"
    audit = read_audit(gateway.config.db, 5)
    assert audit[0]["action"] == "config.reload" and audit[0]["who"] == "director:u-0001"
    page.get_by_role("link", name="La semaine").click()
    expect(page.locator(".plan")).to_contain_text("08:30–12:00")
