"""FastAPI dependencies of the city API, as Annotated aliases."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .metrics import Metrics
from .settings import CitySettings
from .store import Store

_bearer = HTTPBearer(auto_error=False, description="PREAU_CITY_TOKEN")


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_settings(request: Request) -> CitySettings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[CitySettings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_token(settings: SettingsDep, credentials: Credentials) -> None:
    given = credentials.credentials.encode() if credentials else b""
    expected = (settings.token or "").encode()  # never empty: settings.check() refuses that
    if not given or not expected or not hmac.compare_digest(given, expected):
        raise HTTPException(401, "a valid bearer token is needed", headers={"WWW-Authenticate": "Bearer"})


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_or_token(request: Request, settings: SettingsDep, credentials: Credentials) -> None:
    """Health and metrics are open to the machine itself (a local Prometheus,
    systemd, a load balancer's sidecar); from elsewhere they need the token."""
    if not _is_loopback(request.client.host if request.client else None):
        require_token(settings, credentials)
