"""The gateway's link to the city: batches of committed records,
acknowledged by the city with the highest contiguous seq it stored
(docs/protocol.md, "City link").

`CityLink` is the MQTT side and `Forwarder` the pacing; both run on the
gateway's loop. The forwarder has three lanes, served in this order:

- the live lane: while the history lane is behind (a backlog after an
  outage), the newest records go at once in a small batch of their own, so
  the city's supervision sees the present within a second or two;
- gap repair: ranges the city asked for on `gaps`, sent again from what the
  database still has, the rest listed as dropped;
- the history lane: the records in seq order from the last ack, a few
  batches ahead of it, skipping what the live lane sent, and listing as
  `dropped` the seqs the database no longer has (telemetry evicted when its
  space ran out).

It starts again from the last ack after a reconnect or `resend_after_s`
without progress; the city stores each (school, seq) once, so a resend
costs bandwidth, never a duplicate. Every byte sent goes through one token
bucket (`[city] uplink_kbit_s`): the live lane may borrow from it, the
history lane waits. Records are read from SQLite off the loop and sent as
stored: a body is never parsed and encoded again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from common.mqtt import MqttLink
from protocol.citylink import (
    DEFAULT_COMPRESSION,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RANGES,
    CityAck,
    GapRequest,
    city_topic,
    encode_batch,
    parse_ack,
    parse_gaps,
)
from protocol.codec import ProtocolError, encode

from . import history
from .config import Config

log = logging.getLogger(__name__)

BATCH_MAX = MAX_BATCH_RECORDS
BATCH_MAX_BYTES = MAX_BATCH_BYTES
WINDOW_BATCHES = 5  # in flight before waiting for an ack: enough to drain a 2-day backlog quickly
LIVE_MAX = 20  # the newest records a live batch carries; older ones are the history lane's
# At most one live batch this often, and only with a backlog of more than a
# batch: under a steady stream the history lane keeps up in full batches (a
# live batch for every commit cut a 1,000-events/s stream into batches of a
# few records, and the city's per-batch commit became the limit).
LIVE_EVERY_S = 0.25
REPAIR_RANGES_MAX = 256  # gap ranges queued; a city asking for more asks again
# The batch versions this gateway can send; it sends the highest one the
# city's last ack listed (1 until an ack says more: an old city stays on 1).
SPOKEN_VERSIONS = (1, 2)
# What a batch costs beyond its payload on the uplink: MQTT's PUBLISH header
# (fixed header, topic length, packet id) and a TLS 1.3 record (header, tag,
# content type); the PUBACK comes back the other way.
MQTT_OVERHEAD = 9
TLS_OVERHEAD = 22


class TokenBucket:
    """Bytes per second, with one second of burst; `rate` 0 is no cap. A
    sender may take more than there is (the bucket goes into debt); who
    waits, waits for it to be positive again."""

    def __init__(self, rate_bytes_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_bytes_s
        self.capacity = rate_bytes_s
        self.clock = clock
        self.tokens = self.capacity
        self._at = clock()

    def _fill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, n: int) -> None:
        if self.rate:
            self._fill()
            self.tokens -= n

    def wait_s(self) -> float:
        """Seconds until the bucket holds something again (0: now)."""
        if not self.rate:
            return 0.0
        self._fill()
        return 0.0 if self.tokens > 0 else (-self.tokens + 1) / self.rate


def wire_bytes(topic: str, payload: bytes) -> int:
    return len(payload) + len(topic) + MQTT_OVERHEAD + TLS_OVERHEAD


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
        self.gaps_topic = city_topic(config.school, "gaps")
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
        # A broker whose ACL does not yet let us read `gaps` refuses that
        # filter alone (SUBACK 0x80): acks still come, gap repair waits.
        self.client.subscribe([(self.ack_topic, 1), (self.gaps_topic, 1)])
        self.publish_state()
        self._notify(("city_up",))

    def publish_state(self) -> None:
        """The retained gateway state, again (its clock changed)."""
        if self.connected:
            self.client.publish(self.gateway_topic, self._gateway_state(True), qos=1, retain=True)

    def on_down(self) -> None:
        self._notify(("city_down",))

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        try:
            if msg.topic == self.gaps_topic:
                self._notify(("city_gaps", parse_gaps(self.config.school, payload)))
            else:
                self._notify(("city_ack", parse_ack(self.config.school, payload)))
        except ProtocolError as e:
            log.warning("city message on %s rejected: %s; payload %.120r", msg.topic, e, payload)

    def send_batch(self, payload: bytes) -> bool:
        return self.publish(self.records_topic, payload, qos=1)

    async def stop(self) -> None:
        await self.close(goodbye=(self.gateway_topic, self._gateway_state(False)))


class Forwarder:
    """Outbox pacing, on the gateway's loop."""

    def __init__(self, db: str, link: CityLink, config: Config, *, acked: int, committed: int,
                 clock: Callable[[], float], save_acked: Callable[[int], None], resend_after_s: float = 10.0,
                 epoch: str = "", version: int = 1, save_version: Callable[[int], None] = lambda v: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.link = link
        self.school = config.school
        self.gateway_id = config.gateway_id
        self.epoch = epoch
        self.resend_after_s = resend_after_s
        self.clock = clock
        self._save_acked = save_acked
        self.acked = acked
        self.sent_upto = acked  # the history lane: every seq up to here was sent (or listed as dropped)
        # The highest seq ever handed to the city broker (never lowered by a
        # resend): an ack beyond it cannot be the city's answer to us.
        self.sent_max = acked
        self.live_upto = committed  # the live lane: every seq up to here was seen by it
        self._live_sent: list[tuple[int, int]] = []  # ranges the live lane sent above sent_upto
        self._next_live = 0.0  # the loop's time of the next live batch allowed
        self._repair: list[tuple[int, int]] = []
        # What we send: the newest both speak, from the city's last ack (kept
        # in the database, so a restart does not send its backlog as version 1).
        self.version = version if version in SPOKEN_VERSIONS else 1
        self._save_version = save_version
        self.compression = DEFAULT_COMPRESSION
        self.bucket = TokenBucket(config.uplink_kbit_s * 1000 / 8, monotonic)
        self.acks_ignored = 0
        self.committed = committed  # the journal's committed seq: nothing later is ever sent
        self.last_progress = 0.0
        self.online = False
        self.batches_sent = 0
        self.records_sent = 0
        self.live_batches = 0
        self.live_records = 0
        self.repair_batches = 0
        self.dropped_listed = 0  # seqs listed as dropped (evicted or long gone)
        self.bytes_sent = 0  # on the uplink: payloads and their MQTT and TLS framing
        self.resends = 0
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None

    def batch(self, records: list, dropped: list[tuple[int, int]] | None = None) -> bytes:
        return encode_batch(self.school, self.gateway_id, records, epoch=self.epoch, dropped=dropped or (),
                            version=self.version, compression=self.compression)

    # events from the gateway (its loop) ------------------------------------------

    def on_up(self) -> None:
        # Whatever was in flight when the link dropped may be lost: start again
        # from the ack; the newest records first, by the live lane.
        self.online = True
        self._restart()
        self.live_upto = max(self.acked, self.committed - LIVE_MAX)
        self.pump()

    def on_down(self) -> None:
        self.online = False

    def on_committed(self, seq: int) -> None:
        self.committed = max(self.committed, seq)
        self.pump()

    def on_ack(self, ack: CityAck | int) -> None:
        if isinstance(ack, int):  # a bare seq (an old caller): no epoch, version 1
            ack = CityAck(ack)
        if ack.epoch and ack.epoch != self.epoch:
            # The city's answer to another database of this school (the one
            # this gateway replaced, or a forger): its seqs are not ours.
            self.acks_ignored += 1
            log.warning("city ack for epoch %r, ours is %r: ignored", ack.epoch, self.epoch)
            return
        acked = ack.acked
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
        version = max(v for v in SPOKEN_VERSIONS if v in ack.versions or v == 1)
        if version != self.version:
            log.info("city reads batch versions %s: sending version %d", list(ack.versions), version)
            self.version = version
            self._save_version(version)
        if acked <= self.acked:
            return
        self._save_acked(acked)
        self.acked = acked
        self.sent_upto = max(self.sent_upto, acked)
        self._live_sent = [(a, b) for a, b in self._live_sent if b > self.sent_upto]
        self.last_progress = self.clock()
        self.pump()

    def on_gaps(self, request: GapRequest) -> None:
        if request.epoch != self.epoch:
            log.warning("city gap request for epoch %r, ours is %r: ignored", request.epoch, self.epoch)
            return
        for first, last in request.ranges:
            # Above the history lane's cursor everything is still to come, in
            # order: during a drain the live lane's records sit beyond the
            # city's ack, and a city that asks for what lies between them
            # gets it once, from the history lane.
            last = min(last, self.sent_upto)
            if first <= last and len(self._repair) < REPAIR_RANGES_MAX:
                self._repair.append((first, last))
        log.info("city misses %d range(s) of records (%s...): sending what we still have", len(request.ranges),
                 request.ranges[:3])
        self.pump()

    def tick(self) -> None:
        """Every tick of the gateway: resend after a silence."""
        if self.online and self.sent_upto > self.acked and self.clock() - self.last_progress >= self.resend_after_s:
            log.warning("city: no ack beyond %s for %.0f s, resending from there", self.acked,
                        self.clock() - self.last_progress)
            self.resends += 1
            if self.version != 1:
                # A city rolled back to a release that does not read it
                # refuses every batch unacked: version 1 is read by all.
                log.warning("city: no ack to version %d batches, back to version 1 until an ack says more",
                            self.version)
                self.version = 1
                self._save_version(1)
            self._restart()
        self.pump()

    def _restart(self) -> None:
        self.sent_upto = self.acked
        self._live_sent = []
        self.last_progress = self.clock()

    def pump(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="city-forwarder")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # the lanes -------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while self.online and self.link.connected:
                    wait = await self._step()
                    if wait is None:
                        break
                    if wait > 0:
                        try:  # a live record (or an ack) wakes us before the bucket fills
                            await asyncio.wait_for(self._wake.wait(), wait)
                            self._wake.clear()
                        except TimeoutError:
                            pass
            except Exception:
                log.exception("city link: could not send the outbox; trying again at the next tick")
                await asyncio.sleep(1.0)

    async def _step(self) -> float | None:
        """One batch of the lane whose turn it is: 0 when there may be more
        at once, the seconds to wait for the bucket, None when idle."""
        if self.committed > self.live_upto:
            now = asyncio.get_running_loop().time()
            if self.sent_upto >= self.live_upto or self.committed - self.sent_upto <= BATCH_MAX:
                self.live_upto = self.committed  # no backlog: the history lane sends them at once
            elif now >= self._next_live:
                self._next_live = now + LIVE_EVERY_S
                await self._live()
                return 0.0
        wait = self.bucket.wait_s()
        if self._repair:
            if wait:
                return wait
            await self._repair_one()
            return 0.0
        if self.sent_upto < self.committed and self.sent_upto - self.acked < WINDOW_BATCHES * BATCH_MAX:
            if wait:
                return wait
            return 0.0 if await self._history() else None
        return None

    def _send(self, records: list, dropped: list[tuple[int, int]]) -> int | None:
        """Publish one batch: None when the link dropped meanwhile (on_up
        starts again), else the seq the batch stops short of when it had to
        be cut to fit MAX_BATCH_BYTES (a version 1 batch of large bodies),
        or 0."""
        payload = self.batch(records, dropped)
        cut = 0
        while len(payload) > BATCH_MAX_BYTES and len(records) > 1:
            cut = records[len(records) // 2].seq
            records = records[: len(records) // 2]
            dropped = [r for r in dropped if r[1] < cut]
            payload = self.batch(records, dropped)
        if not self.link.send_batch(payload):
            return None
        size = wire_bytes(self.link.records_topic, payload)
        self.bucket.take(size)
        self.bytes_sent += size
        self.batches_sent += 1
        self.records_sent += len(records)
        self.dropped_listed += sum(b - a + 1 for a, b in dropped)
        return cut

    async def _live(self) -> None:
        after, upto = max(self.live_upto, self.sent_upto), self.committed
        records = await asyncio.to_thread(history.newest, self.db, after, upto, LIVE_MAX)
        self.live_upto = max(self.live_upto, upto)
        if not records or not self.online:
            return
        if self._send(records, []) is not None:
            self._live_sent.append((records[0].seq, records[-1].seq))
            self.sent_max = max(self.sent_max, records[-1].seq)
            self.live_batches += 1
            self.live_records += len(records)

    async def _repair_one(self) -> None:
        first, last = self._repair[0]
        records = await asyncio.to_thread(history.unacked, self.db, first - 1, last, BATCH_MAX)
        records, dropped, covered = _with_gaps(records, first - 1, last, BATCH_MAX)
        cut = self._send(records, dropped)
        if cut is not None:
            covered = cut - 1 if cut else covered
            self.repair_batches += 1
            self.sent_max = max(self.sent_max, covered)
            if covered >= last:
                self._repair.pop(0)
            else:
                self._repair[0] = (covered + 1, last)

    async def _history(self) -> bool:
        """One history batch; False when there was nothing to send."""
        after, upto = self.sent_upto, self.committed
        records = await asyncio.to_thread(history.unacked, self.db, after, upto, BATCH_MAX)
        if self.sent_upto != after:  # a resend or an ack moved the lane meanwhile
            return True
        records, dropped, covered = _with_gaps(records, after, upto, BATCH_MAX)
        if covered <= after:
            return False
        live = self._live_sent
        if live:
            records = [r for r in records if not any(a <= r.seq <= b for a, b in live)]
        if records or dropped:
            cut = self._send(records, dropped)
            if cut is None:
                return False
            covered = cut - 1 if cut else covered
            if self.sent_upto == self.acked:
                self.last_progress = self.clock()
            log.debug("city: sent records %s..%s", after + 1, covered)
        self.sent_upto = covered
        self.sent_max = max(self.sent_max, covered)
        self._live_sent = [(a, b) for a, b in live if b > covered]
        return True


def _with_gaps(records: list[history.StoredRecord], after: int, upto: int,
               limit: int) -> tuple[list[history.StoredRecord], list[tuple[int, int]], int]:
    """(the records, the seq ranges missing among them, the last seq they
    cover) for a read of `limit` records in (after, upto]. The database's
    seqs are gap-free but for what was evicted or pruned: a missing seq is
    gone for good. At most MAX_RANGES ranges: the batch stops before more."""
    dropped: list[tuple[int, int]] = []
    kept: list[history.StoredRecord] = []
    expected = after + 1
    for r in records:
        if r.seq > expected:
            if len(dropped) == MAX_RANGES:
                return kept, dropped, expected - 1
            dropped.append((expected, r.seq - 1))
        kept.append(r)
        expected = r.seq + 1
    if len(records) < limit and expected <= upto and len(dropped) < MAX_RANGES:
        dropped.append((expected, upto))  # the tail is gone
        expected = upto + 1
    return kept, dropped, expected - 1
