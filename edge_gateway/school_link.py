"""The gateway's connection to its school broker (Mosquitto on the Pi).

A persistent session (clean_session=False) with manual acknowledgement: the
broker keeps the boards' QoS 1 messages while the gateway restarts, and the
gateway acknowledges each one only once its record is committed
(edge_gateway/journal.py). Runs on the gateway's loop (common/mqtt.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import paho.mqtt.client as mqtt

from common.mqtt import BrokerConfig, MqttLink
from protocol.codec import encode, topic

from . import VERSION
from .config import Config

BOARD_LEAVES = ("state", "evt", "ack", "tele")


class SchoolLink(MqttLink):
    name = "school broker"

    def __init__(self, config: Config, deliver: Callable[[mqtt.MQTTMessage], None], *, reconnect_max_s: float = 30.0,
                 on_connected: Callable[[], None] | None = None, broker: BrokerConfig | None = None) -> None:
        self.config = config
        self.state_topic = topic(config.school, "gateway", "state")
        super().__init__(
            broker or config.school_broker,
            client_id=f"preau-{config.gateway_id}",
            clean_session=False,
            manual_ack=True,
            reconnect_max_s=reconnect_max_s,
            will=(self.state_topic, self._gateway_state(False)),
        )
        self._deliver = deliver
        self._on_connected = on_connected
        self.subscribed = asyncio.Event()  # the broker confirmed our subscriptions (SUBACK)
        self.client.on_subscribe = lambda *_: self.subscribed.set()

    def _gateway_state(self, online: bool) -> bytes:
        body: dict = {"v": 1, "online": online, "gateway": self.config.gateway_id}
        if online:
            body["fw"] = VERSION
        return encode(body)

    def on_up(self) -> None:
        school = self.config.school
        self.subscribed.clear()
        self.client.subscribe([(topic(school, "+", leaf), 1) for leaf in BOARD_LEAVES])
        self.client.publish(self.state_topic, self._gateway_state(True), qos=1, retain=True)
        if self._on_connected is not None:
            self._on_connected()  # the gateway (re)publishes the rooms' offline policies

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        self._deliver(msg)

    def publish_policy(self, room: str, payload: bytes) -> bool:
        """The room's retained offline policy (docs/protocol.md)."""
        return self.publish(topic(self.config.school, room, "policy"), payload, qos=1, retain=True)

    def send_cmd(self, room: str, cmd: dict) -> bool:
        return self.publish(topic(self.config.school, room, "cmd"), encode(cmd), qos=1)

    async def stop(self) -> None:
        await self.close(goodbye=(self.state_topic, self._gateway_state(False)))
