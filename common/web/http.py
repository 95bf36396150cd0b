"""What every page-serving app adds around its routes: the security
headers (no inline script, no frame, nothing from elsewhere: every asset
is the package's) and a bound on request bodies."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse

# The largest request body of a form: a few hundred bytes. uvicorn sets no
# limit, and a handler reads its whole body into memory.
BODY_MAX = 16 * 1024


class BodyLimit:
    """413 for a request body beyond `limit` bytes, announced or streamed."""

    def __init__(self, app, limit: int = BODY_MAX) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await JSONResponse({"detail": f"request body larger than {self.limit} bytes"}, status_code=413)(
                scope, receive, send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # chunked: FastAPI turns this into the 413 answer
                raise HTTPException(status_code=413, detail=f"request body larger than {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    """Pages and answers that a browser shows: no inline script, no frame,
    nothing from elsewhere (every asset is the package's)."""

    HEADERS = [(b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                            b"img-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                                            b"form-action 'self'; base-uri 'none'"),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
               (b"x-frame-options", b"DENY")]

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)
