"""Query parameters a route does not know are refused, not ignored: a
filter with a typo (`?shcool=`, `?al=true`) would otherwise answer with
everything, and nobody would notice. One dependency for both services."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


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
