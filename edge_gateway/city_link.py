"""The gateway's link to the city: ordered batches of committed records,
acknowledged by the city with the highest contiguous seq it stored
(docs/protocol.md, "City link").

`CityLink` is the MQTT side and `Forwarder` the pacing; both run on the
gateway's loop. The forwarder sends committed records in seq order, a few
batches ahead of the last ack, reading them from SQLite off the loop, and
starts again from the last ack after a reconnect or `resend_after_s` without
progress. The city stores each (school, seq) once, so a resend costs
bandwidth, never a duplicate."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import paho.mqtt.client as mqtt

from common.mqtt import MqttLink
from protocol.citylink import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, city_topic, parse_city_ack
from protocol.codec import ProtocolError, encode

from . import history
from .config import Config

log = logging.getLogger(__name__)

BATCH_MAX = MAX_BATCH_RECORDS
BATCH_MAX_BYTES = MAX_BATCH_BYTES
WINDOW_BATCHES = 5  # in flight before waiting for an ack: enough to drain a 2-day backlog quickly


class CityLink(MqttLink):
    name = "city broker"

    def __init__(self, config: Config, notify: Callable[[tuple], None], *, reconnect_max_s: float = 30.0,
                 clock_synced: Callable[[], bool] = lambda: True) -> None:
        assert config.city_broker is not None
        self.config = config
        self._clock_synced = clock_synced
        self.records_topic = city_topic(config.school, "records")
        self.gateway_topic = city_topic(config.school, "gateway")
        self.ack_topic = city_topic(config.school, "ack")
        # clean_session=True: the outbox is ours, in SQLite; the broker needs to keep nothing.
        super().__init__(config.city_broker, client_id=f"preau-{config.school}-{config.gateway_id}",
                         reconnect_max_s=reconnect_max_s, will=(self.gateway_topic, self._gateway_state(False)))
        self._notify = notify

    def _gateway_state(self, online: bool) -> bytes:
        body: dict = {"v": 1, "online": online, "gateway": self.config.gateway_id}
        if online:
            # The city's supervision sees a school whose gateway refuses every
            # lesson for want of a trusted clock (edge_gateway/clocksync.py).
            body["clock_synced"] = self._clock_synced()
        return encode(body)

    def on_up(self) -> None:
        self.client.subscribe(self.ack_topic, qos=1)
        self.publish_state()
        self._notify(("city_up",))

    def publish_state(self) -> None:
        """The retained gateway state, again (its clock changed)."""
        if self.connected:
            self.client.publish(self.gateway_topic, self._gateway_state(True), qos=1, retain=True)

    def on_down(self) -> None:
        self._notify(("city_down",))

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        try:
            acked = parse_city_ack(self.config.school, bytes(msg.payload))
        except ProtocolError as e:
            log.warning("city ack rejected: %s; payload %.120r", e, msg.payload)
            return
        self._notify(("city_ack", acked))

    def send_batch(self, payload: bytes) -> bool:
        return self.publish(self.records_topic, payload, qos=1)

    async def stop(self) -> None:
        await self.close(goodbye=(self.gateway_topic, self._gateway_state(False)))


class Forwarder:
    """Outbox pacing, on the gateway's loop."""

    def __init__(self, db: str, link: CityLink, config: Config, *, acked: int, committed: int,
                 clock: Callable[[], float], save_acked: Callable[[int], None], resend_after_s: float = 10.0) -> None:
        self.db = db
        self.link = link
        self.school = config.school
        self.gateway_id = config.gateway_id
        self.resend_after_s = resend_after_s
        self.clock = clock
        self._save_acked = save_acked
        self.acked = acked
        self.sent_upto = acked
        # The highest seq ever handed to the city broker (never lowered by a
        # resend): an ack beyond it cannot be the city's answer to us.
        self.sent_max = acked
        self.acks_ignored = 0
        self.committed = committed  # the journal's committed seq: nothing later is ever sent
        self.last_progress = 0.0
        self.online = False
        self.batches_sent = 0
        self.records_sent = 0
        self.resends = 0
        self._task: asyncio.Task | None = None
        self._again = False

    def batch(self, records: list[history.StoredRecord]) -> bytes:
        return json.dumps(
            {"v": 1, "school": self.school, "gateway": self.gateway_id, "records": [r.as_dict() for r in records]},
            separators=(",", ":"), ensure_ascii=False, allow_nan=False,
        ).encode()

    def on_up(self) -> None:
        # Whatever was in flight when the link dropped may be lost: start again from the ack.
        self.online = True
        self.sent_upto = self.acked
        self.pump()

    def on_down(self) -> None:
        self.online = False

    def on_committed(self, seq: int) -> None:
        self.committed = max(self.committed, seq)
        self.pump()

    def on_ack(self, acked: int) -> None:
        if acked > self.committed:
            self.acks_ignored += 1
            log.error("city acked seq %s beyond our last record %s (committed): was the gateway database replaced? "
                      "ignored", acked, self.committed)
            return
        if acked > self.sent_max:
            # Deleting records on it would lose those the city never got: a
            # forged ack, or the city's answer to a batch someone else sent
            # with our seqs. The city's ack to our own batches follows.
            self.acks_ignored += 1
            log.warning("city ack %s is beyond what we sent (%s): forged or stale, ignored", acked, self.sent_max)
            return
        if acked <= self.acked:
            return
        self._save_acked(acked)
        self.acked = acked
        self.sent_upto = max(self.sent_upto, acked)
        self.last_progress = self.clock()
        self.pump()

    def tick(self) -> None:
        """Every tick of the gateway: resend after a silence."""
        if self.online and self.sent_upto > self.acked and self.clock() - self.last_progress >= self.resend_after_s:
            log.warning("city: no ack beyond %s for %.0f s, resending from there", self.acked,
                        self.clock() - self.last_progress)
            self.resends += 1
            self.sent_upto = self.acked
        self.pump()

    def pump(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        if self.online and self.link.connected and self.sent_upto < self.committed \
                and self.sent_upto - self.acked < WINDOW_BATCHES * BATCH_MAX:
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while self.online and self.link.connected and self.sent_upto - self.acked < WINDOW_BATCHES * BATCH_MAX:
                self._again = False
                after = self.sent_upto
                records = await asyncio.to_thread(history.unacked, self.db, after, self.committed, BATCH_MAX)
                if not records or self.sent_upto != after:  # nothing new, or a resend began meanwhile
                    if self._again:
                        continue
                    return
                payload = self.batch(records)
                while len(payload) > BATCH_MAX_BYTES and len(records) > 1:
                    records = records[: len(records) // 2]
                    payload = self.batch(records)
                if not self.link.send_batch(payload):
                    return  # disconnected meanwhile; on_up starts again
                if self.sent_upto == self.acked:
                    self.last_progress = self.clock()
                self.sent_upto = records[-1].seq
                self.sent_max = max(self.sent_max, self.sent_upto)
                self.batches_sent += 1
                self.records_sent += len(records)
                log.debug("city: sent records %s..%s", records[0].seq, records[-1].seq)
        except Exception:
            log.exception("city link: could not send the outbox; trying again at the next tick")
