"""FastAPI dependencies of the city API, as Annotated aliases, and its one
bearer check (common.auth): the operator's token, PREAU_CITY_TOKEN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request

from common.auth import BearerRoles
from common.queries import refuse_unknown_query  # noqa: F401 - the city's routes take it from here

from .metrics import Metrics
from .settings import CitySettings
from .store import CityStore

OPERATOR = "operator"


def get_store(request: Request) -> CityStore:
    return request.app.state.store


def get_settings(request: Request) -> CitySettings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _tokens(request: Request) -> Mapping[str, str | None]:
    return {OPERATOR: get_settings(request).token}


bearer = BearerRoles(_tokens)
# Every /api route: the operator's token, 401 otherwise.
require_operator = bearer.require(OPERATOR)
# Health and metrics: open to the machine itself (a local Prometheus,
# systemd, a load balancer's sidecar); from elsewhere the token.
loopback_or_operator = bearer.loopback_or(OPERATOR)

StoreDep = Annotated[CityStore, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
