"""The one bearer-token check of the services' web APIs.

A service lists its roles, each with a token (the gateway: the director's,
which reads and changes, and an optional viewer's, which only reads; the
city: its operator's). `BearerRoles.dependency()` gives the FastAPI
dependency that returns the caller's role or answers 401; `require(...)`
one that answers 403 to a role without the right. Tokens are compared in
constant time and never logged."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


class BearerRoles:
    def __init__(self, tokens: Callable[[Request], Mapping[str, str | None]]) -> None:
        """`tokens(request)` gives {role: token or None} (read per request, so
        an app built before its settings, as in tests, still works)."""
        self._tokens = tokens

    def role_of(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
        if credentials is None or not credentials.credentials:
            return None
        given = credentials.credentials.encode()
        found = None
        for role, token in self._tokens(request).items():
            # every role is compared, so the time taken says nothing about which matched
            if token and hmac.compare_digest(given, token.encode()) and found is None:
                found = role
        return found

    def dependency(self) -> Callable[..., str]:
        def role(request: Request, credentials: Credentials) -> str:
            found = self.role_of(request, credentials)
            if found is None:
                raise HTTPException(status_code=401, detail="a valid bearer token is needed",
                                    headers={"WWW-Authenticate": "Bearer"})
            return found

        return role

    def require(self, *roles: str, why: str = "") -> Callable[..., str]:
        base = self.dependency()

        # `= Depends(base)`, not Annotated: under postponed annotations FastAPI
        # resolves an annotation by name in this module, where `base` is not.
        def check(role: str = Depends(base)) -> str:
            if role not in roles:
                raise HTTPException(status_code=403, detail=why or f"this needs the {' or '.join(roles)} role")
            return role

        return check

    def loopback_or(self, *roles: str) -> Callable[..., None]:
        """Health and metrics: open to the machine itself (a local Prometheus,
        systemd), from elsewhere a token of one of `roles`."""
        base = self.dependency()

        def check(request: Request, credentials: Credentials) -> None:
            if is_loopback(request.client.host if request.client else None):
                return
            role = base(request, credentials)
            if role not in roles:
                raise HTTPException(status_code=403, detail=f"this needs the {' or '.join(roles)} role")

        return check


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
