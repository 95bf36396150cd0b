"""What the school link and the city link share: a paho-mqtt client
(callback API v2) with credentials, optional TLS, a Last Will, reconnection
with capped backoff, and errors translated where they enter."""

from __future__ import annotations

import contextlib

import logging
from dataclasses import dataclass
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion



def tcp_nodelay(client: mqtt.Client) -> mqtt.Client:
    """Send each MQTT packet at once. paho writes a packet in more than one
    send(); with Nagle's algorithm on, the second waits for the peer's delayed
    ACK: 40 ms added to every press-to-grant round trip on Linux."""

    def on_socket_open(_client, _userdata, sock) -> None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = on_socket_open
    return client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None


class LinkError(RuntimeError):
    """A broker could not be reached, or refused us (bad credentials)."""


class MqttLink:
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
    ) -> None:
        self.broker = broker
        self.keepalive = keepalive
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            manual_ack=manual_ack,
        )
        tcp_nodelay(self.client)
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=broker.ca_file)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(reconnect_max_s)))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._connack = threading.Event()
        self._connack_failure: str | None = None
        self.connected = False

    # subclasses --------------------------------------------------------------

    def on_up(self) -> None:
        """Called on paho's thread after every successful CONNACK."""

    def on_down(self) -> None:
        """Called on paho's thread after the connection is lost."""

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        """Called on paho's thread; must not block for long."""

    # paho callbacks ----------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connack_failure = str(reason_code)
            log.error("%s %s:%s refused the connection: %s", self.name, self.broker.host, self.broker.port, reason_code)
            self._connack.set()
            return
        self._connack_failure = None
        self.connected = True
        log.info("%s %s:%s connected", self.name, self.broker.host, self.broker.port)
        try:
            self.on_up()
        finally:
            self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if was:
            log.warning("%s %s:%s connection lost (%s); reconnecting", self.name, self.broker.host, self.broker.port, reason_code)
            self.on_down()

    def _on_message(self, client, userdata, msg) -> None:
        self.on_message(msg)

    # lifecycle ---------------------------------------------------------------

    def connect(self, attempts: int = 5, first_delay_s: float = 1.0, connack_timeout_s: float = 10.0) -> None:
        """Connect now, retrying with backoff; LinkError if the broker stays unreachable
        or refuses us. Afterwards paho reconnects by itself."""
        delay = first_delay_s
        for attempt in range(1, attempts + 1):
            try:
                self.client.connect(self.broker.host, self.broker.port, keepalive=self.keepalive)
                break
            except OSError as e:
                if attempt == attempts:
                    raise LinkError(
                        f"{self.name} {self.broker.host}:{self.broker.port} unreachable after {attempts} attempts: {e}"
                    ) from e
                log.warning("%s %s:%s unreachable (%s), retry in %.0f s", self.name, self.broker.host, self.broker.port, e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)
        self.client.loop_start()
        if not self._connack.wait(connack_timeout_s):
            self.close()
            raise LinkError(f"{self.name} {self.broker.host}:{self.broker.port}: no CONNACK within {connack_timeout_s:.0f} s")
        if self._connack_failure:
            self.close()
            # Permanent (credentials, ACL): retrying would only hammer the broker.
            raise LinkError(f"{self.name} {self.broker.host}:{self.broker.port} refused us: {self._connack_failure}")

    def connect_in_background(self) -> None:
        """Start trying to connect and keep trying forever (a school's ADSL can be down for days)."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.keepalive)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def say_goodbye(self, topic: str, payload: bytes, timeout_s: float = 2.0) -> None:
        """A clean stop does not fire the Last Will: publish the death ourselves."""
        if not self.connected:
            return
        info = self.client.publish(topic, payload, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as e:
            log.debug("%s: goodbye not confirmed: %s", self.name, e)

    def close(self) -> None:
        self.connected = False
        self.client.disconnect()
        self.client.loop_stop()
