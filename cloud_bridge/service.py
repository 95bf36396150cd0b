"""The city service: ingest + store + HTTP API in one process, started and
stopped as threads so a demo or a test can embed it. `main` is the CLI
(`preau city ...`, or `python -m cloud_bridge`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Callable


from common.http import HttpError, HttpThread

from .api import create_app
from .errors import CityError, ConfigError
from .ingest import Ingest
from .metrics import Metrics
from .settings import MQTT_PASSWORD_ENV, TOKEN_ENV, CitySettings, split_host_port
from .store import Store

log = logging.getLogger(__name__)



class CityService:
    def __init__(self, settings: CitySettings, now: Callable[[], float] = time.time):
        self.settings = settings.check()
        self.now = now
        self.metrics = Metrics()
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.http_port: int | None = None
        self._http: HttpThread | None = None
        self._url = ""

    @property
    def url(self) -> str:
        return self._url

    def start(self) -> "CityService":
        try:
            self.store = Store(self.settings.db_path)
            app = create_app(self.store, self.settings, self.metrics)
            self._start_http(app)
            self.ingest = Ingest(self.settings, self.store, self.metrics, self.now)
            self.ingest.start()
        except BaseException:
            self.stop()
            raise
        log.info("city service: API on %s, broker %s:%s, database %s", self.url,
                 self.settings.broker_host, self.settings.broker_port, self.settings.db_path)
        return self

    def _start_http(self, app) -> None:
        try:
            self._http = HttpThread(app, self.settings.http_host, self.settings.http_port, name="city-http")
        except HttpError as e:
            raise CityError(str(e)) from None
        self.http_port = self._http.port
        self._url = self._http.url  # kept after stop(): the demo prints it

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self.ingest:
            self.ingest.stop()
            self.ingest = None
        if self.store:
            self.store.close()
            self.store = None

    def wait(self, stop: threading.Event) -> None:
        """Block until `stop` is set; raise if the broker refuses us for good."""
        while not stop.wait(0.5):
            if self.ingest and self.ingest.failed:
                raise self.ingest.failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="preau city",
        description="Run the city service: ingest the schools' batches from the city broker, "
                    f"store them, serve the supervision API. The API token comes from ${TOKEN_ENV} "
                    f"(required), the MQTT password from ${MQTT_PASSWORD_ENV}.",
    )
    parser.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT", help="city MQTT broker")
    parser.add_argument("--db", default="preau-city.db", metavar="PATH", help="SQLite database file")
    parser.add_argument("--http", default="127.0.0.1:8081", metavar="HOST:PORT", help="where the API listens")
    parser.add_argument("--username", help="MQTT username")
    parser.add_argument("--client-id", default="preau-city", help="MQTT client id (unique per worker)")
    parser.add_argument("--share-group", help="MQTT shared-subscription group, to split batches between workers")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> CitySettings:
    broker_host, broker_port = split_host_port(args.broker, "--broker")
    http_host, http_port = split_host_port(args.http, "--http")
    return CitySettings.from_env(
        broker_host=broker_host, broker_port=broker_port, http_host=http_host, http_port=http_port,
        db_path=args.db, username=args.username, client_id=args.client_id, share_group=args.share_group,
    ).check()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    service = None
    handlers = {}
    try:
        service = CityService(settings_from_args(args))
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, lambda *_: stop.set())
        service.start()
        service.wait(stop)
        return 0
    except ConfigError as e:
        print(f"preau city: configuration error: {e}", file=sys.stderr)
        return 2
    except CityError as e:
        print(f"preau city: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if service:
            service.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
