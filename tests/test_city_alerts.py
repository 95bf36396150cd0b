"""The city's alerts (cloud_bridge/alerts.py): each rule over what the
store says, an alert opened once, acknowledged and closed by a person
(role and account id), kept in history, opened again only after its
condition cleared; the rules file checked at start; e-mail over SMTP to a
real local server (aiosmtpd), retried while the server is away. The reads
here are a stand-in with the CityStore's public reads (status,
latest_telemetry, telemetry); the alerts are kept in a real city
database, once on SQLite and once on PostgreSQL (`city_database`).
tests/test_city_pages.py runs them over the real store, fed through the
real ingest; tests/test_city_alerts_store.py, several workers on one
database and the previous release's file."""

from __future__ import annotations

import email
import email.policy
import io
import threading

import pytest
from aiosmtpd.controller import Controller

from cloud_bridge.alerts import AlertBook, Alerts, AlertsError, Rules, find
from cloud_bridge.store import CityStore
from devkit.brokers import free_port
from devkit.testing import wait_for

SCHOOL = "0341234a"


class Clock:
    def __init__(self, now: float = 1_795_000_000.0) -> None:  # a Wednesday, 12:06 in Paris
        self.now = now

    def __call__(self) -> float:
        return self.now


class Reads:
    """The store's public reads, from plain data a test changes."""

    def __init__(self) -> None:
        self.school = {"school": SCHOOL, "gateway": "gw-1", "online": True, "last_seen": 0.0, "acked": 0,
                       "epoch": "", "dropped": 0, "gaps": 0, "rooms": []}
        self.latest: list[dict] = []
        self.series: dict[tuple[str, str], list[dict]] = {}

    def room(self, room: str, **values) -> dict:
        row = {"room": room, "online": True, "boot": 1, "session": "idle", "ap": False, "last_seen": 0.0,
               "fw": "0.1.0", "board": "wt32-eth01"} | values
        self.school["rooms"] = [r for r in self.school["rooms"] if r["room"] != room] + [row]
        return row

    def status(self) -> dict:
        return {"schools": [self.school], "records": 0}

    def latest_telemetry(self, school=None) -> list[dict]:
        return self.latest

    def telemetry(self, school, room, since=None, until=None, limit=1000) -> list[dict]:
        return [r for r in self.series.get((school, room), [])
                if (since is None or r["at"] >= since) and (until is None or r["at"] < until)][-limit:]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def reads():
    return Reads()


@pytest.fixture
def book(city_database):
    """The alerts in a real city database, once per backend."""
    store = CityStore(**city_database)
    yield AlertBook(store)
    store.close()


def make(reads, clock, book, rules: dict | None = None, **extra) -> Alerts:
    r = Rules.from_dict({"every_s": 1, "rules": rules or {}} | extra, environ={})
    return Alerts(reads, book, r, now=clock)


def test_a_gateway_offline_long_enough_opens_one_alert_that_a_person_acknowledges_and_closes(reads, clock, book):
    alerts = make(reads, clock, book, {"gateway_offline": {"minutes": 30}})
    reads.school.update(online=False, last_seen=clock.now)
    assert alerts.evaluate() == []  # not yet 30 minutes
    clock.now += 29 * 60
    assert alerts.evaluate() == []
    clock.now += 61
    [opened] = alerts.evaluate()
    assert (opened["rule"], opened["school"], opened["room"]) == ("gateway_offline", SCHOOL, "")
    clock.now += 60
    assert alerts.evaluate() == []  # once
    book = alerts.book
    assert book.acknowledge(opened["id"], "technician:u-0002", clock.now)
    assert not book.acknowledge(opened["id"], "technician:u-0002", clock.now)  # already
    assert [a["id"] for a in book.open_alerts()] == [opened["id"]]
    assert book.close(opened["id"], "supervisor:u-0001", clock.now + 5)
    [closed] = book.history()
    assert (closed["acked_by"], closed["closed_by"]) == ("technician:u-0002", "supervisor:u-0001")
    assert [(x["action"], x["actor"]) for x in book.log(opened["id"])] == [
        ("open", "city"), ("ack", "technician:u-0002"), ("close", "supervisor:u-0001")]
    clock.now += 60
    assert alerts.evaluate() == []  # closed while the gateway is still offline: no new alert until it returns
    reads.school.update(online=True, last_seen=clock.now)
    alerts.evaluate()
    assert book.history()[0]["cleared_at"] == clock.now
    reads.school.update(online=False)
    clock.now += 31 * 60
    [again] = alerts.evaluate()
    assert again["id"] != opened["id"]


