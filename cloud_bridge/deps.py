"""FastAPI dependencies of the city API, as Annotated aliases, and its one
bearer check (common.auth): the operator's token, PREAU_CITY_TOKEN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from common.auth import BearerRoles

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
# Every /api route: the operator's token, 401 otherwise. (Not bearer.require():
# common.auth builds its Annotated[str, Depends(base)] under `from __future__
# import annotations`, so FastAPI cannot resolve `base` and takes `role` for a
# query parameter.)
require_operator = bearer.dependency()  # one role: any valid token is the operator's
# Health and metrics: open to the machine itself (a local Prometheus,
# systemd, a load balancer's sidecar); from elsewhere the token.
loopback_or_operator = bearer.loopback_or(OPERATOR)

StoreDep = Annotated[CityStore, Depends(get_store)]
SettingsDep = Annotated[CitySettings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not know (`?shcool=`, a typo) is
    refused with 422, not silently ignored: a filter that did not apply
    would answer with everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _query_names(route))
    if unknown:
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name), "msg": "unknown query parameter",
             "input": request.query_params[name]}
            for name in unknown
        ])


def _query_names(route: APIRoute) -> set[str]:
    def names(dependant: Dependant) -> set[str]:
        found = {param.alias for param in dependant.query_params}
        for sub in dependant.dependencies:
            found |= names(sub)
        return found

    return names(route.dependant)
