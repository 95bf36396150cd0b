"""Ingest from the city broker: batches of records from every school's
gateway, stored once, acknowledged with the highest contiguous seq of the
batch's epoch; missing seqs asked for once their gap lasts
(`preau/v1/city/{school}/gaps`); telemetry forgotten after its retention.

One asyncio loop owns the link (common.mqtt.MqttLink: paho driven by the
loop, no network thread). The loop only queues what arrives; one writer
thread (a single-thread executor) checks and stores each message in turn,
since a batch of up to 200 records is one SQLite transaction with fsync:
keepalives and the other schools' messages never wait on the disk. One
writer keeps the (school, seq) bookkeeping free of races and matches
SQLite's single-writer model. Batches already waiting when the writer
takes one go with it, up to GROUP_MAX, stored in one transaction (a group
commit: one fsync for them all; CityStore.store_batches). Back on the loop,
once the transaction has committed, the city publishes each batch's ack to
its gateway, then acknowledges the MQTT message to the broker (manual acks).

Crash safety: until that MQTT acknowledgement the broker keeps the batch in
our persistent session and delivers it again after a restart, so a crash
before the commit loses nothing. A crash between the commit and the acks
only costs a repeat: the batch comes again (from the broker, or from the
gateway, which resends what is not acked after 10 s), stores nothing new,
and is acked then. Unacknowledged messages also bound the queue: a broker
sends a client only so many of them at once (Mosquitto's
max_inflight_messages), so a slow disk holds batches at the broker, not in
our memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import paho.mqtt.client as mqtt

from common.mqtt import MqttLink
from protocol.citylink import (
    Batch,
    BatchError,
    city_topic,
    encode_city_ack,
    encode_gaps,
    parse_batch,
    parse_city_topic,
    parse_gateway_state,
)

from .errors import BrokerRefused
from .metrics import Metrics
from .register import GatewayRegister
from .settings import CitySettings
from .store import INTERNAL_ERROR, CityStore, GapRequest, Stored, StoreWriteError, printable

log = logging.getLogger(__name__)

RECORDS_FILTER = city_topic("+", "records")
GATEWAY_FILTER = city_topic("+", "gateway")
_BAD_RECORDS_LOGGED = 5
DRAIN_TIMEOUT_S = 10.0
PRUNE_EVERY_S = 3600.0
# At most this many records batches stored in one transaction (8 x 200
# records): the acks of a group wait for its commit.
GROUP_MAX = 8
_NOTHING = object()
Ack = tuple[str, int, str]  # (school, acked, epoch): what to publish once a batch is stored


class Ingest(MqttLink):
    name = "city broker"

    def __init__(self, settings: CitySettings, store: CityStore, metrics: Metrics | None = None,
                 now: Callable[[], float] = time.time,
                 on_fatal: Callable[[BrokerRefused], None] | None = None,
                 register: GatewayRegister | None = None) -> None:
        super().__init__(
            settings.broker,
            settings.client_id,
            # A persistent session: while we reconnect, or after a crash, the
            # broker keeps the schools' QoS 1 batches for us.
            clean_session=False,
            # Acknowledged to the broker once stored, not on receipt.
            manual_ack=True,
            reconnect_max_s=settings.reconnect_max_s,
            keepalive=settings.keepalive_s,
        )
        self.client.on_subscribe = self._on_subscribe
        self.settings = settings
        self.store = store
        self.metrics = metrics or Metrics()
        self.now = now
        # Which gateway owns each school (from the CA); None: not checked.
        self.register = register
        self.on_fatal = on_fatal  # called once if the broker refuses us for good
        self.failed: BrokerRefused | None = None
        self.subscribed = False
        self._session = 0  # counts connections: a message is acknowledged only on the one that brought it
        self._pending_subscribe: int | None = None
        self._inbox: asyncio.Queue[tuple[mqtt.MQTTMessage, int] | None] = asyncio.Queue()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="city-writer")
        self._consumer: asyncio.Task | None = None
        self._upkeep: asyncio.Task | None = None
        self._stopping = False

    @property
    def ready(self) -> bool:
        """Connected and subscribed."""
        return self.connected and self.subscribed

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start on the running loop. The service starts even while the broker
        is down: the link retries with backoff for ever."""
        self._consumer = asyncio.create_task(self._consume(), name="city-ingest")
        self._upkeep = asyncio.create_task(self._keep_up(), name="city-upkeep")
        self.connect_in_background()

    async def stop(self) -> None:
        """Store what was already taken from the broker, then disconnect.
        Messages arriving meanwhile are left unacknowledged: the broker
        delivers them again to our session at the next start."""
        self._stopping = True
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        if self._consumer is not None:
            self._inbox.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._consumer), DRAIN_TIMEOUT_S)
            except TimeoutError:
                log.warning("city ingest: %d messages left to the broker at stop", self._inbox.qsize())
                self._consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._consumer
        await self.close()
        self.subscribed = False
        self.metrics.broker_connected.set(0)
        # The write under way (if the drain timed out) finishes before the store closes.
        await asyncio.get_running_loop().run_in_executor(None, partial(self._writer.shutdown, wait=True))

    # ------------------------------------------------------ link (on the loop)

    def on_refused(self, reason: str, permanent: bool) -> None:
        if permanent and self.failed is None:
            self.failed = BrokerRefused(
                f"the city broker {self.broker.host}:{self.broker.port} "
                f"refused client {self.settings.client_id!r}: {reason}")
            if self.on_fatal is not None:
                self.on_fatal(self.failed)

    def on_up(self) -> None:
        self._session += 1
        self.metrics.connects.inc()
        # Always subscribe again: a broker restarted without persistence has
        # forgotten our session.
        records = RECORDS_FILTER
        if self.settings.share_group:
            records = f"$share/{self.settings.share_group}/{RECORDS_FILTER}"
        # The gateway filter is never shared: brokers do not send retained
        # messages to shared subscriptions, and every worker may apply it.
        _, self._pending_subscribe = self.client.subscribe([(records, 1), (GATEWAY_FILTER, 1)])

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        if mid != self._pending_subscribe:
            return
        refused = [str(rc) for rc in reason_code_list if rc.is_failure]
        if refused:
            if self.failed is None:
                self.failed = BrokerRefused(f"the city broker refused our subscriptions: {', '.join(refused)}")
                log.error("%s", self.failed)
                if self.on_fatal is not None:
                    self.on_fatal(self.failed)
            return
        self.subscribed = True
        self.metrics.broker_connected.set(1)

    def on_down(self) -> None:
        self.subscribed = False
        self.metrics.broker_connected.set(0)

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        if self._stopping:
            return  # not acknowledged: ours again at the next start
        self._inbox.put_nowait((msg, self._session))
        self.metrics.queue_depth.set(self._inbox.qsize())

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        carried: tuple[mqtt.MQTTMessage, int] | None | object = _NOTHING
        while True:
            item = await self._inbox.get() if carried is _NOTHING else carried
            carried = _NOTHING
            if item is None:
                break
            # A backlog: the records batches already waiting go to the
            # writer together, stored in one transaction (a group commit).
            # Nothing waits for a group to fill: a lone batch goes alone.
            group = [item]
            if item[0].topic.endswith("/records"):  # type: ignore[index]
                while len(group) < GROUP_MAX and not self._inbox.empty():
                    following = self._inbox.get_nowait()
                    if following is None or not following[0].topic.endswith("/records"):
                        carried = following
                        break
                    group.append(following)
            self.metrics.queue_depth.set(self._inbox.qsize())
            acks: list[Ack | None] = [None] * len(group)
            try:
                acks = await loop.run_in_executor(self._writer, self.handle_many,
                                                  [(msg.topic, msg.payload) for msg, _ in group])  # type: ignore[misc]
            except Exception:
                # A bug here must not stop the ingest of every other school.
                self.metrics.internal_errors.inc()
                log.exception("city link: %d messages dropped (a bug); first payload %s", len(group),
                              printable(group[0][0].payload))  # type: ignore[index]
            for (msg, session), ack in zip(group, acks, strict=True):  # type: ignore[misc]
                if ack is not None:
                    school, acked, epoch = ack
                    # Link down meanwhile: the gateway resends after 10 s, and
                    # that copy is acked.
                    if self.publish(city_topic(school, "ack"), encode_city_ack(school, acked, epoch), qos=1):
                        self.metrics.acks_published.inc()
                # After the commit and the ack. On a newer connection the broker
                # has sent it again already: that copy is acknowledged instead.
                if session == self._session:
                    self.ack(msg)

    async def _keep_up(self) -> None:
        """Beside the ingest: ask gateways for the records missing beyond
        their ack once a gap has lasted `gap_after_s`, and forget telemetry
        past its retention. Both on the writer thread (they write), between
        batches."""
        loop = asyncio.get_running_loop()
        every = max(0.2, min(self.settings.gap_after_s / 3, 10.0))
        pruned_at = 0.0
        while True:
            await asyncio.sleep(every)
            try:
                if self.ready:
                    for request in await loop.run_in_executor(self._writer, self.due_gaps):
                        self.publish_gaps(request)
                if self.now() - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = self.now()
                    await loop.run_in_executor(self._writer, self.prune)
            except StoreWriteError as e:
                self.metrics.store_errors.inc()
                log.error("city upkeep: %s", e)
            except Exception:
                self.metrics.internal_errors.inc()
                log.exception("city upkeep failed (a bug)")

    def due_gaps(self) -> list[GapRequest]:
        """The gap requests due now (claimed in the database, so that of
        several workers one asks). Runs on the writer thread (and in tests)."""
        return self.store.gap_requests(self.now(), self.settings.gap_after_s)

    def publish_gaps(self, request: GapRequest) -> bool:
        missing = sum(last - first + 1 for first, last in request.ranges)
        log.info("school %s: asking its gateway (epoch %r) for %d missing records in %d ranges, from seq %d",
                 request.school, request.epoch, missing, len(request.ranges), request.ranges[0][0])
        sent = self.publish(city_topic(request.school, "gaps"),
                            encode_gaps(request.school, request.epoch, request.ranges), qos=1)
        if sent:
            self.metrics.gap_requests.inc()
        return sent

    def prune(self) -> int:
        """Forget telemetry older than the retention; how many rows went."""
        count = self.store.prune_telemetry(self.now() - self.settings.telemetry_retention_days * 86400)
        if count:
            log.info("telemetry: %d readings older than %g days forgotten", count,
                     self.settings.telemetry_retention_days)
        return count

    # ------------------------------------------------- the writer thread

    def handle(self, topic: str, payload: bytes | bytearray) -> Ack | None:
        """Check and store one message; the ack to publish, if any. Runs on
        the writer thread (and in tests)."""
        return self.handle_many([(topic, payload)])[0]

    def handle_many(self, messages: Sequence[tuple[str, bytes | bytearray]]) -> list[Ack | None]:
        """Check and store the messages taken together from the queue (see
        _consume): the records batches among them in one transaction
        (CityStore.store_batches, a group commit), the others one by one.
        The ack to publish for each message, if any. Runs on the writer
        thread (and in tests)."""
        acks: list[Ack | None] = [None] * len(messages)
        batches: list[tuple[int, str, Batch]] = []
        for i, (topic, payload) in enumerate(messages):
            try:
                school, leaf = parse_city_topic(topic)
                if leaf == "records":
                    self.metrics.batches.inc()
                    batch = parse_batch(school, bytes(payload))
                    self._check_gateway(school, batch.gateway)
                    batches.append((i, school, batch))
                elif leaf == "gateway":
                    state = parse_gateway_state(school, bytes(payload))
                    if state is not None:
                        self._check_gateway(school, state.gateway)
                        self.store.set_gateway_state(school, state.online, state.gateway, self.now())
                        self.metrics.gateway_states.inc()
            except BatchError as e:
                self._refused(topic, e.reason, str(e), payload)
            except StoreWriteError as e:
                self.metrics.store_errors.inc()
                log.error("city link: %s not stored: %s", topic, e)
            except (RecursionError, ValueError, OverflowError) as e:
                # The contract's checks could not even read it (a JSON document
                # nested deeper than the decoder goes...): a refusal, not a bug.
                self._refused(topic, "unreadable", f"{type(e).__name__}: {printable(str(e))}", payload)
        if not batches:
            return acks
        # parse_batch checked every body against the contract's bounds.
        results = self.store.store_batches([batch for _, _, batch in batches], self.now(), checked=True)
        for (i, school, _), result in zip(batches, results, strict=True):
            topic, payload = messages[i]
            if isinstance(result, StoreWriteError):
                # Not acked: the gateway keeps the records and sends them again.
                self.metrics.store_errors.inc()
                log.error("city link: %s not stored, not acked: %s", topic, result)
            elif isinstance(result, Exception):
                # A bug here must not stop the ingest of every other school.
                self.metrics.internal_errors.inc()
                log.error("city link: message dropped (a bug); payload %s", printable(payload), exc_info=result)
            else:
                self._count(school, result)
                log.debug("school %s: stored %d, duplicates %d, acked %d", school, result.stored,
                          result.duplicates, result.acked)
                acks[i] = (school, result.acked, result.epoch)
        return acks

    def _check_gateway(self, school: str, gateway: str | None) -> None:
        """The city broker's ACL lets only the holder of the school's
        certificate publish on its topics, but Mosquitto does not tell us who
        published: the batch's own `gateway` is checked against the gateway
        the CA issued that certificate to. Refused (not acked, not stored)
        otherwise."""
        if self.register is None:
            return
        allowed = self.register.gateways(school)
        if not allowed:
            raise BatchError("gateway_unknown", f"school {school}: the city CA issued no gateway certificate for it")
        if gateway is not None and gateway not in allowed:
            raise BatchError("gateway_mismatch", f"school {school}: gateway {printable(gateway, 64)!r} is not the one "
                                                 f"its certificate was issued to ({', '.join(sorted(allowed))})")

    def _refused(self, topic: str, reason: str, why: str, payload: bytes | bytearray) -> None:
        self.metrics.reject(reason)
        log.warning("city link: refused %s (%s): %s; payload %s", topic, reason, why, printable(payload))

    def _count(self, school: str, result: Stored) -> None:
        fresh_conflicts = [c.seq for c in result.conflicts if c.new]
        if fresh_conflicts:
            self.metrics.conflicts.inc(len(fresh_conflicts))
            log.warning("city link: school %s: %d records came with a seq already stored under another content "
                        "(seq %s%s): kept in conflicting_records, not applied; a forged batch, or a gateway whose "
                        "database was replaced", school, len(fresh_conflicts),
                        ", ".join(map(str, fresh_conflicts[:5])), "…" if len(fresh_conflicts) > 5 else "")
        if result.dropped:
            self.metrics.dropped.inc(result.dropped)
            log.warning("city link: school %s: its gateway (epoch %r) dropped %d records it will never send",
                        school, result.epoch, result.dropped)
        self.metrics.telemetry.inc(result.telemetry)
        self.metrics.records_stored.inc(result.stored)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.records_set_aside.inc(result.set_aside)
        self.metrics.unusable_bodies.inc(result.unusable_bodies)
        # Each refused record is counted and logged once: its resends are duplicates.
        fresh = [r for r in result.refused if r.new]
        for i, refused in enumerate(fresh):
            if refused.reason == INTERNAL_ERROR:
                self.metrics.internal_errors.inc()  # logged with its traceback by the store
                continue
            self.metrics.reject(refused.reason)
            if i < _BAD_RECORDS_LOGGED:
                log.warning("city link: school %s: refused a record (%s): %s; record %s",
                            school, refused.reason, printable(refused.message), printable(refused.raw))
        if len(fresh) > _BAD_RECORDS_LOGGED:
            log.warning("city link: school %s: %d more records refused in this batch",
                        school, len(fresh) - _BAD_RECORDS_LOGGED)