def test_school_hours_open_nothing_outside_them(reads, clock, book):
    alerts = make(reads, clock, book, {"gateway_offline": {"minutes": 0, "school_hours": "08:00-09:00"}})
    reads.school.update(online=False, last_seen=clock.now)
    assert alerts.evaluate() == []  # 12:06
    clock.now += 20 * 3600  # Thursday 08:06
    assert len(alerts.evaluate()) == 1


def test_rooms_projectors_co2_and_dropped_records(reads, clock, book):
    alerts = make(reads, clock, book, {"board_offline": {"minutes": 10}, "ap_outside_session": {"minutes": 5},
                                           "lamp_hours": {"hours": 3000}, "co2": {"ppm": 1500, "minutes": 20}})
    reads.room("cm2-b", online=False, last_seen=clock.now - 11 * 60)
    reads.room("cp-a", ap=True, session="idle")
    reads.room("ce1", ap=True, session="active")
    t0 = clock.now
    reads.latest = [
        {"school": SCHOOL, "room": "cp-a", "at": t0, "interval_s": 300, "readings": {"projector": "error", "lamp_h": 3100}},
        {"school": SCHOOL, "room": "ce1", "at": t0, "interval_s": 300,
         "readings": {"co2": {"min": 1400, "mean": 1600, "max": 1900}}},
    ]
    reads.series[(SCHOOL, "ce1")] = [
        {"at": t0 - 300 * i, "interval_s": 300, "readings": {"co2": {"min": 1, "mean": 1550, "max": 2}}}
        for i in range(3, 0, -1)] + [reads.latest[1]]
    opened = {(a["rule"], a["room"]) for a in alerts.evaluate()}
    # the access point's 5 minutes start when the city first sees it on outside a session
    assert opened == {("board_offline", "cm2-b"), ("projector_error", "cp-a"), ("lamp_hours", "cp-a"),
                      ("co2", "ce1")}
    clock.now += 5 * 60
    assert {(a["rule"], a["room"]) for a in alerts.evaluate()} == {("ap_outside_session", "cp-a")}
    # dropped records: an event, an alert each time the count grows past the last alert's
    reads.school["dropped"] = 4
    [dropped] = alerts.evaluate()
    assert (dropped["rule"], dropped["detail"]) == ("records_dropped", {"dropped": 4})
    assert alerts.evaluate() == []
    reads.school["dropped"] = 9
    assert alerts.evaluate() == []  # still open: its count follows
    assert alerts.book.get(dropped["id"])["detail"] == {"dropped": 9}
    alerts.book.close(dropped["id"], "supervisor:u-0001", clock.now)
    assert alerts.evaluate() == []
    reads.school["dropped"] = 10
    assert [a["detail"] for a in alerts.evaluate()] == [{"dropped": 10}]


def test_co2_must_have_lasted(reads, clock, book):
    rules = Rules.from_dict({"rules": {"co2": {"ppm": 1500, "minutes": 30}}}, environ={})
    reads.latest = [{"school": SCHOOL, "room": "ce1", "at": clock.now, "interval_s": 300,
                     "readings": {"co2": {"mean": 1600}}}]
    reads.series[(SCHOOL, "ce1")] = [{"at": clock.now - 300, "interval_s": 300, "readings": {"co2": {"mean": 900}}},
                                     reads.latest[0]]
    [finding] = find(reads, rules, clock.now)
    assert finding.since == clock.now - 300  # only the last interval was high
    alerts = Alerts(reads, book, rules, now=clock)
    assert alerts.evaluate() == []


@pytest.mark.parametrize("data, message", [
    ({"rules": {"gateway_ofline": {}}}, "unknown rule"),
    ({"rules": {"co2": {"ppm": "high"}}}, "rules.co2.ppm"),
    ({"rules": {"co2": {"level": 3}}}, "unknown key"),
    ({"rules": {"gateway_offline": {"school_hours": "18:00-08:00"}}}, "school_hours"),
    ({"every_s": 0}, "every_s"),
    ({"smtp": {"host": "smtp.example", "from": "a@b", "to": ["c@d"], "password": "x"}}, "PREAU_CITY_SMTP_PASSWORD"),
    ({"smtp": {"host": "smtp.example", "from": "a@b", "to": ["c@d"], "username": "u"}}, "PREAU_CITY_SMTP_PASSWORD"),
    ({"smtp": {"host": "smtp.example", "from": "a@b", "to": "nobody"}}, "smtp.to"),
])
def test_the_rules_file_is_checked(data, message):
    with pytest.raises(AlertsError, match=message):
        Rules.from_dict(data, environ={})


