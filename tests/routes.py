"""The route-table walks' shared part (tests/test_gateway_auth.py,
tests/test_city_pages.py): every route of an app, those of included routers
too, and the `Allow(roles...)` each names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute

from common.web.auth import Allow


def allow_of(route: APIRoute) -> Allow | None:
    def walk(dependant):
        for sub in dependant.dependencies:
            if isinstance(sub.call, Allow):
                return sub.call
            found = walk(sub)
            if found is not None:
                return found
        return None

    return walk(route.dependant)


def routes_of(app) -> Iterator[tuple[str, Any, Any]]:
    """(full path, methods, the APIRoute or Mount) of every route of the app,
    those of included routers too (FastAPI >= 0.150 keeps them as routers)."""
    try:
        from fastapi.routing import iter_route_contexts  # pyright: ignore[reportAttributeAccessIssue]
    except ImportError:  # an older FastAPI: app.routes is flat
        for route in app.routes:
            yield route.path, getattr(route, "methods", None), route
        return
    for context in iter_route_contexts(app.routes):
        yield context.path, context.methods, context.original_route
