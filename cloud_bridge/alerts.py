"""The city's alerts: rules the city sets, evaluated every few seconds over
what the store knows; an alert is opened once, acknowledged and closed by
a person (their role and account id recorded, never a name), kept in
history, and sent by e-mail.

Rules (a TOML file, `PREAU_CITY_ALERTS` or `city-alerts.toml` beside the
database; each rule on with its defaults when the file does not name it,
`enabled = false` to turn one off):

    every_s = 60
    [rules.gateway_offline]      # a school's gateway offline this long
    minutes = 30
    school_hours = "08:00-18:00" # optional: opened only then, Monday to Friday
    [rules.board_offline]        # a classroom board offline this long (its gateway online)
    minutes = 60
    [rules.projector_error]      # a projector that says "error"
    [rules.lamp_hours]           # a lamp past its hours
    hours = 3000
    [rules.ap_outside_session]   # a classroom access point on without a session, this long
    minutes = 5
    [rules.co2]                  # CO2 above ppm (the interval's mean) for this long
    ppm = 1500
    minutes = 30
    [rules.records_dropped]      # a gateway said it dropped records it will never send
    [smtp]
    host = "smtp.ville.example"
    port = 587
    from = "preau@ville.example"
    to = ["supervision@ville.example"]
    starttls = true
    username = "preau"           # its password from PREAU_CITY_SMTP_PASSWORD, never the file

The alerts live in the city's own database, SQLite or PostgreSQL alike
(tables `alerts` and `alert_log`, migration r0005), on connections of
their own (CityStore.connect), never the ingest's writer. Every worker of
a city shares them: an alert is opened once (one open alert per
rule:school:room, a unique partial index), mailed once (a worker claims
the e-mail in one UPDATE), and a person's acknowledgement on one worker's
page is every worker's. The previous release kept them in a SQLite file
of each worker's own (`city-alerts.db` beside the database): beside a
SQLite database, it is imported once at start, then renamed
`city-alerts.db.imported`. The schools' data is read only through the
store's public reads (status, latest_telemetry, telemetry)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import smtplib
import sqlite3
import ssl
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .store import CityStore, StoreWriteError

log = logging.getLogger(__name__)

RULES_ENV = "PREAU_CITY_ALERTS"
SMTP_PASSWORD_ENV = "PREAU_CITY_SMTP_PASSWORD"
RULES_FILE = "city-alerts.toml"
ALERTS_FILE = "city-alerts.db"  # the previous release's own file: imported once
MAIL_TRIES = 5

# rule -> its parameters and their defaults
DEFAULTS: dict[str, dict[str, Any]] = {
    "gateway_offline": {"minutes": 30, "school_hours": None},
    "board_offline": {"minutes": 60},
    "projector_error": {},
    "lamp_hours": {"hours": 3000},
    "ap_outside_session": {"minutes": 5},
    "co2": {"ppm": 1500, "minutes": 30},
    "records_dropped": {},
}


class AlertsError(ValueError):
    """The rules file or the SMTP settings are wrong: said at start."""


class CityReads(Protocol):
    """The store's public reads the rules use (cloud_bridge/store.py)."""

    def status(self) -> dict: ...

    def latest_telemetry(self, school: str | None = None) -> list[dict]: ...

    def telemetry(self, school: str, room: str, since: float | None = None, until: float | None = None,
                  limit: int = 1000) -> list[dict]: ...


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 25
    sender: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 15.0
    ca_file: str | None = None  # STARTTLS: the server's CA (default: the system's)

    def __repr__(self) -> str:  # never the password in a log line
        return f"Smtp({self.host}:{self.port}, from={self.sender}, to={list(self.to)}, starttls={self.starttls})"


