"""The one way a Préau service talks MQTT: a paho-mqtt client (callback API
v2) with credentials, optional TLS, a Last Will, TCP_NODELAY, reconnection
with capped backoff, and errors translated where they enter.

The client runs on the service's asyncio loop, with no network thread of its
own: paho's socket callbacks register its socket with the loop
(`add_reader`/`add_writer`), and a task calls `loop_misc()` once a second for
keepalives and retries (paho's documented external-loop integration). Only
the TCP/TLS connect, which blocks in `socket.create_connection` and the TLS
handshake, runs in the loop's default executor; paho guards the state it
shares with it by its own locks. Callbacks (`on_up`, `on_down`,
`on_message`) therefore run on the loop, and a service keeps one concurrency
model: its asyncio loop owns all its state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

MISC_PERIOD_S = 1.0
# CONNACK reasons that retrying will not cure (MQTT 5 codes; paho maps the
# 3.1.1 return codes onto them): bad client id, bad credentials, not
# authorised, banned, bad authentication method.
REFUSED_FOR_GOOD = frozenset({133, 134, 135, 138, 140})


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    # A client certificate and its key (the city broker requires one).
    cert_file: str | None = None
    key_file: str | None = None

    def __repr__(self) -> str:  # never a password in a log line or a traceback
        return (f"BrokerConfig(host={self.host!r}, port={self.port}, username={self.username!r}, "
                f"password={'***' if self.password else None}, tls={self.tls}, ca_file={self.ca_file!r}, "
                f"cert_file={self.cert_file!r}, key_file={self.key_file!r})")


class LinkError(RuntimeError):
    """A broker could not be reached, or refused us (bad credentials)."""


def tcp_nodelay(client: mqtt.Client) -> mqtt.Client:
    """For paho clients on their own thread (test tools): send each MQTT
    packet at once. paho writes a packet in more than one send(); with
    Nagle's algorithm on, the second waits for the peer's delayed ACK: 40 ms
    added to every press-to-grant round trip on Linux."""

    def on_socket_open(_client, _userdata, sock) -> None:
        _nodelay(sock)

    client.on_socket_open = on_socket_open
    return client


def _nodelay(sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttLink:
    """A connection to one broker, driven by the running asyncio loop.
    Subclasses override `on_up`, `on_down` and `on_message`; all three run
    on the loop and must not block."""

    name = "broker"

    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        *,
        clean_session: bool = True,
        manual_ack: bool = False,
        reconnect_max_s: float = 30.0,
        keepalive: int = 30,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.broker = broker
        self.keepalive = keepalive
        self.reconnect_max_s = max(1.0, reconnect_max_s)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            manual_ack=manual_ack,
        )
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=broker.ca_file, certfile=broker.cert_file, keyfile=broker.key_file)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_register_write
        self.client.on_socket_unregister_write = self._on_unregister_write
        self.client.connect_async(broker.host, broker.port, keepalive=keepalive)
        self.connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._writing = False
        self._misc: asyncio.Task | None = None
        self._supervisor: asyncio.Task | None = None
        self._connack: asyncio.Future | None = None
        self._lost = asyncio.Event()
        self._closing = False
        self.refused: str | None = None  # the broker's last refusal (credentials, ACL)

    @property
    def where(self) -> str:
        return f"{self.name} {self.broker.host}:{self.broker.port}"

    # subclasses --------------------------------------------------------------

    def on_up(self) -> None:
        """After every successful CONNACK (subscribe, publish a birth here)."""

    def on_down(self) -> None:
        """After the connection is lost."""

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        """Every message received."""

    def on_refused(self, reason: str, permanent: bool) -> None:
        """The broker refused our CONNECT; `permanent` when retrying will not
        cure it (bad client id, bad credentials, not authorised, banned)."""

    # lifecycle ---------------------------------------------------------------

    async def connect(self, attempts: int = 5, first_delay_s: float = 1.0, connack_timeout_s: float = 10.0) -> None:
        """Connect now, retrying with backoff; LinkError if the broker stays
        unreachable or refuses us. Afterwards the link reconnects by itself."""
        self._loop = asyncio.get_running_loop()
        delay = first_delay_s
        for attempt in range(1, attempts + 1):
            try:
                await self._attempt(connack_timeout_s)
                break
            except OSError as e:
                if attempt == attempts:
                    raise LinkError(f"{self.where} unreachable after {attempts} attempts: {e}") from e
                log.warning("%s unreachable (%s), retry in %.0f s", self.where, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)
        if self.refused is not None:
            # Permanent (credentials, ACL): retrying would only hammer the broker.
            await self.close()
            raise LinkError(f"{self.where} refused us: {self.refused}")
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt-{self.name}")

    def connect_in_background(self) -> None:
        """Keep trying to connect for ever (a school's ADSL can be down for
        days); must be called on the loop."""
        self._loop = asyncio.get_running_loop()
        self._lost.set()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt-{self.name}")

    async def _attempt(self, connack_timeout_s: float = 10.0) -> None:
        """One TCP (and TLS) connect off the loop, then the CONNACK on it."""
        assert self._loop is not None
        self._connack = self._loop.create_future()
        self._lost.clear()
        try:
            await self._loop.run_in_executor(None, self.client.reconnect)
        except (ssl.SSLError, mqtt.WebsocketConnectionError, ValueError) as e:
            raise OSError(str(e)) from e
        try:
            await asyncio.wait_for(asyncio.shield(self._connack), connack_timeout_s)
        except TimeoutError:
            self._drop()
            raise OSError(f"no CONNACK within {connack_timeout_s:.0f} s") from None

    async def _supervise(self) -> None:
        """Reconnect after every loss, with backoff from 1 s to reconnect_max_s."""
        delay = 1.0
        while not self._closing:
            await self._lost.wait()
            if self._closing:
                return
            try:
                await self._attempt()
            except OSError as e:
                log.warning("%s unreachable (%s), retry in %.0f s", self.where, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)
                self._lost.set()
                continue
            if self.refused is not None:
                log.error("%s refused us (%s), retry in %.0f s", self.where, self.refused, self.reconnect_max_s)
                self._drop()
                await asyncio.sleep(self.reconnect_max_s)
                self._lost.set()
                continue
            delay = 1.0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def ack(self, msg: mqtt.MQTTMessage) -> None:
        """Acknowledge a QoS 1 message received with manual_ack."""
        if msg.qos > 0 and self.connected:
            self.client.ack(msg.mid, msg.qos)

    async def close(self, goodbye: tuple[str, bytes] | None = None, timeout_s: float = 2.0) -> None:
        """Stop; a clean stop does not fire the Last Will, so `goodbye`
        (topic, payload) is published first, retained, and waited for."""
        self._closing = True
        if goodbye is not None and self.connected:
            info = self.client.publish(goodbye[0], goodbye[1], qos=1, retain=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while not info.is_published() and self.connected and loop.time() < deadline:
                await asyncio.sleep(0.01)
        self.connected = False
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self._drop()
        self._lost.set()

    def _drop(self) -> None:
        """Close the socket now (paho calls on_socket_close)."""
        with contextlib.suppress(Exception):
            self.client._sock_close()

    # paho callbacks (on the loop, except socket_open/close during a connect) --

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.error("%s refused the connection: %s", self.where, reason_code)
            try:
                self.on_refused(self.refused, reason_code.value in REFUSED_FOR_GOOD)
            except Exception:
                log.exception("%s: on_refused failed", self.where)
        else:
            self.refused = None
            self.connected = True
            log.info("%s connected", self.where)
            try:
                self.on_up()
            except Exception:
                log.exception("%s: on_up failed", self.where)
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(None)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if was:
            if not self._closing:
                log.warning("%s connection lost (%s); reconnecting", self.where, reason_code)
            try:
                self.on_down()
            except Exception:
                log.exception("%s: on_down failed", self.where)
        if not self._closing:
            self._lost.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self.on_message(msg)
        except Exception:  # one message must never take the link down
            log.exception("%s: error handling a message on %r", self.where, getattr(msg, "_topic", b""))

    def _in_loop(self, fn, *args) -> None:
        assert self._loop is not None
        if _on_loop_thread(self._loop):
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client, userdata, sock) -> None:
        _nodelay(sock)
        self._in_loop(self._watch, sock, sock.fileno())

    def _on_socket_close(self, client, userdata, sock) -> None:
        self._in_loop(self._unwatch)

    def _on_register_write(self, client, userdata, sock) -> None:
        self._in_loop(self._want_write, True)

    def _on_unregister_write(self, client, userdata, sock) -> None:
        self._in_loop(self._want_write, False)

    def _watch(self, sock, fd: int) -> None:
        assert self._loop is not None
        self._unwatch()
        self._fd = fd
        self._loop.add_reader(fd, self._readable, sock)
        self._misc = self._loop.create_task(self._misc_loop(), name=f"mqtt-misc-{self.name}")
        if self.client.want_write():
            self._want_write(True)

    def _unwatch(self) -> None:
        assert self._loop is not None
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
            self._fd = None
        self._writing = False
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _want_write(self, on: bool) -> None:
        assert self._loop is not None
        if self._fd is None or on == self._writing:
            return
        self._writing = on
        if on:
            self._loop.add_writer(self._fd, self.client.loop_write)
        else:
            self._loop.remove_writer(self._fd)

    def _readable(self, sock) -> None:
        self.client.loop_read()
        # TLS: a record may hold more than one MQTT packet; what paho has not
        # read yet sits in the SSL object, where the selector cannot see it.
        if isinstance(sock, ssl.SSLSocket) and self._fd is not None and sock.pending():
            assert self._loop is not None
            self._loop.call_soon(self._readable, sock)

    async def _misc_loop(self) -> None:
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(MISC_PERIOD_S)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


