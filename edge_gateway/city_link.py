"""The gateway's link to the city: ordered batches of records from the SQLite
outbox, acknowledged by the city with the highest contiguous seq it stored
(docs/protocol.md, "City link").

`CityLink` is the MQTT side (paho's thread). `Forwarder` decides what to send
and runs on the gateway's worker thread, which owns the store: it sends
unacknowledged records in seq order, a few batches ahead of the last ack, and
starts again from the last ack after a reconnect or 10 s without progress. The
city stores each (school, seq) once, so a resend costs bandwidth, never a
duplicate."""

from __future__ import annotations

import json
import logging
from typing import Callable

import paho.mqtt.client as mqtt

from protocol.citylink import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, city_topic
from protocol.codec import ProtocolError, decode, encode

from .config import Config
from common.mqtt import MqttLink
from .store import Store

log = logging.getLogger(__name__)

# The city link's contract, one definition for both ends (docs/protocol.md):
# a batch larger than the city accepts would never be acknowledged.
BATCH_MAX = MAX_BATCH_RECORDS
BATCH_MAX_BYTES = MAX_BATCH_BYTES
WINDOW_BATCHES = 5  # in flight before waiting for an ack: enough to drain a 2-day backlog quickly


class CityLink(MqttLink):
    name = "city broker"

    def __init__(self, config: Config, notify: Callable[[tuple], None], *, reconnect_max_s: float = 30.0) -> None:
        assert config.city_broker is not None
        # clean_session=True: the outbox is ours, in SQLite; the broker needs to keep nothing.
        super().__init__(config.city_broker, client_id=f"preau-{config.school}-{config.gateway_id}", reconnect_max_s=reconnect_max_s)
        self.config = config
        self._notify = notify
        self.records_topic = city_topic(config.school, "records")
        self.gateway_topic = city_topic(config.school, "gateway")
        self.ack_topic = city_topic(config.school, "ack")
        self.client.will_set(self.gateway_topic, self._gateway_state(False), qos=1, retain=True)

    def _gateway_state(self, online: bool) -> bytes:
        return encode({"v": 1, "online": online, "gateway": self.config.gateway_id})

    def on_up(self) -> None:
        self.client.subscribe(self.ack_topic, qos=1)
        self.client.publish(self.gateway_topic, self._gateway_state(True), qos=1, retain=True)
        self._notify(("city_up",))

    def on_down(self) -> None:
        self._notify(("city_down",))

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        try:
            body = decode(msg.payload)
            acked = body.get("acked")
            if body.get("school") != self.config.school:
                raise ProtocolError("field school: expected %r, got %r" % (self.config.school, body.get("school")))
            if not isinstance(acked, int) or isinstance(acked, bool) or acked < 0:
                raise ProtocolError("field acked: expected an integer >= 0, got %r" % (acked,))
        except ProtocolError as e:
            log.warning("city ack rejected: %s; payload %.120r", e, msg.payload)
            return
        self._notify(("city_ack", acked))

    def send_batch(self, payload: bytes) -> bool:
        return self.publish(self.records_topic, payload, qos=1)

    def stop(self) -> None:
        self.say_goodbye(self.gateway_topic, self._gateway_state(False))
        self.close()


class Forwarder:
    """Outbox pacing; worker thread only."""

    def __init__(self, store: Store, link: CityLink, config: Config, *, resend_after_s: float = 10.0) -> None:
        self.store = store
        self.link = link
        self.school = config.school
        self.gateway_id = config.gateway_id
        self.resend_after_s = resend_after_s
        self.acked = store.acked()
        self.sent_upto = self.acked
        self.last_progress = 0.0
        self.online = False
        self.batches_sent = 0
        self.records_sent = 0
        self.resends = 0

    def batch(self, records) -> bytes:
        return json.dumps(
            {"v": 1, "school": self.school, "gateway": self.gateway_id, "records": [r.as_dict() for r in records]},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    def on_up(self, now: float) -> None:
        # Whatever was in flight when the link dropped may be lost: start again from the ack.
        self.online = True
        self.sent_upto = self.acked
        # the worker pumps once this batch is committed: never a record the
        # database might still roll back (its seq would be handed out again)

    def on_down(self) -> None:
        self.online = False

    def on_ack(self, acked: int, now: float) -> None:
        last = self.store.last_seq()
        if acked > last:
            log.error("city acked seq %s beyond our last record %s: was the gateway database replaced? ignored", acked, last)
            return
        if acked <= self.acked:
            return
        self.store.set_acked(acked)
        self.acked = acked
        self.sent_upto = max(self.sent_upto, acked)
        self.last_progress = now

    def pump(self, now: float) -> None:
        # `online` is the worker's view (set when it handles city_up), so nothing is sent
        # on a new connection before the resend-from-ack that city_up starts.
        if not (self.online and self.link.connected):
            return
        if self.sent_upto > self.acked and now - self.last_progress >= self.resend_after_s:
            log.warning("city: no ack beyond %s for %.0f s, resending from there", self.acked, now - self.last_progress)
            self.resends += 1
            self.sent_upto = self.acked
        while self.sent_upto - self.acked < WINDOW_BATCHES * BATCH_MAX:
            records = self.store.unacked(self.sent_upto, BATCH_MAX)
            if not records:
                return
            payload = self.batch(records)
            while len(payload) > BATCH_MAX_BYTES and len(records) > 1:
                records = records[: len(records) // 2]
                payload = self.batch(records)
            if not self.link.send_batch(payload):
                return  # disconnected meanwhile; on_up starts again
            if self.sent_upto == self.acked:
                self.last_progress = now
            self.sent_upto = records[-1].seq
            self.batches_sent += 1
            self.records_sent += len(records)
            log.debug("city: sent records %s..%s", records[0].seq, records[-1].seq)
