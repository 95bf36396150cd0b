"""`preau gateway --config school.toml`: the gateway and its web API on one
asyncio loop, uvicorn's. FastAPI's lifespan starts the gateway before the
first request and stops it (committing and acknowledging what is pending)
after the last; SIGHUP (`systemctl reload`) reads the configuration again."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from .config import Config, ConfigError
from .gateway import Gateway, GatewayError

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preau gateway", description="Run the Préau school gateway.")
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
            try:
                yield
            finally:
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


if __name__ == "__main__":
    sys.exit(main())
