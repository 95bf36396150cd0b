"""The school's gateway configuration: one TOML file, validated at start.

Every error names the file, the key and what was expected, so a technician
editing `school.toml` over SSH can fix it without reading code."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import EllipsisType
from typing import Any, Literal, NoReturn, overload

from common.mqtt import BrokerConfig
from protocol.codec import valid_name

from .broker_files import BrokerFiles
from .clocksync import RTC_CHOICES
from .policy.model import WIFI_CHOICES


class ConfigError(ValueError):
    pass


MAX_SCHOOL_NAME = 100  # characters
DEFAULT_KEEP_DAYS = 365  # a school year and its summer: last year's history for the council
MIN_KEEP_DAYS = 7
MAX_KEEP_DAYS = 36_500
# [city]: what the gateway sends the city, and how fast (docs/gateway.md, "City link").
DEFAULT_TELEMETRY_INTERVAL_S = 300
DEFAULT_UPLINK_KBIT_S = 256  # a quarter of a 1 Mbit/s ADSL uplink: the school keeps the rest
MAX_UPLINK_KBIT_S = 1_000_000
# Telemetry records waiting for the city: 48 hours of a 30-room school at
# 5-minute intervals are 17,280; beyond the cap the oldest go first.
DEFAULT_TELEMETRY_OUTBOX_MAX = 50_000


@dataclass(frozen=True)
class Config:
    school: str
    gateway_id: str
    school_broker: BrokerConfig
    db: str
    # The school's name as parents know it ("École élémentaire Jules-Ferry"):
    # the pages and the radio report show it beside the code. Optional.
    school_name: str | None = None
    city_broker: BrokerConfig | None = None
    http_bind: str = "127.0.0.1:8080"
    http_token: str | None = None
    http_viewer_token: str | None = None
    # The rooms as the policy holds them (RoomPolicy: wifi, sessions, profile,
    # equipment): one copy, read by the registry, the API and the engine.
    rooms: Mapping[str, Any] = field(default_factory=dict)
    # The lesson-time policy (edge_gateway/policy): week, periods, calendar.
    policy: Any = None
    source: str = "<config>"
    # The boards' identities (edge_gateway/fleet.py): by default fleet.json
    # beside the database; None only for an in-memory database.
    fleet_file: str | None = None
    # The school broker's generated files (edge_gateway/broker_files.py).
    broker: BrokerFiles | None = None
    # What may vouch for the clock besides NTP (edge_gateway/clocksync.py).
    clock_rtc: str = "none"
    # Records the city has acknowledged are deleted after this many days
    # (never those the dedup windows still need: edge_gateway/history.py).
    history_keep_days: int = DEFAULT_KEEP_DAYS
    # [city]: one telemetry record per room and interval; the uplink's cap in
    # kbit/s (0: none); unacknowledged telemetry records kept at most.
    telemetry_interval_s: int = DEFAULT_TELEMETRY_INTERVAL_S
    uplink_kbit_s: int = DEFAULT_UPLINK_KBIT_S
    telemetry_outbox_max: int = DEFAULT_TELEMETRY_OUTBOX_MAX

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        name = os.path.basename(os.fspath(path))
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{name}: not valid TOML ({e})") from None
        base = os.path.dirname(os.path.abspath(path))
        # the text goes along, so errors give line numbers without reading the file again
        return cls.from_dict(data, source=name, base_dir=base, text=text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<config>", base_dir: str | None = None,
                  text: str | None = None) -> Config:
        v = _Validator(source)
        from .policy.config import POLICY_KEYS, ROOM_KEYS, PolicyConfigError, load_policy

        v.known(data, "", ("school", "school_name", "gateway_id", "db", "fleet", "broker", "school_broker", "city_broker", "http",
                           "rooms", "clock", "history", "city") + POLICY_KEYS)
        school = v.name(data, "school")
        school_name = v.string(data, "school_name", default=None)
        if school_name is not None and (len(school_name) > MAX_SCHOOL_NAME or not school_name.isprintable()
                                        or school_name != school_name.strip()):
            v.fail("school_name", f"expected at most {MAX_SCHOOL_NAME} printable characters, without spaces "
                                  f"around them, got {_show(school_name)}")
        gateway_id = v.name(data, "gateway_id")
        db = v.string(data, "db")
        if base_dir and db != ":memory:" and not os.path.isabs(db):
            # A relative path is relative to the config file, not to wherever systemd started us.
            db = os.path.join(base_dir, db)

        def here(path: str | None) -> str | None:
            # Relative paths are relative to the config file, not to wherever systemd started us.
            if path is None or os.path.isabs(path) or not base_dir:
                return path
            return os.path.join(base_dir, path)

        state_dir = os.path.dirname(os.path.abspath(db)) if db != ":memory:" else None
        fleet_file = here(v.string(data, "fleet", default=None))
        if fleet_file is None and state_dir is not None:
            fleet_file = os.path.join(state_dir, "fleet.json")
        school_broker = v.broker(data, "school_broker", required=True)
        city_broker = v.broker(data, "city_broker", required=False)
        school_broker = replace(school_broker, ca_file=here(school_broker.ca_file),
                                cert_file=here(school_broker.cert_file), key_file=here(school_broker.key_file))
        if city_broker is not None:
            city_broker = replace(city_broker, ca_file=here(city_broker.ca_file),
                                  cert_file=here(city_broker.cert_file), key_file=here(city_broker.key_file))
        broker_files = v.broker_files(data, school_broker.port, here,
                                      os.path.join(state_dir, "broker") if state_dir else None)
        http = v.table(data, "http", required=False) or {}
        v.known(http, "http", ("bind", "token", "viewer_token"))
        bind = v.string(http, "bind", "http", default="127.0.0.1:8080")
        host, sep, port = bind.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            v.fail("http.bind", f'expected "host:port", got {bind!r}')
        token = v.string(http, "token", "http", default=None)
        viewer_token = v.string(http, "viewer_token", "http", default=None)
        rooms_table = v.table(data, "rooms", required=True)
        for room, spec in rooms_table.items():
            key = f"rooms.{room}"
            if not valid_name(room) or room == "gateway":
                v.fail(key, "room name must be 1-32 characters of a-z, 0-9, '-' and not 'gateway'")
            if not isinstance(spec, Mapping):
                v.fail(key, f"expected a table, got {spec!r}")
            v.known(spec, key, ("wifi", "sessions") + ROOM_KEYS)
            wifi = spec.get("wifi", "never")
            if wifi not in WIFI_CHOICES:
                v.fail(f"{key}.wifi", f'expected "allowed" or "never", got {_show(wifi)}')
            sessions = spec.get("sessions", True)
            if not isinstance(sessions, bool):
                v.fail(f"{key}.sessions", f"expected true or false, got {_show(sessions)}")
        if not rooms_table:
            v.fail("rooms", "expected at least one [rooms.<room>] table")
        clock = v.table(data, "clock", required=False) or {}
        v.known(clock, "clock", ("rtc",))
        rtc = clock.get("rtc", "none")
        if rtc not in RTC_CHOICES:
            v.fail("clock.rtc", "expected %s, got %s" % (" or ".join(f'"{c}"' for c in RTC_CHOICES), _show(rtc)))
        history_table = v.table(data, "history", required=False) or {}
        v.known(history_table, "history", ("keep_days",))
        keep_days = v.integer(history_table, "keep_days", "history", MIN_KEEP_DAYS, MAX_KEEP_DAYS,
                              default=DEFAULT_KEEP_DAYS)
        city = v.table(data, "city", required=False) or {}
        v.known(city, "city", ("telemetry_interval_s", "uplink_kbit_s", "telemetry_outbox_max"))
        telemetry_interval_s = v.integer(city, "telemetry_interval_s", "city", 60, 3600,
                                         default=DEFAULT_TELEMETRY_INTERVAL_S)
        uplink_kbit_s = v.integer(city, "uplink_kbit_s", "city", 0, MAX_UPLINK_KBIT_S, default=DEFAULT_UPLINK_KBIT_S)
        if 0 < uplink_kbit_s < 16:
            v.fail("city.uplink_kbit_s", f"expected 0 (no cap) or 16..{MAX_UPLINK_KBIT_S}, got {uplink_kbit_s}")
        telemetry_outbox_max = v.integer(city, "telemetry_outbox_max", "city", 10, 10_000_000,
                                         default=DEFAULT_TELEMETRY_OUTBOX_MAX)
        try:
            policy = load_policy(data, source=source, base_dir=base_dir, text=text)
        except PolicyConfigError as e:
            raise ConfigError(str(e)) from None
        return cls(
            school=school,
            school_name=school_name,
            gateway_id=gateway_id,
            school_broker=school_broker,
            city_broker=city_broker,
            db=db,
            http_bind=bind,
            http_token=token,
            http_viewer_token=viewer_token,
            rooms=policy.rooms,
            policy=policy,
            source=source,
            fleet_file=fleet_file,
            broker=broker_files,
            clock_rtc=rtc,
            history_keep_days=keep_days,
            telemetry_interval_s=telemetry_interval_s,
            uplink_kbit_s=uplink_kbit_s,
            telemetry_outbox_max=telemetry_outbox_max,
        )


def _show(value: Any) -> str:
    # TOML strings are double-quoted; show them the way the user typed them.
    if isinstance(value, str):
        return '"%s"' % value
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {key}: {expected}")

    def known(self, table: Mapping[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
        for k in table:
            if k not in keys:
                full = f"{prefix}.{k}" if prefix else k
                self.fail(full, "unknown key (expected one of: %s)" % ", ".join(keys))

    def _get(self, table: Mapping[str, Any], key: str, prefix: str, default: Any, required: bool) -> tuple[str, Any, bool]:
        full = f"{prefix}.{key}" if prefix else key
        if key not in table:
            if required:
                self.fail(full, "missing")
            return full, default, True
        return full, table[key], False

    # `default` left out (...) means the key is required.
    @overload
    def string(self, table: Mapping[str, Any], key: str, prefix: str = "", default: str | EllipsisType = ...) -> str: ...
    @overload
    def string(self, table: Mapping[str, Any], key: str, prefix: str = "", *, default: None) -> str | None: ...

    def string(self, table: Mapping[str, Any], key: str, prefix: str = "",
               default: str | EllipsisType | None = ...) -> str | None:
        full, value, missing = self._get(table, key, prefix, default, default is ...)
        if missing:
            return value
        if not isinstance(value, str) or not value:
            self.fail(full, f"expected a non-empty string, got {_show(value)}")
        return value

    def name(self, table: Mapping[str, Any], key: str, prefix: str = "") -> str:
        full, value, _ = self._get(table, key, prefix, None, True)
        if not valid_name(value):
            self.fail(full, f"expected 1-32 characters of a-z, 0-9 and '-', got {_show(value)}")
        return value

    def integer(self, table: Mapping[str, Any], key: str, prefix: str, lo: int, hi: int,
                default: int | EllipsisType = ...) -> int:
        full, value, missing = self._get(table, key, prefix, default, default is ...)
        if missing:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            self.fail(full, f"expected an integer {lo}..{hi}, got {_show(value)}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, prefix: str, default: bool) -> bool:
        full, value, missing = self._get(table, key, prefix, default, False)
        if not missing and not isinstance(value, bool):
            self.fail(full, f"expected true or false, got {_show(value)}")
        return value

    @overload
    def table(self, data: Mapping[str, Any], key: str, required: Literal[True]) -> Mapping[str, Any]: ...
    @overload
    def table(self, data: Mapping[str, Any], key: str, required: bool) -> Mapping[str, Any] | None: ...

    def table(self, data: Mapping[str, Any], key: str, required: bool) -> Mapping[str, Any] | None:
        if key not in data:
            if required:
                self.fail(key, "missing table")
            return None
        value = data[key]
        if not isinstance(value, Mapping):
            self.fail(key, f"expected a table, got {_show(value)}")
        return value

    def host_port(self, table: Mapping[str, Any], key: str, prefix: str, default: str | None) -> tuple[str, int] | None:
        full = f"{prefix}.{key}"
        if key not in table and default is None:
            return None
        text = self.string(table, key, prefix, default=default or "")
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.fail(full, f'expected "host:port", got {_show(text)}')
        return host.strip("[]"), int(port)

    def broker_files(self, data: Mapping[str, Any], port: int, here: Any, default_dir: str | None) -> BrokerFiles | None:
        t = self.table(data, "broker", required=False)
        if t is None and default_dir is None:
            return None
        t = t or {}
        self.known(t, "broker", ("dir", "listen", "tls_listen", "tls_cert", "tls_key", "pid_file"))
        directory = here(self.string(t, "dir", "broker", default=None)) or default_dir
        if directory is None:
            self.fail("broker.dir", "missing (the database is in memory, so there is no default)")
        host, listen_port = self.host_port(t, "listen", "broker", f"0.0.0.0:{port}") or ("0.0.0.0", port)
        tls = self.host_port(t, "tls_listen", "broker", None)
        cert = here(self.string(t, "tls_cert", "broker", default=None))
        key = here(self.string(t, "tls_key", "broker", default=None))
        if tls is not None and not (cert and key):
            self.fail("broker.tls_listen", "needs tls_cert and tls_key (the broker's certificate and its key)")
        if tls is not None and tls[0] != host:
            self.fail("broker.tls_listen", f"must listen on the same address as broker.listen ({host})")
        return BrokerFiles(dir=directory, listen_host=host, listen_port=listen_port,
                           tls_port=tls[1] if tls else None, tls_cert=cert, tls_key=key,
                           pid_file=here(self.string(t, "pid_file", "broker", default=None)))

    @overload
    def broker(self, data: Mapping[str, Any], key: str, required: Literal[True]) -> BrokerConfig: ...
    @overload
    def broker(self, data: Mapping[str, Any], key: str, required: bool) -> BrokerConfig | None: ...

    def broker(self, data: Mapping[str, Any], key: str, required: bool) -> BrokerConfig | None:
        t = self.table(data, key, required)
        if t is None:
            return None
        self.known(t, key, ("host", "port", "username", "password", "tls", "ca_file", "cert_file", "key_file"))
        return BrokerConfig(
            host=self.string(t, "host", key),
            port=self.integer(t, "port", key, 1, 65535, default=1883),
            username=self.string(t, "username", key, default=None),
            password=self.string(t, "password", key, default=None),
            tls=self.boolean(t, "tls", key, False),
            ca_file=self.string(t, "ca_file", key, default=None),
            cert_file=self.string(t, "cert_file", key, default=None),
            key_file=self.string(t, "key_file", key, default=None),
        )