@dataclass(frozen=True)
class Rules:
    rules: dict[str, dict[str, Any]]  # the enabled rules, with their parameters
    every_s: float = 60.0
    smtp: Smtp | None = None

    @classmethod
    def default(cls) -> Rules:
        return cls({name: dict(params) for name, params in DEFAULTS.items()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                  source: str = "alerts") -> Rules:
        environ = os.environ if environ is None else environ
        unknown = set(data) - {"every_s", "rules", "smtp"}
        if unknown:
            raise AlertsError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        every = data.get("every_s", 60)
        if not isinstance(every, (int, float)) or isinstance(every, bool) or not 0 < every <= 3600:
            raise AlertsError(f"{source}: every_s: more than 0, at most 3600 seconds")
        given = data.get("rules", {})
        if not isinstance(given, dict):
            raise AlertsError(f"{source}: rules: a table")
        rules: dict[str, dict[str, Any]] = {}
        for name in given:
            if name not in DEFAULTS:
                raise AlertsError(f"{source}: rules.{name}: unknown rule (known: {', '.join(DEFAULTS)})")
        for name, defaults in DEFAULTS.items():
            table = given.get(name, {})
            if not isinstance(table, dict):
                raise AlertsError(f"{source}: rules.{name}: a table")
            extra = set(table) - set(defaults) - {"enabled"}
            if extra:
                raise AlertsError(f"{source}: rules.{name}: unknown key(s) {', '.join(sorted(extra))}")
            if table.get("enabled", True) is False:
                continue
            params = dict(defaults)
            for key, value in table.items():
                if key == "enabled":
                    if not isinstance(value, bool):
                        raise AlertsError(f"{source}: rules.{name}.enabled: true or false")
                    continue
                if key == "school_hours":
                    params[key] = _hours(value, f"{source}: rules.{name}.school_hours")
                    continue
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise AlertsError(f"{source}: rules.{name}.{key}: a number, 0 or more")
                params[key] = value
            rules[name] = params
        smtp = None
        if "smtp" in data:
            smtp = _smtp(data["smtp"], environ, f"{source}: smtp")
        return cls(rules, float(every), smtp)

    @classmethod
    def load(cls, path: str, environ: Mapping[str, str] | None = None) -> Rules:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise AlertsError(f"{path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise AlertsError(f"{path}: not TOML: {e}") from None
        return cls.from_dict(data, environ, path)


def _hours(value: object, where: str) -> tuple[int, int]:
    """"08:00-18:00" -> (480, 1080), minutes of the day."""
    try:
        assert isinstance(value, str)
        start, end = value.split("-")
        sh, sm = (int(x) for x in start.strip().split(":"))
        eh, em = (int(x) for x in end.strip().split(":"))
        first, last = sh * 60 + sm, eh * 60 + em
        assert 0 <= first < last <= 24 * 60
        return first, last
    except (AssertionError, ValueError):
        raise AlertsError(f"{where}: \"HH:MM-HH:MM\", the start before the end") from None


def _smtp(table: object, environ: Mapping[str, str], where: str) -> Smtp:
    if not isinstance(table, dict):
        raise AlertsError(f"{where}: a table")
    known = {"host", "port", "from", "to", "starttls", "username", "timeout_s", "ca_file"}
    extra = set(table) - known
    if extra:
        hint = " (the password comes from " + SMTP_PASSWORD_ENV + ")" if "password" in extra else ""
        raise AlertsError(f"{where}: unknown key(s) {', '.join(sorted(extra))}{hint}")
    host = table.get("host")
    if not isinstance(host, str) or not host:
        raise AlertsError(f"{where}.host: the SMTP server's name")
    port = table.get("port", 25)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise AlertsError(f"{where}.port: a TCP port")
    sender = table.get("from")
    if not isinstance(sender, str) or "@" not in sender:
        raise AlertsError(f"{where}.from: an address")
    to = table.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise AlertsError(f"{where}.to: one address or a list of them")
    username = table.get("username")
    password = environ.get(SMTP_PASSWORD_ENV) or None
    if username is not None and not isinstance(username, str):
        raise AlertsError(f"{where}.username: text")
    if username and not password:
        raise AlertsError(f"{where}.username is set: give its password in {SMTP_PASSWORD_ENV}")
    starttls = table.get("starttls", False)
    if not isinstance(starttls, bool):
        raise AlertsError(f"{where}.starttls: true or false")
    if username and not starttls and host not in ("localhost", "127.0.0.1", "::1"):
        raise AlertsError(f"{where}: a login needs starttls = true (the password would cross the network in clear)")
    timeout = table.get("timeout_s", 15.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 300:
        raise AlertsError(f"{where}.timeout_s: more than 0, at most 300 seconds")
    ca_file = table.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise AlertsError(f"{where}.ca_file: a path")
    return Smtp(host, port, sender, tuple(to), starttls, username or None, password, float(timeout), ca_file)


# what the rules find ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A rule's condition holding now, for one school (and room)."""

    rule: str
    school: str
    room: str = ""
    detail: dict = field(default_factory=dict)
    since: float | None = None  # when it started, when the store says (a gateway's last sight)
    quiet: bool = False  # holds, but opens nothing now (outside school hours)

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.school}:{self.room}"


def _in_hours(now: float, hours: tuple[int, int] | None, timezone: str) -> bool:
    if hours is None:
        return True
    moment = dt.datetime.fromtimestamp(now, ZoneInfo(timezone))
    minute = moment.hour * 60 + moment.minute
    return moment.weekday() < 5 and hours[0] <= minute < hours[1]


def find(store: CityReads, rules: Rules, now: float, timezone: str = "Europe/Paris") -> list[Finding]:
    """Every condition of the enabled rules that holds now. Blocking (the
    store's reads): call it off the event loop."""
    r = rules.rules
    found: list[Finding] = []
    status = store.status()
    for school in status["schools"]:
        code = school["school"]
        gateway_up = school["online"] is not False
        if "gateway_offline" in r and school["online"] is False:
            quiet = not _in_hours(now, r["gateway_offline"].get("school_hours"), timezone)
            found.append(Finding("gateway_offline", code, detail={"last_seen": school["last_seen"]},
                                 since=school["last_seen"], quiet=quiet))
        if "records_dropped" in r and school.get("dropped"):
            found.append(Finding("records_dropped", code, detail={"dropped": int(school["dropped"])}))
        for room in school["rooms"]:
            if "board_offline" in r and gateway_up and room["online"] is False:
                found.append(Finding("board_offline", code, room["room"], {"last_seen": room["last_seen"]},
                                     since=room["last_seen"]))
            if ("ap_outside_session" in r and room["online"] and room["ap"]
                    and room["session"] != "active"):
                found.append(Finding("ap_outside_session", code, room["room"], {"session": room["session"]}))
    wants_readings = {"projector_error", "lamp_hours", "co2"} & set(r)
    if wants_readings:
        for reading in store.latest_telemetry():
            values = reading.get("readings") or {}
            code, room = reading["school"], reading["room"]
            if "projector_error" in r and values.get("projector") == "error":
                found.append(Finding("projector_error", code, room, {"at": reading["at"]}))
            lamp = values.get("lamp_h")
            if ("lamp_hours" in r and isinstance(lamp, (int, float)) and not isinstance(lamp, bool)
                    and lamp >= r["lamp_hours"]["hours"]):
                found.append(Finding("lamp_hours", code, room, {"lamp_h": lamp, "hours": r["lamp_hours"]["hours"]}))
            co2 = _mean(values.get("co2"))
            if "co2" in r and co2 is not None and co2 >= r["co2"]["ppm"]:
                since = _co2_since(store, code, room, r["co2"]["ppm"], reading["at"])
                found.append(Finding("co2", code, room, {"ppm": co2, "limit": r["co2"]["ppm"]}, since=since))
    return found


def _mean(value: object) -> float | None:
    if isinstance(value, dict):
        value = value.get("mean")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _co2_since(store: CityReads, school: str, room: str, ppm: float, latest: float) -> float:
    """The start of the run of intervals, ending with the latest, whose mean
    was at or above `ppm` (the last 24 hours looked at)."""
    series = store.telemetry(school, room, since=latest - 86400, until=latest + 1, limit=2000)
    since = latest
    for reading in reversed(series):
        value = _mean((reading.get("readings") or {}).get("co2"))
        if value is None or value < ppm:
            break
        since = reading["at"] - float(reading.get("interval_s") or 0)
    return since


def _held_long_enough(finding: Finding, rules: Rules, first_seen: float, now: float) -> bool:
    minutes = rules.rules[finding.rule].get("minutes", 0)
    since = finding.since if finding.since is not None else first_seen
    return now - since >= minutes * 60


# the alerts in the city's database ------------------------------------------------------------------

COLUMNS = ("id", "key", "rule", "school", "room", "detail", "opened_at", "cleared_at", "acked_at", "acked_by",
           "closed_at", "closed_by", "mailed_at", "mail_error", "mail_tries", "mail_claimed_at")
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM alerts"
# The columns of the previous release's own file, as it wrote them.
_OLD_COLUMNS = COLUMNS[:-1]
# A worker that claimed an e-mail this long ago and never said how it went
# has died mid-send: the mail is free again (one more try).
MAIL_CLAIM_S = 600.0
# Rounds of all the city's workers, one at a time (PostgreSQL; SQLite's
# BEGIN IMMEDIATE is one already): an alert's fate is decided from the
# latest alert of its key, so the reading and the writing go together.
_ROUNDS_LOCK = 5107022


class AlertBook:
    """The alerts and what people did with them, in the city's database
    (migration r0005): every worker of a city reads and writes the same
    ones. Each call is one transaction on a connection of its own
    (CityStore.connect), never the ingest's. Race-free across processes:
    one open alert per key (a unique partial index, INSERT ... ON CONFLICT
    DO NOTHING), rounds one at a time, and every change a single UPDATE
    whose WHERE says what it expects, its row count saying whether it was
    this call that made it."""

    def __init__(self, store: CityStore, legacy: str | None = None) -> None:
        """`legacy`: the previous release's own alerts file
        (`city-alerts.db`): imported once if it exists, then renamed."""
        self.store = store
        if legacy is not None:
            self.import_file(legacy)

    @staticmethod
    def _out(row: Mapping[str, Any]) -> dict:
        out = {k: row[k] for k in COLUMNS}
        try:
            out["detail"] = json.loads(out["detail"])
        except (TypeError, ValueError):
            out["detail"] = {}
        if not isinstance(out["detail"], dict):
            out["detail"] = {}
        return out

    def _read(self, sql: str, params: dict | None = None) -> list[dict]:
        with self.store.connect(write=False) as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params or {}).mappings()]

    def get(self, alert_id: int) -> dict | None:
        rows = self._read(_SELECT + " WHERE id = :id", {"id": alert_id})
        return self._out(rows[0]) if rows else None

    def open_alerts(self, school: str | None = None) -> list[dict]:
        sql = _SELECT + " WHERE closed_at IS NULL" + (" AND school = :school" if school else "")
        return [self._out(r) for r in self._read(sql + " ORDER BY opened_at DESC, id DESC", {"school": school})]

    def history(self, school: str | None = None, limit: int = 200, rule: str | None = None) -> list[dict]:
        """Closed alerts, newest first."""
        where = ["closed_at IS NOT NULL"]
        if school:
            where.append("school = :school")
        if rule:
            where.append("rule = :rule")
        rows = self._read(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY closed_at DESC, id DESC LIMIT :limit",
                          {"school": school, "rule": rule, "limit": limit})
        return [self._out(r) for r in rows]

    def log(self, alert_id: int) -> list[dict]:
        return self._read("SELECT at, action, actor FROM alert_log WHERE alert = :id ORDER BY id", {"id": alert_id})

    @staticmethod
    def _note(conn: Connection, alert_id: int, at: float, action: str, actor: str) -> None:
        conn.execute(sa.text("INSERT INTO alert_log (alert, at, action, actor) VALUES (:alert, :at, :action, :actor)"),
                     {"alert": alert_id, "at": at, "action": action, "actor": actor})

    def acknowledge(self, alert_id: int, actor: str, now: float) -> bool:
        """False if there is no such open, unacknowledged alert (another
        worker's page may have been first)."""
        with self.store.connect(write=True) as conn:
            done = conn.execute(sa.text(
                "UPDATE alerts SET acked_at = :now, acked_by = :actor WHERE id = :id AND acked_at IS NULL "
                "AND closed_at IS NULL"), {"now": now, "actor": actor, "id": alert_id}).rowcount
            if done:
                self._note(conn, alert_id, now, "ack", actor)
        return bool(done)

    def close(self, alert_id: int, actor: str, now: float) -> bool:
        """Closing acknowledges too; False if there is no such open alert."""
        with self.store.connect(write=True) as conn:
            done = conn.execute(sa.text(
                "UPDATE alerts SET closed_at = :now, closed_by = :actor, acked_at = COALESCE(acked_at, :now), "
                "acked_by = COALESCE(acked_by, :actor) WHERE id = :id AND closed_at IS NULL"),
                {"now": now, "actor": actor, "id": alert_id}).rowcount
            if done:
                self._note(conn, alert_id, now, "close", actor)
        return bool(done)

    def apply(self, findings: list[Finding], rules: Rules, now: float, first_seen: dict[str, float]) -> list[dict]:
        """Open an alert for each finding that has held long enough and has
        none yet; note when an alert's condition stopped holding. A closed
        alert whose condition still holds opens no new one until it has
        cleared. `first_seen` (key -> when first found) is the caller's
        memory for conditions the store gives no start for. The alerts
        this call opened (another worker's round opens them once, for
        every worker)."""
        opened: list[dict] = []
        keys = {f.key for f in findings}
        for key in [k for k in first_seen if k not in keys]:
            del first_seen[key]
        with self.store.connect(write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ROUNDS_LOCK})")
            uncleared = conn.execute(sa.text(
                "SELECT id, key FROM alerts WHERE cleared_at IS NULL AND rule != 'records_dropped'")).all()
            cleared = [row.id for row in uncleared if row.key not in keys]
            if cleared:
                conn.execute(sa.text("UPDATE alerts SET cleared_at = :now WHERE id IN :ids AND cleared_at IS NULL")
                             .bindparams(sa.bindparam("ids", expanding=True)), {"now": now, "ids": cleared})
            for f in findings:
                seen = first_seen.setdefault(f.key, now)
                latest = conn.execute(sa.text(
                    "SELECT id, detail, cleared_at, closed_at FROM alerts WHERE key = :key ORDER BY id DESC LIMIT 1"),
                    {"key": f.key}).mappings().first()
                if f.rule == "records_dropped":
                    # an event, not a state: a new alert when the count grows past the last alert's
                    if latest is not None and _dropped(latest["detail"]) >= f.detail["dropped"]:
                        continue
                    if latest is not None and latest["closed_at"] is None:
                        conn.execute(sa.text("UPDATE alerts SET detail = :detail WHERE id = :id"),
                                     {"detail": json.dumps(f.detail), "id": latest["id"]})
                        continue
                elif latest is not None and (latest["closed_at"] is None or latest["cleared_at"] is None):
                    continue
                if f.quiet or not _held_long_enough(f, rules, seen, now):
                    continue
                new_id = conn.execute(sa.text(
                    "INSERT INTO alerts (key, rule, school, room, detail, opened_at, cleared_at) "
                    "VALUES (:key, :rule, :school, :room, :detail, :now, :cleared) "
                    "ON CONFLICT (key) WHERE closed_at IS NULL DO NOTHING RETURNING id"),
                    {"key": f.key, "rule": f.rule, "school": f.school, "room": f.room,
                     "detail": json.dumps(f.detail), "now": now,
                     "cleared": now if f.rule == "records_dropped" else None}).scalar()
                if new_id is None:  # open already: another worker's
                    continue
                self._note(conn, new_id, now, "open", "city")
                row = conn.execute(sa.text(_SELECT + " WHERE id = :id"), {"id": new_id}).mappings().one()
                opened.append(self._out(dict(row)))
        return opened

    def unmailed(self, now: float | None = None) -> list[dict]:
        """The alerts whose e-mail is still to send (and no worker is
        sending it now)."""
        stale = (time.time() if now is None else now) - MAIL_CLAIM_S
        rows = self._read(_SELECT + " WHERE mailed_at IS NULL AND mail_tries < :tries AND (mail_claimed_at IS NULL "
                          "OR mail_claimed_at <= :stale) ORDER BY id", {"tries": MAIL_TRIES, "stale": stale})
        return [self._out(r) for r in rows]

    def claim_mail(self, alert: dict, now: float | None = None) -> bool:
        """Count a try before it is made, and say who sends it: of the
        city's workers, the one whose UPDATE changed the row sends the
        e-mail (the others find the tries moved on, or the mail claimed);
        a crash mid-send costs a try, not a duplicate, and frees the mail
        after MAIL_CLAIM_S."""
        now = time.time() if now is None else now
        with self.store.connect(write=True) as conn:
            return bool(conn.execute(sa.text(
                "UPDATE alerts SET mail_tries = mail_tries + 1, mail_claimed_at = :now WHERE id = :id "
                "AND mail_tries = :tries AND mail_tries < :most AND mailed_at IS NULL "
                "AND (mail_claimed_at IS NULL OR mail_claimed_at <= :stale)"),
                {"now": now, "id": alert["id"], "tries": alert["mail_tries"], "most": MAIL_TRIES,
                 "stale": now - MAIL_CLAIM_S}).rowcount)

    def mailed(self, alert_id: int, now: float, error: str | None) -> None:
        with self.store.connect(write=True) as conn:
            if error is None:
                conn.execute(sa.text("UPDATE alerts SET mailed_at = :now, mail_error = NULL, mail_claimed_at = NULL "
                                     "WHERE id = :id"), {"now": now, "id": alert_id})
            else:
                conn.execute(sa.text("UPDATE alerts SET mail_error = :error, mail_claimed_at = NULL WHERE id = :id"),
                             {"error": error[:300], "id": alert_id})

    # the previous release's file

    def import_file(self, path: str) -> dict[str, int] | None:
        """Import the alerts of the previous release's own SQLite file (its
        open and closed alerts and their history) into the city's
        database, then rename it `<path>.imported`: imported once. None
        when there is nothing to import. An alert already here (the same
        key, opened at the same time: an import cut short) is not imported
        again; nor is an open one whose condition has an open alert here
        already."""
        if not os.path.exists(path):
            return None
        if self.store.dialect != "sqlite":
            # Each worker of the previous release kept its own copy of the
            # same alerts: importing them all would repeat the history.
            log.warning("alerts: %s (the previous release's own alerts file) is not imported with PostgreSQL; the "
                        "alerts are now in the city's database, and the rules open again those that still hold", path)
            return None
        try:
            alerts, entries = _old_alerts(path)
        except sqlite3.Error as e:
            log.error("alerts: %s (the previous release's alerts) cannot be read (%s): not imported, left as it is",
                      path, e)
            return None
        counts = {"open": 0, "closed": 0, "log": 0, "skipped": 0}
        try:
            self._import(alerts, entries, counts)
        except StoreWriteError as e:
            log.error("alerts: %s (the previous release's alerts) not imported (%s): left as it is, tried again at "
                      "the next start", path, e)
            return None
        done = path + ".imported"
        try:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(path + suffix, done + suffix)
        except OSError as e:  # imported all the same: the next start finds every alert here already
            log.warning("alerts: %s imported but not renamed (%s)", path, e.strerror)
            done = path
        log.warning("alerts: imported %d open and %d closed alerts (%d log entries; %d already here) from %s into "
                    "the city's database; the file is now %s", counts["open"], counts["closed"], counts["log"],
                    counts["skipped"], path, done)
        return counts

    def _import(self, alerts: list[dict], entries: dict[int, list[dict]], counts: dict[str, int]) -> None:
        with self.store.connect(write=True) as conn:
            # The old ids, unless this database has alerts already: the
            # e-mails sent said "alerte 12".
            keep_ids = conn.exec_driver_sql("SELECT COUNT(*) FROM alerts").scalar() == 0
            for old in alerts:
                if conn.execute(sa.text("SELECT 1 FROM alerts WHERE key = :key AND opened_at = :opened_at"),
                                {"key": old["key"], "opened_at": old["opened_at"]}).first():
                    counts["skipped"] += 1
                    continue
                names = [c for c in _OLD_COLUMNS if keep_ids or c != "id"]
                new_id = conn.execute(sa.text(
                    f"INSERT INTO alerts ({', '.join(names)}) VALUES ({', '.join(':' + c for c in names)}) "
                    "ON CONFLICT DO NOTHING RETURNING id"), {c: old[c] for c in names}).scalar()
                if new_id is None:
                    counts["skipped"] += 1
                    continue
                counts["open" if old["closed_at"] is None else "closed"] += 1
                for entry in entries.get(old["id"], []):
                    self._note(conn, new_id, entry["at"], entry["action"], entry["actor"])
                    counts["log"] += 1


