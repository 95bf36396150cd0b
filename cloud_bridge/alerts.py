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

The alerts live in their own small SQLite file (`city-alerts.db` beside
the city's database): the city's store has one writer, the ingest, and
alerts are a person's work, not the schools' records. The city's data is
read only through the store's public reads (status, latest_telemetry,
telemetry)."""

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
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

RULES_ENV = "PREAU_CITY_ALERTS"
SMTP_PASSWORD_ENV = "PREAU_CITY_SMTP_PASSWORD"
RULES_FILE = "city-alerts.toml"
ALERTS_FILE = "city-alerts.db"
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


# the alerts' file -------------------------------------------------------------------------------------

SCHEMA = """
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
COLUMNS = ("id", "key", "rule", "school", "room", "detail", "opened_at", "cleared_at", "acked_at", "acked_by",
           "closed_at", "closed_by", "mailed_at", "mail_error", "mail_tries")


class AlertBook:
    """The alerts and what people did with them, in one SQLite file (WAL).
    Each call opens its own connection (the pages' threads, the evaluating
    thread); writes are serialised by a lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)

    @contextlib.contextmanager
    def _connect(self):
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            with conn:
                yield conn
        finally:
            conn.close()

    @staticmethod
    def _out(row: sqlite3.Row) -> dict:
        out = {k: row[k] for k in COLUMNS}
        try:
            out["detail"] = json.loads(out["detail"])
        except ValueError:
            out["detail"] = {}
        return out

    def get(self, alert_id: int) -> dict | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return self._out(row) if row else None

    def open_alerts(self, school: str | None = None) -> list[dict]:
        sql = "SELECT * FROM alerts WHERE closed_at IS NULL" + (" AND school = ?" if school else "")
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY opened_at DESC, id DESC", (school,) if school else ()).fetchall()
        return [self._out(r) for r in rows]

    def history(self, school: str | None = None, limit: int = 200, rule: str | None = None) -> list[dict]:
        """Closed alerts, newest first."""
        where, params = ["closed_at IS NOT NULL"], []
        if school:
            where.append("school = ?")
            params.append(school)
        if rule:
            where.append("rule = ?")
            params.append(rule)
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY closed_at DESC, id DESC "
                                "LIMIT ?", (*params, limit)).fetchall()
        return [self._out(r) for r in rows]

    def log(self, alert_id: int) -> list[dict]:
        with self._connect() as conn:
            rows = conn.execute("SELECT at, action, actor FROM alert_log WHERE alert = ? ORDER BY id",
                                (alert_id,)).fetchall()
        return [dict(r) for r in rows]

    def acknowledge(self, alert_id: int, actor: str, now: float) -> bool:
        """False if there is no such open, unacknowledged alert."""
        with self._lock, self._connect() as conn:
            done = conn.execute("UPDATE alerts SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL "
                                "AND closed_at IS NULL", (now, actor, alert_id)).rowcount
            if done:
                conn.execute("INSERT INTO alert_log (alert, at, action, actor) VALUES (?, ?, 'ack', ?)",
                             (alert_id, now, actor))
        return bool(done)

    def close(self, alert_id: int, actor: str, now: float) -> bool:
        """Closing acknowledges too; False if there is no such open alert."""
        with self._lock, self._connect() as conn:
            done = conn.execute("UPDATE alerts SET closed_at = ?, closed_by = ?, acked_at = COALESCE(acked_at, ?), "
                                "acked_by = COALESCE(acked_by, ?) WHERE id = ? AND closed_at IS NULL",
                                (now, actor, now, actor, alert_id)).rowcount
            if done:
                conn.execute("INSERT INTO alert_log (alert, at, action, actor) VALUES (?, ?, 'close', ?)",
                             (alert_id, now, actor))
        return bool(done)

    def apply(self, findings: list[Finding], rules: Rules, now: float, first_seen: dict[str, float]) -> list[dict]:
        """Open an alert for each finding that has held long enough and has
        none yet; note when an alert's condition stopped holding. A closed
        alert whose condition still holds opens no new one until it has
        cleared. `first_seen` (key -> when first found) is the caller's
        memory for conditions the store gives no start for. The alerts
        opened now."""
        opened: list[dict] = []
        keys = {f.key for f in findings}
        for key in [k for k in first_seen if k not in keys]:
            del first_seen[key]
        with self._lock, self._connect() as conn:
            conn.execute("UPDATE alerts SET cleared_at = ? WHERE cleared_at IS NULL AND rule != 'records_dropped' "
                         "AND key NOT IN (SELECT value FROM json_each(?))", (now, json.dumps(sorted(keys))))
            for f in findings:
                seen = first_seen.setdefault(f.key, now)
                latest = conn.execute("SELECT * FROM alerts WHERE key = ? ORDER BY id DESC LIMIT 1", (f.key,)).fetchone()
                if f.rule == "records_dropped":
                    # an event, not a state: a new alert when the count grows past the last alert's
                    if latest is not None and json.loads(latest["detail"]).get("dropped", 0) >= f.detail["dropped"]:
                        continue
                    if latest is not None and latest["closed_at"] is None:
                        conn.execute("UPDATE alerts SET detail = ? WHERE id = ?", (json.dumps(f.detail), latest["id"]))
                        continue
                elif latest is not None and (latest["closed_at"] is None or latest["cleared_at"] is None):
                    continue
                if f.quiet or not _held_long_enough(f, rules, seen, now):
                    continue
                cur = conn.execute("INSERT INTO alerts (key, rule, school, room, detail, opened_at, cleared_at) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (f.key, f.rule, f.school, f.room, json.dumps(f.detail), now,
                                    now if f.rule == "records_dropped" else None))
                conn.execute("INSERT INTO alert_log (alert, at, action, actor) VALUES (?, ?, 'open', 'city')",
                             (cur.lastrowid, now))
                row = conn.execute("SELECT * FROM alerts WHERE id = ?", (cur.lastrowid,)).fetchone()
                opened.append(self._out(row))
        return opened

    def unmailed(self) -> list[dict]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM alerts WHERE mailed_at IS NULL AND mail_tries < ? ORDER BY id",
                                (MAIL_TRIES,)).fetchall()
        return [self._out(r) for r in rows]

    def claim_mail(self, alert: dict) -> bool:
        """Count a try before it is made: of several workers sharing this
        file, one sends each e-mail (a crash mid-send costs a try, not a
        duplicate)."""
        with self._lock, self._connect() as conn:
            return bool(conn.execute("UPDATE alerts SET mail_tries = mail_tries + 1 WHERE id = ? AND mail_tries = ? "
                                     "AND mailed_at IS NULL", (alert["id"], alert["mail_tries"])).rowcount)

    def mailed(self, alert_id: int, now: float, error: str | None) -> None:
        with self._lock, self._connect() as conn:
            if error is None:
                conn.execute("UPDATE alerts SET mailed_at = ?, mail_error = NULL WHERE id = ?", (now, alert_id))
            else:
                conn.execute("UPDATE alerts SET mail_error = ? WHERE id = ?", (error[:300], alert_id))


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
    on the service's loop (the store's reads and SQLite in a thread)."""

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
        for alert in self.book.unmailed():
            if not self.book.claim_mail(alert):
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
