"""Settings of the city service, checked once at start."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import ConfigError

TOKEN_ENV = "PREAU_CITY_TOKEN"
MQTT_PASSWORD_ENV = "PREAU_CITY_MQTT_PASSWORD"
MIN_TOKEN_CHARS = 16
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
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0

    @classmethod
    def from_env(cls, **values) -> "CitySettings":
        """Secrets come from the environment, never from argv (`ps` shows argv)."""
        values.setdefault("token", os.environ.get(TOKEN_ENV))
        values.setdefault("password", os.environ.get(MQTT_PASSWORD_ENV))
        return cls(**values)

    def check(self) -> "CitySettings":
        if not self.token:
            raise ConfigError(
                f"no API token: set {TOKEN_ENV} (for example `export {TOKEN_ENV}=$(python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))')`); the city API never runs without one"
            )
        if len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{TOKEN_ENV} is too short: at least {MIN_TOKEN_CHARS} characters")
        for name in ("broker_port", "http_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError(f"{name}: {port!r} is not a TCP port")
        if not self.broker_host:
            raise ConfigError("broker host is empty")
        if not self.client_id or len(self.client_id) > 64:
            raise ConfigError("client id: 1 to 64 characters")
        if self.password and not self.username:
            raise ConfigError("an MQTT password is set without a username")
        if self.share_group is not None and not _SHARE_GROUP.fullmatch(self.share_group):
            raise ConfigError("share group: 1 to 64 of A-Z a-z 0-9 _ -")
        if not self.db_path or self.db_path == ":memory:":
            raise ConfigError("database: a file path is needed")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError("reconnect delays: need 0 < min <= max")
        return self


def split_host_port(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` -> (host, port), for the CLI flags."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)
