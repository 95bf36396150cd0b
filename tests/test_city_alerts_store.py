"""The city's alerts in the city's database (cloud_bridge/alerts.py,
migration r0005), once on SQLite and once on PostgreSQL: several workers
(each its own CityStore, its own connections, as separate processes have)
open one alert per condition, send each e-mail once, and see each other's
acknowledgements; the database itself refuses a second open alert for a
condition. The previous release's own file (`city-alerts.db`) is imported
once beside a SQLite database, then renamed."""

from __future__ import annotations

import io
import logging
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from cloud_bridge.alerts import MAIL_CLAIM_S, AlertBook, Finding, Rules
from cloud_bridge.store import CityStore, StoreWriteError

SCHOOL = "0341234a"
NOW = 1_795_000_000.0
RULES = Rules.from_dict({"rules": {"projector_error": {}, "gateway_offline": {"minutes": 0}}}, environ={})
WORKERS = 4


@pytest.fixture
def workers(city_database):
    """Several workers of one city on one database."""
    stores = [CityStore(**city_database) for _ in range(WORKERS)]
    yield [AlertBook(store) for store in stores]
    for store in stores:
        store.close()


def findings(rooms: int, first: int = 0) -> list[Finding]:
    return [Finding("projector_error", SCHOOL, f"room-{n}", {"at": NOW}) for n in range(first, first + rooms)]


def race(target, books: list[AlertBook]) -> list:
    """`target(book)` in one thread per worker, all let go at once; what each returned."""
    start = threading.Barrier(len(books))
    results: list = [None] * len(books)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(10)
            results[i] = target(books[i])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(books))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_workers_applying_the_same_findings_open_each_alert_once(workers):
    for round_ in range(20):
        # new conditions at each round: the workers race to open them
        found = findings(40, first=20 * round_)
        opened = race(lambda book, found=found, now=NOW + round_: book.apply(found, RULES, now, {}), workers)
        ids = [a["id"] for batch in opened for a in batch]
        assert len(ids) == len(set(ids)) == (20 if round_ else 40)  # each reported opened by one worker only
    alerts = workers[0].open_alerts()
    assert sorted(a["room"] for a in alerts) == sorted(f"room-{n}" for n in range(20 * 19 + 40))
    for alert in alerts:
        assert [e["action"] for e in workers[1].log(alert["id"])] == ["open"]


def test_the_database_refuses_a_second_open_alert_for_a_condition(workers, city_database):
    [alert] = workers[0].apply(findings(1), RULES, NOW, {})
    store = workers[0].store
    insert = ("INSERT INTO alerts (key, rule, school, room, opened_at) "
              "VALUES (:key, 'projector_error', :school, 'room-0', :now)")
    with pytest.raises(StoreWriteError), store.connect(write=True) as conn:
        conn.execute(sa.text(insert), {"key": alert["key"], "school": SCHOOL, "now": NOW + 1})
    # Once it is closed, the next one may open.
    assert workers[1].close(alert["id"], "supervisor:u-0001", NOW + 2)
    with store.connect(write=True) as conn:
        conn.execute(sa.text(insert), {"key": alert["key"], "school": SCHOOL, "now": NOW + 3})


def test_each_mail_is_claimed_by_one_worker(workers):
    workers[0].apply(findings(20), RULES, NOW, {})

    def claim_all(book: AlertBook) -> list[int]:
        return [a["id"] for a in book.unmailed(NOW) if book.claim_mail(a, NOW)]

    claimed = race(claim_all, workers)
    ids = [i for mine in claimed for i in mine]
    assert sorted(ids) == sorted(a["id"] for a in workers[0].open_alerts())  # every mail once, none twice
    # Claimed, being sent: no other worker takes it, until its sender is
    # presumed dead; then one more try, by one worker only.
    assert all(book.unmailed(NOW + 1) == [] for book in workers)
    later = NOW + MAIL_CLAIM_S + 1
    retaken = race(lambda book: [a["id"] for a in book.unmailed(later) if book.claim_mail(a, later)], workers)
    assert sorted(i for mine in retaken for i in mine) == sorted(ids)
    alert = workers[2].get(ids[0])
    assert alert is not None and alert["mail_tries"] == 2
    workers[3].mailed(ids[0], later + 1, None)
    assert ids[0] not in [a["id"] for a in workers[1].unmailed(later + 2 * MAIL_CLAIM_S)]


def test_a_failed_mail_is_free_again_at_once(workers):
    [alert] = workers[0].apply(findings(1), RULES, NOW, {})
    assert workers[0].claim_mail(alert, NOW)
    workers[0].mailed(alert["id"], NOW + 1, "SMTPServerDisconnected: gone")
    [again] = workers[1].unmailed(NOW + 2)
    assert (again["mail_tries"], again["mail_error"]) == (1, "SMTPServerDisconnected: gone")
    assert workers[1].claim_mail(again, NOW + 2)


