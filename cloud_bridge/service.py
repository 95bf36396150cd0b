"""The city service: ingest, store and HTTP API on one asyncio loop.

In production `main` (`preau city ...`, or `python -m cloud_bridge`) runs
uvicorn as the server, in the main thread: the FastAPI app's lifespan starts
the ingest (the MQTT link, on the same loop) and stops it; SQLite writes go
to the ingest's one writer thread, reads to uvicorn's worker threads.

`CityService` is a small synchronous wrapper for tests and devkit tools
(the demo), which run the city beside other code: `start()` runs the same
server on its own loop in a thread, `stop()` ends it. Production never uses
it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .api import create_app
from .ca import CAError
from .errors import CityError, CitySettingsError
from .ingest import Ingest
from .metrics import Metrics
from .register import GatewayRegister
from .settings import DATABASE_URL_ENV, MQTT_PASSWORD_ENV, TOKEN_ENV, CitySettings, split_host_port
from .store import CityStore, StoreReadError
from .web import install as install_pages

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


@dataclass
class City:
    """One city worker's parts, wired: the app's lifespan runs the ingest."""

    settings: CitySettings
    store: CityStore
    metrics: Metrics
    ingest: Ingest
    app: FastAPI

    @classmethod
    def open(cls, settings: CitySettings, now: Callable[[], float] = time.time,
             metrics: Metrics | None = None) -> City:
        """Check the settings and open the database (blocking: before the loop
        runs). CitySettingsError, StoreError: the city cannot run."""
        settings.check()
        register = None
        if settings.gateways is not None:
            try:
                register = GatewayRegister(settings.gateways)
            except CAError as e:
                raise CitySettingsError(f"gateway register (--gateways): {e}") from None
        else:
            log.warning("no gateway register (--gateways): batches' gateway ids are not checked against the "
                        "city CA's certificates")
        store = CityStore(settings.db_path, url=settings.database_url)
        metrics = metrics or Metrics()
        metrics.watch_gateways(lambda: gateways_online(store))
        ingest = Ingest(settings, store, metrics, now, register=register)
        app = create_app(store, settings, metrics, ingest=ingest)
        try:
            install_pages(app, store, settings)  # the supervision pages, their accounts, the alerts
        except BaseException:
            store.close()
            raise
        return cls(settings, store, metrics, ingest, app)

    def listen(self) -> socket.socket:
        """The API's socket, bound now, so that port 0 gives the real port and
        a taken port is a clear error before anything starts."""
        host, port = self.settings.http_host, self.settings.http_port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as e:
            raise CityError(f"cannot listen on {host}:{port}: {e}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as e:
            sock.close()
            raise CityError(f"cannot listen on {host}:{port}: {e}") from None
        return sock

    def server(self, log_level: str = "info") -> uvicorn.Server:
        """uvicorn serving the app; it stops if the broker refuses us for good."""
        config = uvicorn.Config(self.app, lifespan="on", log_level=log_level.lower(), access_log=False,
                                log_config=None)
        server = uvicorn.Server(config)

        def refused(_error: Exception) -> None:
            server.should_exit = True

        self.ingest.on_fatal = refused
        return server

    def close(self) -> None:
        self.store.close()


def gateways_online(store: CityStore) -> int | None:
    """How many schools' gateways are online, as the pages show them (the
    gateway's last state message, or its Last Will); None when the
    database cannot be read now."""
    try:
        return sum(1 for school in store.status()["schools"] if school["online"])
    except StoreReadError:
        return None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class CityService:
    """The city in a background thread, for tests and devkit only."""

    def __init__(self, settings: CitySettings, now: Callable[[], float] = time.time):
        self.settings = settings.check()
        self.now = now
        self.metrics = Metrics()
        self.city: City | None = None
        self.http_port: int | None = None
        self._url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None

    @property
    def url(self) -> str:
        return self._url  # kept after stop(): the demo prints it

    @property
    def store(self) -> CityStore | None:
        return self.city.store if self.city else None

    @property
    def ready(self) -> bool:
        """Connected to the city broker and subscribed."""
        return self.city is not None and self.city.ingest.ready

    @property
    def failed(self) -> CityError | None:
        """The broker's refusal that stopped the service, if any."""
        return self.city.ingest.failed if self.city else None

    def start(self) -> CityService:
        self.city = City.open(self.settings, self.now, self.metrics)
        try:
            sock = self.city.listen()
            self.http_port = sock.getsockname()[1]
            self._url = url_of(sock)
            server = self._server = self.city.server(log_level="warning")
            self._thread = threading.Thread(target=self._run, args=(server, sock), name="city", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + START_TIMEOUT_S
            while not server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise CityError(f"the city service did not start ({self._crash or 'timeout'})")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as e:  # uvicorn exits (SystemExit) when the lifespan fails
            self._crash = e
            log.exception("city service thread ended")
        finally:
            sock.close()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until connected and subscribed (or refused, or timed out)."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            if self.failed is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self._server = None
        if self.city is not None:
            self.city.close()
            self.city = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="preau city",
        description="Run the city service: ingest the schools' batches from the city broker, "
                    f"store them, serve the supervision API. The API token comes from ${TOKEN_ENV} "
                    f"(required), the MQTT password from ${MQTT_PASSWORD_ENV}.",
    )
    parser.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT", help="city MQTT broker")
    parser.add_argument("--db", default="preau-city.db", metavar="PATH",
                        help=f"SQLite database file (PostgreSQL: set ${DATABASE_URL_ENV} instead)")
    parser.add_argument("--http", default="127.0.0.1:8081", metavar="HOST:PORT", help="where the API listens")
    parser.add_argument("--username", help="MQTT username")
    parser.add_argument("--client-id", default="preau-city", help="MQTT client id (unique per worker)")
    parser.add_argument("--share-group", help="MQTT shared-subscription group, to split batches between workers")
    tls = parser.add_argument_group(
        "TLS to the city broker", "paths only: the key stays in its file (mode 0600), never on the command line")
    tls.add_argument("--ca-file", help="the city CA's certificate (ca.pem); implies TLS")
    tls.add_argument("--cert-file", help="this worker's certificate (`preau city-ca issue-worker`)")
    tls.add_argument("--key-file", help="this worker's private key")
    tls.add_argument("--tls", action="store_true", help="TLS with the system's CAs (no --ca-file)")
    parser.add_argument("--gateways", metavar="INDEX",
                        help="the city CA's index.json (or a copy): refuse batches from a gateway the CA "
                             "did not certify for that school")
    parser.add_argument("--telemetry-days", type=float, default=CitySettings.telemetry_retention_days,
                        metavar="DAYS", help="how long telemetry is kept")
    parser.add_argument("--gap-after", type=float, default=CitySettings.gap_after_s, metavar="SECONDS",
                        help="ask a gateway for missing records after they have been missing this long")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> CitySettings:
    broker_host, broker_port = split_host_port(args.broker, "--broker")
    http_host, http_port = split_host_port(args.http, "--http")
    return CitySettings.from_env(
        broker_host=broker_host, broker_port=broker_port, http_host=http_host, http_port=http_port,
        db_path=args.db, username=args.username, client_id=args.client_id, share_group=args.share_group,
        tls=args.tls, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file, gateways=args.gateways,
        telemetry_retention_days=args.telemetry_days, gap_after_s=args.gap_after,
    ).check()


class _Terminated(Exception):
    """SIGTERM: stop as on Ctrl-C (uvicorn shuts down cleanly, then raises it again)."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    city = None
    previous = None
    if threading.current_thread() is threading.main_thread():
        # While uvicorn serves, its own handlers take SIGINT and SIGTERM and
        # shut down cleanly; they are raised again afterwards, here.
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        city = City.open(settings_from_args(args))
        sock = city.listen()
        server = city.server(log_level=args.log_level)
        log.info("city service: API on %s, broker %s:%s, database %s", url_of(sock),
                 city.settings.broker_host, city.settings.broker_port, city.store.shown)
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except SystemExit:
            # uvicorn exits when the app's lifespan fails; it has logged why.
            print("preau city: the service could not start (see the log above)", file=sys.stderr)
            return 1
        if city.ingest.failed is not None:
            print(f"preau city: {city.ingest.failed}", file=sys.stderr)
            return 1
        return 0
    except CitySettingsError as e:
        print(f"preau city: configuration error: {e}", file=sys.stderr)
        return 2
    except CityError as e:
        print(f"preau city: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Terminated):
        return 0
    finally:
        if city is not None:
            city.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
