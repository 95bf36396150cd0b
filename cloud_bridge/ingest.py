"""Ingest from the city broker: batches of records from every school's
gateway, stored once, acknowledged with the highest contiguous seq.

Threads: paho's network thread only puts (topic, payload) on a queue; one
writer thread checks, stores and acks. A batch is up to 200 records in one
SQLite transaction with fsync (see store.py), which is too long to hold the
network thread: keepalive pings and the other schools' messages must keep
flowing. One writer keeps the (school, seq) bookkeeping free of races and
matches SQLite's single-writer model.

End-to-end safety does not rest on MQTT: paho acknowledges QoS 1 to the
broker on receipt, so a message can be lost if this process dies before
storing it. The gateway keeps every record until our application-level ack
names it and resends after 10 s, so such a loss only delays the record.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt

from common.mqtt import tcp_nodelay
from protocol.codec import encode
from paho.mqtt.enums import CallbackAPIVersion

from protocol.citylink import BatchError, city_topic, parse_batch, parse_city_topic, parse_gateway_state, truncate
from .errors import BrokerRefused
from .metrics import Metrics
from .settings import CitySettings
from .store import Store, StoreWriteError

log = logging.getLogger(__name__)

RECORDS_FILTER = city_topic("+", "records")
GATEWAY_FILTER = city_topic("+", "gateway")
# CONNACK reasons that retrying will not cure (MQTT 5 codes; paho maps the
# 3.1.1 return codes onto them): bad client id, bad credentials, not
# authorised, banned, bad authentication method.
_REFUSED_FOR_GOOD = {133, 134, 135, 138, 140}
# Bounded so that a database slower than the broker pushes back on the
# broker (the network thread waits) instead of growing memory without end.
_QUEUE_LIMIT = 10_000
_BAD_RECORDS_LOGGED = 5

_STOP = None


class Ingest:
    def __init__(self, settings: CitySettings, store: Store, metrics: Metrics | None = None,
                 now: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.metrics = metrics or Metrics()
        self.now = now
        self.ready = threading.Event()  # connected and subscribed
        self.failed: BrokerRefused | None = None
        self._queue: queue.Queue = queue.Queue(_QUEUE_LIMIT)
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._pending_subscribe: int | None = None
        self.client = self._make_client()

    # ------------------------------------------------------------ lifecycle

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            # A persistent session: while we reconnect, the broker keeps the
            # schools' QoS 1 batches for us instead of dropping them.
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        tcp_nodelay(client)
        if s.username:
            client.username_pw_set(s.username, s.password)
        # paho annotates these as int but sleeps on them as given; tests use
        # fractions of a second.
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="city-writer", daemon=True)
        self._writer.start()
        # connect_async + loop_start: the service starts even while the
        # broker is down, and paho keeps retrying with backoff.
        self.client.connect_async(self.settings.broker_host, self.settings.broker_port, self.settings.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        # Messages already taken from the broker are stored before we go:
        # the broker considers them delivered.
        self._queue.put(_STOP)
        if self._writer:
            self._writer.join(30)
        self.metrics.set("broker_connected", 0)

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    # ------------------------------------------------- paho network thread

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if reason_code.value in _REFUSED_FOR_GOOD:
                self.failed = BrokerRefused(
                    f"the city broker {self.settings.broker_host}:{self.settings.broker_port} "
                    f"refused client {self.settings.client_id!r}: {reason_code}"
                )
                log.error("%s", self.failed)
            else:
                log.warning("city broker refused the connection, will retry: %s", reason_code)
            return
        self.metrics.add("connects")
        log.info("connected to the city broker %s:%s", self.settings.broker_host, self.settings.broker_port)
        # Always subscribe again: a broker restarted without persistence has
        # forgotten our session.
        records = RECORDS_FILTER
        if self.settings.share_group:
            records = f"$share/{self.settings.share_group}/{RECORDS_FILTER}"
        # The gateway filter is never shared: brokers do not send retained
        # messages to shared subscriptions, and every worker may apply it.
        _, self._pending_subscribe = client.subscribe([(records, 1), (GATEWAY_FILTER, 1)])

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        if mid != self._pending_subscribe:
            return
        refused = [rc for rc in reason_code_list if rc.is_failure]
        if refused:
            self.failed = BrokerRefused(f"the city broker refused our subscriptions: {refused}")
            log.error("%s", self.failed)
            return
        self.metrics.set("broker_connected", 1)
        self.ready.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.ready.clear()
        self.metrics.set("broker_connected", 0)
        if not self._stopping:
            log.warning("lost the city broker (%s); reconnecting", reason_code)

    def _on_connect_fail(self, client, userdata) -> None:
        log.warning("cannot reach the city broker %s:%s; retrying", self.settings.broker_host, self.settings.broker_port)

    def _on_message(self, client, userdata, message) -> None:
        self._queue.put((message.topic, message.payload))
        self.metrics.set("queue_depth", self._queue.qsize())

    # ------------------------------------------------------- writer thread

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            topic, payload = item
            try:
                self.handle(topic, payload)
            except Exception:
                # A bug here must not stop the ingest of every other school.
                self.metrics.add("internal_errors")
                log.exception("city link: message on %s dropped; payload %s", topic, truncate(payload))
            finally:
                self.metrics.set("queue_depth", self._queue.qsize())

    def handle(self, topic: str, payload: bytes) -> None:
        """Check, store and ack one message (the writer thread's work)."""
        try:
            school, leaf = parse_city_topic(topic)
            if leaf == "records":
                self.metrics.add("batches")
                self._ingest_batch(school, payload)
            elif leaf == "gateway":
                state = parse_gateway_state(school, payload)
                if state is not None:
                    self.store.set_gateway_state(school, state.online, state.gateway, self.now())
                    self.metrics.add("gateway_states")
        except StoreWriteError as e:
            self.metrics.add("store_errors")
            log.error("city link: %s not stored: %s", topic, e)
        except BatchError as e:
            self.metrics.reject(e.reason)
            log.warning("city link: refused %s (%s): %s; payload %s", topic, e.reason, e, truncate(payload))

    def _ingest_batch(self, school: str, payload: bytes) -> None:
        batch = parse_batch(school, payload)
        for i, bad in enumerate(batch.bad):
            self.metrics.reject(bad.reason)
            if i < _BAD_RECORDS_LOGGED:
                log.warning("city link: school %s: refused a record (%s): %s; record %s",
                            school, bad.reason, bad.message, truncate(bad.raw))
        if len(batch.bad) > _BAD_RECORDS_LOGGED:
            log.warning("city link: school %s: %d more records refused in this batch", school, len(batch.bad) - _BAD_RECORDS_LOGGED)
        try:
            result = self.store.store_batch(batch, self.now())
        except StoreWriteError as e:
            # Not acked: the gateway keeps the records and sends them again.
            self.metrics.add("store_errors")
            log.error("city link: school %s: batch not stored, not acked: %s", school, e)
            return
        self.metrics.add("records_stored", result.stored)
        self.metrics.add("duplicates", result.duplicates)
        self.metrics.add("records_set_aside", result.set_aside)
        self.metrics.add("unusable_bodies", result.unusable_bodies)
        log.debug("school %s: stored %d, duplicates %d, acked %d", school, result.stored, result.duplicates, result.acked)
        self.client.publish(
            city_topic(school, "ack"),
            encode({"v": 1, "school": school, "acked": result.acked}),
            qos=1,
        )
        self.metrics.add("acks_published")