def test_an_acknowledgement_on_one_worker_is_seen_by_the_others(workers):
    [alert] = workers[0].apply(findings(1), RULES, NOW, {})
    done = race(lambda book: book.acknowledge(alert["id"], f"technician:u-000{workers.index(book) + 1}", NOW + 5),
                workers)
    assert done.count(True) == 1
    who = f"technician:u-000{done.index(True) + 1}"
    for book in workers:
        [seen] = book.open_alerts(SCHOOL)
        assert (seen["acked_at"], seen["acked_by"]) == (NOW + 5, who)
    assert race(lambda book: book.close(alert["id"], "supervisor:u-0001", NOW + 9), workers).count(True) == 1
    for book in workers:
        assert book.open_alerts() == []
        [closed] = book.history(SCHOOL)
        assert (closed["closed_by"], closed["acked_by"]) == ("supervisor:u-0001", who)
        assert [(e["action"], e["actor"]) for e in book.log(alert["id"])] == [
            ("open", "city"), ("ack", who), ("close", "supervisor:u-0001")]


# the previous release's own file --------------------------------------------------------------------------

# As cloud_bridge/alerts.py before r0005 created it (git show c2cee42:cloud_bridge/alerts.py),
# copied so this test stays true after the code changes.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL, rule TEXT NOT NULL, school TEXT NOT NULL, room TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}',
    opened_at REAL NOT NULL, cleared_at REAL,
    acked_at REAL, acked_by TEXT, closed_at REAL, closed_by TEXT,
    mailed_at REAL, mail_error TEXT, mail_tries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_key ON alerts (key, id);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (closed_at);
CREATE TABLE IF NOT EXISTS alert_log (
    id INTEGER PRIMARY KEY, alert INTEGER NOT NULL, at REAL NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL
);
"""
GATEWAY_KEY = f"gateway_offline:{SCHOOL}:"
PROJECTOR_KEY = f"projector_error:{SCHOOL}:cm2-b"


def write_old_file(path: str) -> None:
    """An open alert (acknowledged, mailed) and a closed one, as the previous release wrote them."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO alerts (id, key, rule, school, room, detail, opened_at, cleared_at, acked_at, acked_by, "
               "closed_at, closed_by, mailed_at, mail_error, mail_tries) VALUES (3, ?, 'projector_error', ?, "
               "'cm2-b', '{\"at\": 1.0}', 100.0, 150.0, 120.0, 'technician:u-0002', 160.0, 'supervisor:u-0001', "
               "101.0, NULL, 1)", (PROJECTOR_KEY, SCHOOL))
    db.execute("INSERT INTO alerts (id, key, rule, school, room, detail, opened_at, acked_at, acked_by, mailed_at, "
               "mail_tries) VALUES (7, ?, 'gateway_offline', ?, '', '{\"last_seen\": 50.0}', 200.0, 210.0, "
               "'technician:u-0002', 201.0, 1)", (GATEWAY_KEY, SCHOOL))
    db.executemany("INSERT INTO alert_log (alert, at, action, actor) VALUES (?, ?, ?, ?)", [
        (3, 100.0, "open", "city"), (3, 120.0, "ack", "technician:u-0002"), (3, 160.0, "close", "supervisor:u-0001"),
        (7, 200.0, "open", "city"), (7, 210.0, "ack", "technician:u-0002")])
    db.close()


def test_the_previous_releases_file_is_imported_once(tmp_path, caplog):
    old = str(tmp_path / "city-alerts.db")
    write_old_file(old)
    store = CityStore(str(tmp_path / "city.db"))
    try:
        with caplog.at_level(logging.WARNING, logger="cloud_bridge.alerts"):
            book = AlertBook(store, legacy=old)
        assert "imported 1 open and 1 closed alerts (5 log entries; 0 already here)" in caplog.text
        [opened] = book.open_alerts()
        assert (opened["id"], opened["key"], opened["detail"], opened["acked_by"], opened["mailed_at"]) == (
            7, GATEWAY_KEY, {"last_seen": 50.0}, "technician:u-0002", 201.0)
        [closed] = book.history()
        assert (closed["id"], closed["cleared_at"], closed["closed_by"]) == (3, 150.0, "supervisor:u-0001")
        assert [(e["at"], e["action"]) for e in book.log(3)] == [(100.0, "open"), (120.0, "ack"), (160.0, "close")]
        assert book.unmailed(NOW) == []  # mailed by the previous release: not again
        assert not (tmp_path / "city-alerts.db").exists() and (tmp_path / "city-alerts.db.imported").exists()

        # The next start: nothing to import, nothing twice.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cloud_bridge.alerts"):
            again = AlertBook(store, legacy=old)
        assert "imported" not in caplog.text
        assert [a["id"] for a in again.open_alerts()] == [7] and [a["id"] for a in again.history()] == [3]

        # A start cut short between the import and the renaming: the file
        # is read again, and every alert in it is found here already.
        (tmp_path / "city-alerts.db.imported").rename(old)
        assert AlertBook(store).import_file(old) == {"open": 0, "closed": 0, "log": 0, "skipped": 2}
        assert (tmp_path / "city-alerts.db.imported").exists()
        assert [a["id"] for a in book.open_alerts()] == [7] and len(book.history()) == 1 and len(book.log(7)) == 2

        # The imported open alert is the condition's: the rules open no second one.
        gone = Finding("gateway_offline", SCHOOL, detail={"last_seen": 50.0}, since=50.0)
        assert book.apply([gone], RULES, NOW, {}) == []
        assert book.close(7, "supervisor:u-0001", NOW)
        # New alerts come after the imported ones.
        [new] = book.apply([Finding("projector_error", SCHOOL, "ce1")], RULES, NOW, {})
        assert new["id"] > 7
    finally:
        store.close()