def test_rules_load_from_toml_and_disable(tmp_path):
    path = tmp_path / "city-alerts.toml"
    path.write_text('every_s = 30\n[rules.co2]\nppm = 1200\n[rules.lamp_hours]\nenabled = false\n'
                    '[smtp]\nhost = "smtp.ville.example"\nport = 587\nfrom = "preau@ville.example"\n'
                    'to = "supervision@ville.example"\nstarttls = true\nusername = "preau"\n')
    rules = Rules.load(str(path), {"PREAU_CITY_SMTP_PASSWORD": "secret-from-env"})
    assert rules.every_s == 30 and rules.rules["co2"] == {"ppm": 1200, "minutes": 30}
    assert "lamp_hours" not in rules.rules and "gateway_offline" in rules.rules
    assert rules.smtp is not None and rules.smtp.password == "secret-from-env" and "secret" not in repr(rules.smtp)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


class Logins:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        ok = auth_data.login == b"preau" and auth_data.password == b"from-the-environment"
        self.seen.append(auth_data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    logins = Logins()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=logins,
                            auth_require_tls=False)
    controller.start()
    controller.inbox = inbox
    controller.logins = logins
    yield controller
    controller.stop()


def smtp_rules(port: int, **extra) -> dict:
    return {"smtp": {"host": "127.0.0.1", "port": port, "from": "preau@ville.example",
                     "to": ["supervision@ville.example", "astreinte@ville.example"]} | extra}


def test_an_opened_alert_is_mailed_once_through_a_real_smtp_server(reads, clock, book, smtp_server):
    alerts = make(reads, clock, book, {"projector_error": {}}, **smtp_rules(smtp_server.port))
    reads.latest = [{"school": SCHOOL, "room": "cm2-b", "at": clock.now, "interval_s": 300,
                     "readings": {"projector": "error"}}]
    [opened] = alerts.evaluate()
    wait_for(lambda: smtp_server.inbox.messages, 15, "the e-mail")
    sender, to, content = smtp_server.inbox.messages[0]
    assert sender == "preau@ville.example" and to == ["supervision@ville.example", "astreinte@ville.example"]
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert message["Subject"] == f"[Préau] alerte {opened['id']} : vidéoprojecteur en erreur — {SCHOOL}, classe cm2-b"
    assert "Classe : cm2-b" in message.get_body().get_content()
    assert alerts.book.get(opened["id"])["mailed_at"] == clock.now
    alerts.evaluate()
    assert len(smtp_server.inbox.messages) == 1  # once


def test_a_login_is_sent_and_a_server_away_is_tried_again(reads, clock, book, smtp_server):
    environ = {"PREAU_CITY_SMTP_PASSWORD": "from-the-environment"}
    port = free_port()  # nobody listens here yet
    rules = Rules.from_dict({"rules": {"gateway_offline": {"minutes": 0}}} | smtp_rules(port, username="preau"),
                            environ=environ)
    alerts = Alerts(reads, book, rules, now=clock)
    reads.school.update(online=False, last_seen=clock.now)
    [opened] = alerts.evaluate()
    row = alerts.book.get(opened["id"])
    assert row["mailed_at"] is None and row["mail_tries"] == 1 and row["mail_error"]
    # the server is back (here: the test's, with its login)
    good = Rules.from_dict({"rules": {"gateway_offline": {"minutes": 0}}}
                           | smtp_rules(smtp_server.port, username="preau"), environ=environ)
    alerts.rules = good
    alerts.evaluate()
    wait_for(lambda: smtp_server.inbox.messages, 15, "the e-mail")
    assert smtp_server.logins.seen == ["preau"]
    assert alerts.book.get(opened["id"])["mailed_at"] is not None


def test_the_periodic_task_runs_on_the_loop(reads, book):
    import asyncio

    alerts = make(reads, Clock(), book, {"gateway_offline": {"minutes": 0}})
    alerts.rules = Rules.from_dict({"every_s": 0.05, "rules": {"gateway_offline": {"minutes": 0}}}, environ={})
    reads.school.update(online=False, last_seen=1.0)

    async def scenario():
        alerts.start()
        try:
            while not alerts.book.open_alerts():
                await asyncio.sleep(0.02)
        finally:
            await alerts.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert alerts.rounds >= 1


def test_the_mail_never_holds_the_password(reads, clock, tmp_path):
    rules = Rules.from_dict(smtp_rules(25, username="preau"), environ={"PREAU_CITY_SMTP_PASSWORD": "pw-123456"})
    out = io.StringIO()
    print(rules, file=out)
    assert "pw-123456" not in out.getvalue()