def _dropped(detail: str) -> int:
    try:
        value = json.loads(detail)
    except (TypeError, ValueError):
        return 0
    return value.get("dropped", 0) if isinstance(value, dict) else 0


def _old_alerts(path: str) -> tuple[list[dict], dict[int, list[dict]]]:
    """The previous release's alerts and their log entries (alert id ->
    entries, in order). sqlite3.Error when the file is not that."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.row_factory = sqlite3.Row
        alerts = [dict(r) for r in conn.execute(
            "SELECT " + ", ".join(_OLD_COLUMNS) + " FROM alerts ORDER BY id").fetchall()]
        entries: dict[int, list[dict]] = {}
        for r in conn.execute("SELECT alert, at, action, actor FROM alert_log ORDER BY id"):
            entries.setdefault(r["alert"], []).append(dict(r))
    finally:
        conn.close()
    return alerts, entries


# e-mail ------------------------------------------------------------------------------------------------

RULE_TEXT = {
    "gateway_offline": "passerelle de l'école hors ligne",
    "board_offline": "carte de classe hors ligne",
    "projector_error": "vidéoprojecteur en erreur",
    "lamp_hours": "lampe du vidéoprojecteur en fin de vie",
    "ap_outside_session": "Wi-Fi de classe allumé hors séance",
    "co2": "CO₂ élevé depuis longtemps",
    "records_dropped": "passerelle : enregistrements perdus",
}


def mail_for(alert: dict, smtp: Smtp, timezone: str) -> EmailMessage:
    where = alert["school"] + (f", classe {alert['room']}" if alert["room"] else "")
    opened = dt.datetime.fromtimestamp(alert["opened_at"], ZoneInfo(timezone)).strftime("%d/%m/%Y %H:%M")
    message = EmailMessage()
    message["Subject"] = f"[Préau] alerte {alert['id']} : {RULE_TEXT.get(alert['rule'], alert['rule'])} — {where}"
    message["From"] = smtp.sender
    message["To"] = ", ".join(smtp.to)
    detail = ", ".join(f"{k} = {v}" for k, v in sorted(alert["detail"].items()))
    message.set_content(
        f"Alerte {alert['id']} ({alert['rule']}), ouverte le {opened}.\n"
        f"École : {alert['school']}\n" + (f"Classe : {alert['room']}\n" if alert["room"] else "")
        + (f"Détail : {detail}\n" if detail else "")
        + "\nÀ acquitter puis clore sur la page « Alertes » de la supervision.\n")
    return message


def send_mail(smtp: Smtp, message: EmailMessage) -> None:
    """Blocking (smtplib): call it off the event loop. OSError or
    smtplib.SMTPException when the server refuses or cannot be reached."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
        client.ehlo()
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context(cafile=smtp.ca_file))
            client.ehlo()
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(message)


