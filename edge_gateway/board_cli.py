"""`preau board`: a technician's commands to one classroom board, through
the running gateway's API (never a second MQTT connection: on the school
broker a client's id is its username, so one more connection as the gateway
would push the gateway off).

    preau board --config school.toml identify cm2-b [--seconds 10]   its LED blinks
    preau board --config school.toml end cm2-b                       its session ends
    preau board --config school.toml reboot cm2-b                    it restarts

The director's token comes from PREAU_GATEWAY_TOKEN (never the command
line). The command waits for the board's acknowledgement (`--wait`, 10 s)
and says what became of it; a board offline gets the command when it comes
back."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

from .api import TOKEN_ENV
from .config import Config, ConfigError

ACTIONS = ("identify", "end", "reboot")


class BoardCommandError(RuntimeError):
    pass


def _url(config: Config) -> str:
    host, _, port = config.http_bind.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"  # the API on every address: this Pi's own is one of them
    return f"http://{host}:{port}"


def _call(method: str, url: str, token: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read() or b"{}")
        except ValueError:
            detail = {}
        return e.code, detail
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BoardCommandError(f"the gateway's API at {url} does not answer ({reason}): is `preau gateway` "
                                "running, and http.bind right?") from None


def run(config: Config, action: str, room: str, token: str, seconds: int = 10, wait_s: float = 10.0,
        base_url: str | None = None, out=print) -> int:
    base = base_url or _url(config)
    if room not in config.rooms:
        raise BoardCommandError(f"room {room!r} is not in {config.source} (rooms: {', '.join(config.rooms)})")
    status, sent = _call("POST", f"{base}/api/rooms/{room}/board/{action}", token,
                         {"who": "technicien", "seconds": seconds} if action == "identify" else {"who": "technicien"})
    if status in (401, 403):
        raise BoardCommandError(f"the gateway refused the token ({status}): set {TOKEN_ENV} to the director's token")
    if status != 202:
        raise BoardCommandError(f"the gateway refused the command ({status}): {sent.get('detail', sent)}")
    out(f"{action} sent to {room} (command {sent['id']})"
        + ("" if sent["online"] else "; the board is offline: it gets the command when it comes back"))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status, result = _call("GET", f"{base}/api/rooms/{room}/board/commands/{sent['id']}", token)
        if status == 200 and result.get("acked"):
            if result.get("ok"):
                out(f"{room}: done ({result.get('result')})")
                return 0
            out(f"{room}: the board refused it ({result.get('result')})")
            return 1
        time.sleep(0.2)
    out(f"{room}: no acknowledgement within {wait_s:.0f} s (the board may be offline or busy); "
        "the command stays queued at the broker")
    return 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="preau board", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the school's TOML configuration file")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("room")
    p.add_argument("--seconds", type=int, default=10, help="identify: how long the LED blinks (1-60)")
    p.add_argument("--wait", type=float, default=10.0, metavar="S", help="how long to wait for the board's ack")
    p.add_argument("--url", help="the gateway's API (default: from http.bind)")
    args = p.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    try:
        if not token:
            raise BoardCommandError(f"no token: set {TOKEN_ENV} to the director's token (never on the command line)")
        if not 1 <= args.seconds <= 60:
            raise BoardCommandError("--seconds: 1 to 60")
        config = Config.load(args.config)
        return run(config, args.action, args.room, token, args.seconds, args.wait, args.url)
    except (ConfigError, BoardCommandError) as e:
        print(f"preau board: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