def test_the_import_counts_alerts_already_here(tmp_path, caplog):
    old = str(tmp_path / "city-alerts.db")
    write_old_file(old)
    store = CityStore(str(tmp_path / "city.db"))
    try:
        book = AlertBook(store)
        # Opened by this release before the import (the file restored later).
        [mine] = book.apply([Finding("gateway_offline", SCHOOL, since=0.0)], RULES, NOW, {})
        with caplog.at_level(logging.WARNING, logger="cloud_bridge.alerts"):
            counts = book.import_file(old)
        assert counts == {"open": 0, "closed": 1, "log": 3, "skipped": 1}
        assert [a["id"] for a in book.open_alerts()] == [mine["id"]]  # still one open alert for the gateway
        [closed] = book.history()
        assert closed["id"] != 3 and closed["key"] == PROJECTOR_KEY  # a new id: 3 could be taken
        assert [e["action"] for e in book.log(closed["id"])] == ["open", "ack", "close"]
    finally:
        store.close()


def test_no_file_nothing_imported(tmp_path, caplog):
    store = CityStore(str(tmp_path / "city.db"))
    try:
        with caplog.at_level(logging.INFO, logger="cloud_bridge.alerts"):
            book = AlertBook(store, legacy=str(tmp_path / "city-alerts.db"))
        assert caplog.text == "" and book.open_alerts() == [] and book.history() == []
        assert not (tmp_path / "city-alerts.db").exists() and not (tmp_path / "city-alerts.db.imported").exists()
    finally:
        store.close()


def test_a_file_that_is_not_the_old_alerts_is_left_as_it_is(tmp_path, caplog):
    old = tmp_path / "city-alerts.db"
    old.write_bytes(b"not a database at all" * 100)
    store = CityStore(str(tmp_path / "city.db"))
    try:
        with caplog.at_level(logging.WARNING, logger="cloud_bridge.alerts"):
            AlertBook(store, legacy=str(old))
        assert "cannot be read" in caplog.text and old.exists()
    finally:
        store.close()


def test_a_file_the_database_refuses_is_left_for_the_next_start(tmp_path, caplog):
    old = str(tmp_path / "city-alerts.db")
    db = sqlite3.connect(old, isolation_level=None)
    db.executescript(OLD_SCHEMA.replace("opened_at REAL NOT NULL", "opened_at REAL"))  # by hand, not by Préau
    db.execute("INSERT INTO alerts (key, rule, school) VALUES ('co2:x:y', 'co2', 'x')")
    db.close()
    store = CityStore(str(tmp_path / "city.db"))
    try:
        with caplog.at_level(logging.WARNING, logger="cloud_bridge.alerts"):
            book = AlertBook(store, legacy=old)
        assert "not imported" in caplog.text and (tmp_path / "city-alerts.db").exists()
        assert book.open_alerts() == []  # nothing of it: one transaction
    finally:
        store.close()


def test_with_postgresql_the_old_file_is_left_and_said(postgres, tmp_path, caplog):
    old = str(tmp_path / "city-alerts.db")
    write_old_file(old)
    store = CityStore(url=postgres.new_database())
    try:
        with caplog.at_level(logging.WARNING, logger="cloud_bridge.alerts"):
            book = AlertBook(store, legacy=old)
        assert "not imported with PostgreSQL" in caplog.text
        assert book.open_alerts() == [] and (tmp_path / "city-alerts.db").exists()
    finally:
        store.close()


def test_the_city_installs_its_pages_over_the_alerts_in_its_database(tmp_path):
    """The wiring (cloud_bridge.web.install): the book is the store's, and
    the previous release's file beside the database is imported."""
    from argon2 import PasswordHasher

    from cloud_bridge.api import create_app
    from cloud_bridge.settings import CitySettings
    from cloud_bridge.web import install

    write_old_file(str(tmp_path / "city-alerts.db"))
    store = CityStore(str(tmp_path / "city.db"))
    try:
        settings = CitySettings(token="city-operator-token-0123456789", db_path=str(tmp_path / "city.db"))
        app = create_app(store, settings)
        install(app, store, settings, environ={"PREAU_CITY_ADMIN_PASSWORD": "le-mot-de-passe-du-maire"},
                hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1), out=io.StringIO())
        book = app.state.supervision.book
        assert book.store is store and [a["id"] for a in book.open_alerts()] == [7]
        assert (tmp_path / "city-alerts.db.imported").exists()
    finally:
        store.close()
