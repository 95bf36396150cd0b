"""Step 6's witness: the gateway's own API (GET /api/rooms) says when the
board's birth has arrived. The flasher does not connect to the school broker
itself: the broker takes the username as the client id, so a second
connection with the gateway's identity would push the gateway off it.

The token comes from the environment (PREAU_GATEWAY_VIEWER_TOKEN, else
PREAU_GATEWAY_TOKEN), else from the school's configuration, as the gateway
takes it; it is never printed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

from ..api import TOKEN_ENV, VIEWER_TOKEN_ENV
from ..config import Config
from .errors import GatewayUnreachable

UNREACHABLE_FIX = ("start the gateway (systemctl start preau-gateway) and check http.bind in the school's "
                   "configuration; or flash without the check with --no-wait")


class GatewayApi:
    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self._token = token

    def __repr__(self) -> str:
        return f"GatewayApi({self.base!r}, ***)"

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str]) -> GatewayApi:
        host, _, port = config.http_bind.rpartition(":")
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        token = (environ.get(VIEWER_TOKEN_ENV) or environ.get(TOKEN_ENV) or config.http_viewer_token
                 or config.http_token)
        if not token:
            raise GatewayUnreachable("no token to ask the gateway whether the board is online",
                                     f"export {VIEWER_TOKEN_ENV} (the gateway's viewer token), or flash without "
                                     "the check with --no-wait")
        return cls(f"http://{host}:{port}", token)

    def room(self, room: str, timeout: float = 5.0) -> dict | None:
        request = urllib.request.Request(self.base + "/api/rooms",
                                         headers={"Authorization": f"Bearer {self._token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                rooms = json.loads(reply.read())
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise GatewayUnreachable(f"the gateway at {self.base} refused the token (HTTP {e.code})",
                                         f"export the gateway's token in {VIEWER_TOKEN_ENV}") from None
            raise GatewayUnreachable(f"the gateway at {self.base} answered HTTP {e.code}", UNREACHABLE_FIX) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise GatewayUnreachable(f"the gateway is not reachable at {self.base} ({reason})", UNREACHABLE_FIX) from None
        return next((r for r in rooms if r.get("room") == room), None)

    def wait_birth(self, room: str, before: dict | None, wait_s: float,
                   clock: Callable[[], float] = time.monotonic, pause: Callable[[float], None] = time.sleep) -> dict:
        """The room's state once a birth newer than `before` has arrived."""
        seen = (before or {}).get("boot"), (before or {}).get("last_seen")
        deadline = clock() + wait_s
        while True:
            try:
                state = self.room(room)
            except GatewayUnreachable:
                state = None  # a restarting gateway: go on asking until the deadline
            if state and state.get("online") and (state.get("boot"), state.get("last_seen")) != seen:
                return state
            if clock() > deadline:
                raise GatewayUnreachable(
                    f"no birth from room {room} reached the gateway within {wait_s:.0f} s of the reset",
                    "check the board's network cable (its link LED) and that its broker address in config.json is "
                    "the one boards reach the gateway at (preau provision --broker-host); `mpremote repl` shows "
                    "what the board says at boot")
            pause(0.5)
