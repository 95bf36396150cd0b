"""Start MQTT brokers on loopback: an in-process amqtt (the demo's embedded
default) or a Mosquitto process (what a school gateway runs in production).
Tests use both, so every client is proven against two implementations."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise BrokerError(f"broker on {host}:{port} did not start within {timeout:.0f} s") from e
            time.sleep(0.05)


def amqtt_config(port: int) -> dict:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "timeout_disconnect_delay": 0,
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


async def start_amqtt(port: int | None = None):
    """Start an amqtt broker in the running loop; returns (broker, port)."""
    from amqtt.broker import Broker

    # amqtt logs every packet at INFO; keep the demo and test output readable.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    port = port or free_port()
    broker = Broker(amqtt_config(port))
    await broker.start()
    return broker, port


@dataclass
class ThreadedAmqtt:
    """amqtt in its own thread and loop, for synchronous tests and tools."""

    port: int = 0
    host: str = "127.0.0.1"
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _broker: object = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def start(self) -> ThreadedAmqtt:
        self.port = self.port or free_port()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._broker, _ = loop.run_until_complete(start_amqtt(self.port))
            except BaseException as e:  # reported to the starting thread
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self._broker.shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"amqtt-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(15)
        if self._error:
            raise BrokerError(f"amqtt failed to start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@dataclass
class Mosquitto:
    """A Mosquitto process on a free loopback port. By default an open
    broker with a test configuration (for tests of what an open broker
    does); with `config_file`, a configuration written beforehand (the
    generated, locked-down ones: edge_gateway/broker_files.py and
    cloud_bridge's), which must listen on `port`."""

    port: int = 0
    host: str = "127.0.0.1"
    extra_config: str = ""
    config_file: str | None = None
    proc: subprocess.Popen | None = None
    workdir: str = ""

    @staticmethod
    def binary() -> str:
        for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
            if candidate and os.path.exists(candidate):
                return candidate
        raise BrokerError("mosquitto not found: install it with `apt-get install -y mosquitto` (scripts/dev.sh does)")

    def start(self) -> Mosquitto:
        self.port = self.port or free_port()
        if not self.workdir:
            self.workdir = tempfile.mkdtemp(prefix="preau-mosq-")
        os.makedirs(self.workdir, exist_ok=True)
        conf = self.config_file or os.path.join(self.workdir, "mosquitto.conf")
        if self.config_file is None:
            with open(conf, "w") as f:
                f.write(
                    f"listener {self.port} 127.0.0.1\n"
                    "allow_anonymous true\n"
                    "persistence false\n"
                    "log_dest stderr\n"
                    "log_type error\n"
                    "log_type warning\n"
                    "max_queued_messages 100000\n"
                    # The gateway acknowledges a board's QoS 1 message once it is on
                    # disk; during a slow commit, Mosquitto's default of 20 messages
                    # in flight per client would hold back the other rooms' requests.
                    "max_inflight_messages 1000\n"
                    "set_tcp_nodelay true\n"
                    + self.extra_config
                )
        with open(os.path.join(self.workdir, "mosquitto.log"), "a") as log_file:
            self.proc = subprocess.Popen([self.binary(), "-c", conf], stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            wait_port(self.host, self.port)
        except BrokerError:
            self.stop()
            raise BrokerError(f"mosquitto did not start: {self.log_tail()}") from None
        return self

    def log_tail(self, chars: int = 2000) -> str:
        try:
            with open(os.path.join(self.workdir, "mosquitto.log")) as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password file, ACL and CRL again,
        keeping its clients connected."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL: no chance to save its persistence file."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port (broker-restart tests)."""
        self.stop()
        self.start()
