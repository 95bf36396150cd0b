"""A FastAPI app served by uvicorn in a thread, for services that embed
their web API next to MQTT threads (the city service, the demo)."""

from __future__ import annotations

import threading
import time

import uvicorn

START_TIMEOUT_S = 15.0


class HttpError(RuntimeError):
    pass


class HttpThread:
    """Binds its socket first (so `port` is the real one, port 0 included),
    then runs uvicorn in a daemon thread; `stop()` ends it."""

    def __init__(self, app, host: str, port: int, *, any_port_if_taken: bool = False, name: str = "http") -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        try:
            sock = config.bind_socket()
        except (OSError, SystemExit) as e:  # uvicorn exits when it cannot bind
            if not any_port_if_taken or port == 0:
                raise HttpError(f"cannot listen on {host}:{port}: {e}") from None
            config = uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False, lifespan="off")
            sock = config.bind_socket()
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise HttpError(f"the HTTP server on {host}:{self.port} did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
