"""`preau gateway --config school.toml`: the gateway and its web API on one
asyncio loop, uvicorn's. FastAPI's lifespan starts the gateway before the
first request and stops it (committing and acknowledging what is pending)
after the last; SIGHUP (`systemctl reload`) reads the configuration again.

Under systemd (`Type=notify`, `WatchdogSec=`, edge_gateway/install.py) it
says READY=1 once it listens, WATCHDOG=1 from its loop while the loop, the
journal's thread and the ticks run, and a STATUS line; nothing when
NOTIFY_SOCKET is not set.

    preau gateway install ...   the systemd units and files (edge_gateway/install.py)
    preau gateway backup ...    a safe copy of the database (edge_gateway/backup.py)
    preau gateway clock ...     is the clock synchronised? (edge_gateway/clocksync.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping

from .config import Config, ConfigError
from .gateway import Gateway, GatewayError

log = logging.getLogger(__name__)

SUBCOMMANDS = ("install", "backup", "clock")


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """systemd's notification protocol (sd_notify(3)): one datagram to the
    socket in $NOTIFY_SOCKET (a path, or @ for the abstract namespace).
    False, and nothing sent, when systemd did not ask."""
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as e:
        log.warning("systemd notification %r not sent: %s", state.split("\n")[0], e)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Half of systemd's WatchdogSec= (the interval sd_watchdog_enabled(3)
    advises), when the watchdog is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def status_line(gateway: Gateway) -> str:
    h = gateway.health()
    clock = "clock synchronised" if h["clock_synced"] else "CLOCK NOT SYNCHRONISED: lessons refused"
    school = "school broker up" if h["school_broker"] else "school broker DOWN"
    return f"{len(gateway.config.rooms)} rooms; {school}; {clock}; outbox {h['outbox']}; database {h['database']}"


async def tell_systemd(gateway: Gateway, started: asyncio.Event, environ: Mapping[str, str] = os.environ) -> None:
    """READY=1 once the API listens, then WATCHDOG=1 every half WatchdogSec
    while the gateway's loop (this task runs on it), its journal's thread
    and its ticks are alive; a hung loop or a dead thread stops the pings
    and systemd restarts the service. STATUS= whenever it changes."""
    if not environ.get("NOTIFY_SOCKET"):
        return
    await started.wait()
    status = status_line(gateway)
    sd_notify(f"READY=1\nSTATUS={status}", environ)
    interval = watchdog_interval(environ)
    while True:
        await asyncio.sleep(interval or 5.0)
        message = []
        if interval and gateway.alive:
            message.append("WATCHDOG=1")
        now = status_line(gateway)
        if now != status:
            status = now
            message.append(f"STATUS={status}")
        if message:
            sd_notify("\n".join(message), environ)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="preau gateway", description="Run the Préau school gateway. Also: "
                                     "`preau gateway install|backup|clock --help`.")
    parser.add_argument("--config", required=True, help="the school's TOML configuration file")
    parser.add_argument("--bind", help="host:port for the web API (default: http.bind from the config)")
    parser.add_argument("--connect-attempts", type=int, default=5, metavar="N",
                        help="tries to reach the school broker before giving up (default 5, backoff from 1 s)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = Config.load(args.config)
        from .api import ApiSettings, create_app

        settings = ApiSettings.from_config(config, os.environ, config_path=args.config)
        bind = args.bind or config.http_bind
        host, _, port = bind.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"--bind: expected host:port, got {bind!r}")
        gateway = Gateway(config, connect_attempts=max(1, args.connect_attempts))
        gateway.config_path = args.config
        app = create_app(gateway, settings)
        failure: list[BaseException] = []

        @contextlib.asynccontextmanager
        async def lifespan(_app):
            try:
                await gateway.astart()
            except GatewayError as e:
                failure.append(e)
                raise
            loop = asyncio.get_running_loop()

            def on_sighup() -> None:
                async def reload() -> None:
                    with contextlib.suppress(ConfigError):
                        await gateway.reload(args.config, who="systemd")

                loop.create_task(reload())

            loop.add_signal_handler(signal.SIGHUP, on_sighup)
            listening = asyncio.Event()
            systemd = loop.create_task(tell_systemd(gateway, listening), name="gateway-systemd")
            ready = loop.create_task(_when_listening(server, listening), name="gateway-listening")
            try:
                yield
            finally:
                sd_notify("STOPPING=1")
                systemd.cancel()
                ready.cancel()
                loop.remove_signal_handler(signal.SIGHUP)
                await gateway.astop()

        app.router.lifespan_context = lifespan

        import uvicorn

        # uvicorn handles SIGTERM/SIGINT (systemd stop): the lifespan's exit runs, then run() returns.
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_level=args.log_level.lower(),
                                               lifespan="on"))
        try:
            server.run()
        except SystemExit:  # uvicorn exits (3) when the lifespan's start fails
            if not failure:
                raise
        if failure:
            raise failure[0]
        return 0 if server.started else 1
    except (ConfigError, GatewayError) as e:
        print(f"preau gateway: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    except OSError as e:  # database folder missing, port taken...
        print(f"preau gateway: {e}", file=sys.stderr)
        return 1


async def _when_listening(server, listening: asyncio.Event) -> None:
    # uvicorn binds its socket after the lifespan's start: ready means both.
    while not server.started:
        await asyncio.sleep(0.05)
    listening.set()


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "install":
        from .install import main as run
    elif name == "backup":
        from .backup import main as run
    else:
        from .clocksync import main as run
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
