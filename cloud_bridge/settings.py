"""Settings of the city service, checked once at start."""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any

from common.mqtt import BrokerConfig

from .errors import CitySettingsError

TOKEN_ENV = "PREAU_CITY_TOKEN"
MQTT_PASSWORD_ENV = "PREAU_CITY_MQTT_PASSWORD"
# A PostgreSQL URL may hold a password: from the environment only, never argv.
DATABASE_URL_ENV = "PREAU_CITY_DATABASE_URL"
DATABASE_SCHEMES = ("postgresql+psycopg://", "postgresql://", "sqlite:///")
MIN_TOKEN_CHARS = 16
# The supervision pages' estimates (docs/city.md, "Pages and alerts"): what
# the city's projectors draw, when its school day ends, how far ahead a lamp
# is flagged. Numbers a city may set for its own fleet, from the environment.
PROJECTOR_ON_W_ENV = "PREAU_CITY_PROJECTOR_ON_W"
PROJECTOR_STANDBY_W_ENV = "PREAU_CITY_PROJECTOR_STANDBY_W"
SCHOOL_DAY_END_ENV = "PREAU_CITY_SCHOOL_DAY_END"
LAMP_DUE_WEEKS_ENV = "PREAU_CITY_LAMP_DUE_WEEKS"
_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_SHARE_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class CitySettings:
    token: str | None = None
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = "preau-city"
    db_path: str = "preau-city.db"
    http_host: str = "127.0.0.1"
    http_port: int = 8081
    # `$share/{group}/...` lets several workers split the schools' batches
    # (Mosquitto >= 1.6, EMQX, VerneMQ, HiveMQ). None: a plain subscription.
    share_group: str | None = None
    keepalive_s: int = 30
    # Reconnection backoff: 1 s doubling up to this (common.mqtt.MqttLink).
    reconnect_max_s: float = 30.0
    # TLS to the city broker: the city CA's certificate, and this worker's
    # own certificate and key (`preau city-ca issue-worker`). Paths only:
    # the key stays in its 0600 file. `tls` alone: the system's CAs.
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # The CA's index.json (or a copy): which gateway owns each school
    # (cloud_bridge/register.py). None: batches' gateway ids are not checked.
    gateways: str | None = None
    # PostgreSQL for a city or a region (`postgresql+psycopg://user@host/db`,
    # or a SQLite URL); None: the SQLite file `db_path`. A password in it
    # is a secret: set it from PREAU_CITY_DATABASE_URL (or libpq's
    # PGPASSWORD, ~/.pgpass), never on the command line.
    database_url: str | None = None
    # Telemetry older than this is forgotten (the city's GDPR register says how long).
    telemetry_retention_days: float = 400.0
    # Records stored beyond a missing seq: after this long the city asks the
    # gateway for the missing ones (preau/v1/city/{school}/gaps), and again
    # every as long while they stay missing.
    gap_after_s: float = 30.0
    # The usage page's energy estimate: a classroom lamp projector draws
    # about 250 W on (Epson EB-5xx, BenQ MW-series, normal lamp mode) and
    # about 2 W in standby with its network kept on (PJLink and the
    # RS-232 query need it); the counterfactual keeps a projector on until
    # the school day's end, local time.
    projector_on_w: float = 250.0
    projector_standby_w: float = 2.0
    school_day_end: str = "16:30"
    # The equipment page flags a lamp whose replacement is forecast within this many weeks.
    lamp_due_weeks: int = 8

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        shown = {k: v for k, v in vars(self).items() if k not in ("token", "password", "database_url")}
        if self.database_url:
            from .store import redacted

            shown["database_url"] = redacted(self.database_url)
        return f"CitySettings({', '.join(f'{k}={v!r}' for k, v in shown.items())}, token=***, password=***)"

    @classmethod
    def from_env(cls, **values: Any) -> CitySettings:
        """Secrets come from the environment, never from argv (`ps` shows argv)."""
        values.setdefault("token", os.environ.get(TOKEN_ENV))
        values.setdefault("password", os.environ.get(MQTT_PASSWORD_ENV))
        if values.get("database_url") is None:
            values["database_url"] = os.environ.get(DATABASE_URL_ENV) or None
        for name, env, kind in (("projector_on_w", PROJECTOR_ON_W_ENV, float),
                                ("projector_standby_w", PROJECTOR_STANDBY_W_ENV, float),
                                ("school_day_end", SCHOOL_DAY_END_ENV, str),
                                ("lamp_due_weeks", LAMP_DUE_WEEKS_ENV, int)):
            text = os.environ.get(env)
            if text is None or name in values:
                continue
            try:
                values[name] = kind(text)
            except ValueError:
                raise CitySettingsError(f"{env}: expected {'a number' if kind is not str else 'HH:MM'}, "
                                        f"got {text!r}") from None
        return cls(**values)

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.ca_file or self.cert_file)

    @property
    def broker(self) -> BrokerConfig:
        return BrokerConfig(self.broker_host, self.broker_port, self.username, self.password, tls=self.uses_tls,
                            ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file)

    def check(self) -> CitySettings:
        if not self.token:
            raise CitySettingsError(
                f"no API token: set {TOKEN_ENV} (for example `export {TOKEN_ENV}=$(python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))')`); the city API never runs without one"
            )
        if len(self.token) < MIN_TOKEN_CHARS:
            raise CitySettingsError(f"{TOKEN_ENV} is too short: at least {MIN_TOKEN_CHARS} characters")
        for name in ("broker_port", "http_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise CitySettingsError(f"{name}: {port!r} is not a TCP port")
        if not self.broker_host:
            raise CitySettingsError("broker host is empty")
        if not self.client_id or len(self.client_id) > 64:
            raise CitySettingsError("client id: 1 to 64 characters")
        if self.password and not self.username:
            raise CitySettingsError("an MQTT password is set without a username")
        if self.share_group is not None and not _SHARE_GROUP.fullmatch(self.share_group):
            raise CitySettingsError("share group: 1 to 64 of A-Z a-z 0-9 _ -")
        if self.database_url is not None:
            if not self.database_url.startswith(DATABASE_SCHEMES):
                raise CitySettingsError(f"{DATABASE_URL_ENV}: expected a URL starting with "
                                        f"{' or '.join(DATABASE_SCHEMES)}")
        elif not self.db_path or self.db_path == ":memory:":
            raise CitySettingsError("database: a file path is needed")
        if not 0 < self.telemetry_retention_days <= 36500:
            raise CitySettingsError("telemetry_retention_days: more than 0, at most 36500")
        if not 0 < self.gap_after_s <= 86400:
            raise CitySettingsError("gap_after_s: more than 0, at most 86400 seconds")
        self._check_estimates()
        if self.reconnect_max_s <= 0:
            raise CitySettingsError("reconnect_max_s: must be positive")
        if not 0 < self.keepalive_s <= 65535:
            raise CitySettingsError("keepalive_s: 1 to 65535 seconds")
        self._check_tls()
        if self.gateways is not None:
            _readable(self.gateways, "gateway register (--gateways)")
        return self

    @property
    def school_day_end_time(self) -> datetime.time:
        """`school_day_end` ("16:30") as a time of day (checked by check())."""
        hours, minutes = self.school_day_end.split(":")
        return datetime.time(int(hours), int(minutes))

    def _check_estimates(self) -> None:
        on, standby = self.projector_on_w, self.projector_standby_w
        for name, value in (("projector_on_w", on), ("projector_standby_w", standby)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 5000:
                raise CitySettingsError(f"{name}: 0 to 5000 W, got {value!r}")
        if standby > on:
            raise CitySettingsError(f"projector_standby_w ({standby} W) is more than projector_on_w ({on} W)")
        if not isinstance(self.school_day_end, str) or not _CLOCK_TIME.fullmatch(self.school_day_end):
            raise CitySettingsError(f"school_day_end: HH:MM (24 h, local time), got {self.school_day_end!r}")
        weeks = self.lamp_due_weeks
        if not isinstance(weeks, int) or isinstance(weeks, bool) or not 1 <= weeks <= 104:
            raise CitySettingsError(f"lamp_due_weeks: 1 to 104 weeks, got {weeks!r}")

    def _check_tls(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            given, missing = ("certificate", "key") if self.cert_file else ("key", "certificate")
            raise CitySettingsError(f"a client {given} without its {missing}: give both --cert-file and --key-file")
        if self.ca_file:
            _readable(self.ca_file, "CA certificate (--ca-file)")
        if self.cert_file and self.key_file:
            check_client_certificate(self.cert_file, self.key_file)


def _readable(path: str, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise CitySettingsError(f"{what} {path}: {e.strerror}") from None


def check_client_certificate(cert_file: str, key_file: str) -> None:
    """The certificate and its key can be read, belong together, are in date,
    and the key is not readable by others: said now, rather than as a TLS
    alert from the broker."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    _readable(cert_file, "client certificate (--cert-file)")
    _readable(key_file, "client key (--key-file)")
    if os.stat(key_file).st_mode & 0o077:
        raise CitySettingsError(f"client key {key_file} can be read by others: `chmod 600 {key_file}`")
    try:
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except ValueError as e:
        raise CitySettingsError(f"client certificate {cert_file}: not a PEM certificate ({e})") from None
    try:
        with open(key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    except TypeError:
        raise CitySettingsError(f"client key {key_file} is encrypted: the worker needs it unencrypted, "
                                "mode 0600, readable by its user only") from None
    except ValueError as e:
        raise CitySettingsError(f"client key {key_file}: not a PEM private key ({e})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, public):
        raise CitySettingsError(f"client certificate {cert_file} and key {key_file} do not belong together")
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        raise CitySettingsError(f"client certificate {cert_file} expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
                                "`preau city-ca renew`")
    if cert.not_valid_before_utc > now:
        raise CitySettingsError(f"client certificate {cert_file} is valid only from "
                                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: is this clock right?")


def split_host_port(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` -> (host, port), for the CLI flags."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise CitySettingsError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)
