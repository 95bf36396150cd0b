"""The gateway's connection to its school broker (Mosquitto on the Pi).

paho's network thread only hands each message over: SQLite commits (with an
fsync) and decisions happen on the gateway's single worker thread, so a slow
SD card never stalls keepalives or the other rooms' traffic, and one thread
owns the history. The worker acknowledges a board's QoS 1 message (manual ack)
after the record is committed: a gateway killed in between gets the message
again from its persistent session, and deduplication drops the repeat."""

from __future__ import annotations

import logging
from typing import Callable

import paho.mqtt.client as mqtt

from protocol.codec import encode, topic

from . import VERSION
from .config import Config
from common.mqtt import MqttLink

log = logging.getLogger(__name__)

BOARD_LEAVES = ("state", "evt", "ack", "tele")


class SchoolLink(MqttLink):
    name = "school broker"

    def __init__(self, config: Config, deliver: Callable[[mqtt.MQTTMessage], None], *, reconnect_max_s: float = 30.0,
                 on_connected: Callable[[], None] | None = None) -> None:
        # clean_session=False: the broker keeps our subscriptions and queues the boards'
        # QoS 1 messages while the gateway restarts.
        super().__init__(
            config.school_broker,
            client_id=f"preau-{config.gateway_id}",
            clean_session=False,
            manual_ack=True,
            reconnect_max_s=reconnect_max_s,
        )
        self.config = config
        self._deliver = deliver
        self._on_connected = on_connected
        self.state_topic = topic(config.school, "gateway", "state")
        self.client.will_set(self.state_topic, self._gateway_state(False), qos=1, retain=True)

    def _gateway_state(self, online: bool) -> bytes:
        body = {"v": 1, "online": online, "gateway": self.config.gateway_id}
        if online:
            body["fw"] = VERSION
        return encode(body)

    def on_up(self) -> None:
        school = self.config.school
        self.client.subscribe([(topic(school, "+", leaf), 1) for leaf in BOARD_LEAVES])
        self.client.publish(self.state_topic, self._gateway_state(True), qos=1, retain=True)
        if self._on_connected is not None:
            self._on_connected()  # the worker (re)publishes the rooms' offline policies

    def publish_policy(self, room: str, payload: bytes) -> bool:
        """The room's retained offline policy (docs/protocol.md)."""
        return self.publish(topic(self.config.school, room, "policy"), payload, qos=1, retain=True)

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        self._deliver(msg)

    def ack(self, msg: mqtt.MQTTMessage) -> None:
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    def send_cmd(self, room: str, cmd: dict) -> bool:
        return self.publish(topic(self.config.school, room, "cmd"), encode(cmd), qos=1)

    def stop(self) -> None:
        self.say_goodbye(self.state_topic, self._gateway_state(False))
        self.close()
