"""FastAPI dependencies of the city API, as Annotated aliases, and its one
bearer check (common.auth): the operator's token, PREAU_CITY_TOKEN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from common.auth import BearerRoles, Credentials
from common.queries import refuse_unknown_query  # noqa: F401 - the city's routes take it from here
from common.web.auth import Access, Allow

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

_bearer_role = bearer.dependency()
# The city's people (cloud_bridge/web), when the pages are installed.
PEOPLE = Allow("supervisor", "technician", "viewer")


async def operator_or_person(request: Request, credentials: Credentials) -> None:
    """The API's description (/openapi.json): for the operator's bearer
    token, as the API it describes, and for a person logged in to the
    pages (their /docs page reads it). 401 otherwise."""
    if request.headers.get("authorization") is not None:
        require_operator(_bearer_role(request, credentials))
        return
    access: Access | None = getattr(request.app.state, "access", None)
    if access is None:  # the API alone, without the pages: no session to have
        raise HTTPException(status_code=401, detail="a valid bearer token is needed",
                            headers={"WWW-Authenticate": "Bearer"})
    await PEOPLE(request)


StoreDep = Annotated[CityStore, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