# the periodic task --------------------------------------------------------------------------------------


class Alerts:
    """The rules, the book and the mail, evaluated every `rules.every_s`
    on the service's loop (the store's reads and the book's writes in a
    thread)."""

    def __init__(self, store: CityReads, book: AlertBook, rules: Rules, *, timezone: str = "Europe/Paris",
                 now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.book = book
        self.rules = rules
        self.timezone = timezone
        self.now = now
        self.first_seen: dict[str, float] = {}
        self.rounds = 0
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None

    def evaluate(self) -> list[dict]:
        """One round: find, open, mail. Blocking. The alerts opened."""
        now = self.now()
        opened = self.book.apply(find(self.store, self.rules, now, self.timezone), self.rules, now, self.first_seen)
        for alert in opened:
            log.warning("alert %s opened: %s, school %s%s", alert["id"], alert["rule"], alert["school"],
                        f", room {alert['room']}" if alert["room"] else "")
        self.mail_pending()
        self.rounds += 1
        return opened

    def mail_pending(self) -> None:
        smtp = self.rules.smtp
        if smtp is None:
            return
        for alert in self.book.unmailed(self.now()):
            if not self.book.claim_mail(alert, self.now()):
                continue
            try:
                send_mail(smtp, mail_for(alert, smtp, self.timezone))
            except (OSError, smtplib.SMTPException) as e:
                log.warning("alert %s: e-mail not sent (%s: %s); tried again at the next round", alert["id"],
                            type(e).__name__, str(e)[:200])
                self.book.mailed(alert["id"], self.now(), f"{type(e).__name__}: {e}")
            else:
                self.book.mailed(alert["id"], self.now(), None)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.evaluate)
                self.last_error = None
            except Exception as e:  # a database unreadable now: said, and tried again
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("alerts: this round failed (%s); trying again in %.0f s", self.last_error,
                            self.rules.every_s)
            await asyncio.sleep(self.rules.every_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="city-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
