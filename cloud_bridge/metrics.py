"""The city's Prometheus metrics (prometheus_client), one registry per
service instance, so tests and a demo can run several cities in a process.
Labels carry reasons only, never a school or room name: the series count
stays fixed however many schools the city has."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from protocol.citylink import REASONS

PREFIX = "preau_city_"
# Refusals the city adds to the contract's reasons (protocol/citylink.py):
# a payload its checks could not even read (nested deeper than the JSON
# decoder goes, say): counted, logged, never a crash; a batch or gateway
# state from a school the CA gave no gateway certificate, or naming another
# gateway than the one its certificate was issued to (cloud_bridge/register.py).
CITY_REASONS = ("unreadable", "gateway_unknown", "gateway_mismatch")
# The gateways online are read from the database at a scrape, at most this
# often: Prometheus scrapes every 15 s or so, a city's status is a few reads.
GATEWAYS_READ_EVERY_S = 15.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, text: str) -> Counter:
            return Counter(PREFIX + name, text, registry=self.registry)

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(PREFIX + name, text, registry=self.registry)

        self.batches = counter("batches", "Record batches received (valid or not).")
        self.records_stored = counter("records_stored", "Records stored for the first time.")
        self.duplicates = counter(
            "duplicates", "Records received again and not stored (replays, QoS 1 redelivery).")
        self.records_set_aside = counter(
            "records_set_aside", "Refused records kept in rejected_records so the ack can pass them.")
        self.conflicts = counter(
            "conflicts",
            "Records whose seq was stored already with another content: kept in conflicting_records, never applied "
            "(a forged batch, or a gateway whose database was replaced).")
        self.unusable_bodies = counter("unusable_bodies", "Stored records whose body could not update the room view.")
        self.telemetry = counter("telemetry", "Telemetry records stored (each also counts as a record stored).")
        self.dropped = counter(
            "records_dropped",
            "Records a gateway said it will never send (telemetry evicted, or gone when a gap was asked for).")
        self.gap_requests = counter("gap_requests", "Requests published to gateways for missing records.")
        self.gateway_states = counter("gateway_states", "Gateway online/offline messages applied.")
        self.acks_published = counter("acks_published", "Acks published to gateways.")
        self.store_errors = counter(
            "store_errors", "Messages not stored because the database failed (not acked; the gateway resends).")
        self.internal_errors = counter(
            "internal_errors",
            "Messages or records dropped by an unexpected error in the city code (a bug: see the log).")
        self.connects = counter("connects", "Connections to the city broker.")
        self.broker_connected = gauge("broker_connected", "1 while connected and subscribed to the city broker.")
        self.queue_depth = gauge("queue_depth", "Messages received and waiting for the database writer.")
        self.gateways_online = gauge(
            "gateways_online",
            "Schools whose gateway is online as the city knows it (its last state message, or its Last Will), "
            "read from the database: the same city-wide count from every worker; NaN when it cannot be read.")
        self.rejected = Counter(PREFIX + "rejected", "Payloads and records refused, by reason.", ["reason"],
                                registry=self.registry)
        # Every reason at zero, so a dashboard sees the series before the first incident.
        for reason in REASONS + CITY_REASONS:
            self.rejected.labels(reason=reason)

    def watch_gateways(self, count: Callable[[], int | None], every_s: float = GATEWAYS_READ_EVERY_S,
                       clock: Callable[[], float] = time.monotonic) -> None:
        """Feed gateways_online from `count()` (None: the database cannot be
        read now) at scrape time, at most once every `every_s` seconds;
        until then it stays at 0 (an API without its ingest, in tests)."""
        lock = threading.Lock()
        last: list[float | None] = [None, math.nan]  # when read, the value

        def online() -> float:
            with lock:  # two scrapes at once read the database once
                now = clock()
                if last[0] is None or now - last[0] >= every_s:
                    found = count()
                    last[:] = [now, math.nan if found is None else float(found)]
                return last[1]  # type: ignore[return-value]

        self.gateways_online.set_function(online)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    @property
    def broker_up(self) -> bool:
        return bool(self.registry.get_sample_value(PREFIX + "broker_connected"))

    def exposition(self) -> bytes:
        """The Prometheus text format of this registry."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict:
        """Every value by its short name ("batches", "queue_depth"), and the
        refusals by reason under "rejected": for tests and the demo."""
        out: dict = {"rejected": {}}
        for family in self.registry.collect():
            for sample in family.samples:
                if not sample.name.startswith(PREFIX) or sample.name.endswith("_created"):
                    continue
                name = sample.name.removeprefix(PREFIX).removesuffix("_total")
                if name == "rejected":
                    out["rejected"][sample.labels["reason"]] = int(sample.value)
                else:
                    out[name] = int(sample.value) if math.isfinite(sample.value) else sample.value
        return out
