"""The gateway's Prometheus metrics, exposed with prometheus_client: a
collector reads the gateway's counters at scrape time, so the counting
itself stays one dict increment on the loop (or, for the journal's
commit times, one list increment on the journal's thread)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

# A commit on a good SD card takes a few milliseconds (one fsync); a worn
# or stalled card takes seconds, and every acknowledgement to the boards
# waits for it (edge_gateway/journal.py): the buckets span both.
COMMIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_COUNTERS = (
    ("duplicates", "preau_gateway_duplicates", "Repeated messages dropped (QoS 1 redelivery, retained births)."),
    ("conflicts", "preau_gateway_conflicts", "Events with the numbers of a stored one and another content: both kept."),
    ("history", "preau_gateway_history", "Messages from an older boot, stored but not applied."),
    ("events_missing", "preau_gateway_events_missing", "Board events never received (seq gaps)."),
    ("time_sent", "preau_gateway_time_sent", "Clock commands sent to booting boards."),
    ("policies_published", "preau_gateway_policies_published", "Offline policies published to boards."),
    ("config_rejected", "preau_gateway_config_rejected", "Configuration reloads refused."),
    ("internal_errors", "preau_gateway_internal_errors", "Bugs: a message that raised an unexpected error."),
    ("logs_suppressed", "preau_gateway_logs_suppressed", "Warnings not written: one room's flood of bad messages."),
    ("commit_failures", "preau_gateway_commit_failures", "Database commits that failed and were retried."),
    ("fleet_rejected", "preau_gateway_fleet_rejected", "Fleet files refused (unreadable): the keys in force stayed."),
    ("city_acks_ignored", "preau_gateway_city_acks_ignored",
     "City acks beyond what the gateway sent or committed: forged or stale, ignored."),
    ("records_pruned", "preau_gateway_records_pruned",
     "History records deleted: acknowledged by the city and older than history.keep_days."),
    ("telemetry_dropped", "preau_gateway_telemetry_dropped",
     "Telemetry records evicted unsent: the city unreachable past city.telemetry_outbox_max (listed to it as dropped)."),
    ("uplink_bytes", "preau_gateway_uplink_bytes", "Bytes of record batches sent to the city, MQTT and TLS framing included."),
)
_LABELLED = (
    ("accepted", "preau_gateway_messages_accepted", "Board messages that passed validation, by topic leaf.", "leaf"),
    ("rejected", "preau_gateway_messages_rejected", "Board messages rejected, by reason.", "reason"),
    ("decisions", "preau_gateway_decisions", "Answers to lesson requests, by command.", "cmd"),
    ("rate_limited", "preau_gateway_rate_limited", "Board messages refused over a room's rate, by topic leaf.", "leaf"),
)


class CommitTimes:
    """How long the journal's commits took, in COMMIT_BUCKETS_S: observed on
    the journal's thread, read by a scrape on another (a lock keeps the
    buckets, the count and the sum of one moment together)."""

    def __init__(self, buckets: tuple[float, ...] = COMMIT_BUCKETS_S) -> None:
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last: above the largest bucket
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._sum += seconds

    def family(self) -> HistogramMetricFamily:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip((*(repr(float(b)) for b in self.buckets), "+Inf"), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return HistogramMetricFamily(
            "preau_gateway_journal_commit_seconds",
            "Time the journal's database commits took (each transaction, its fsync included; a failed try "
            "is counted in preau_gateway_commit_failures, not here).",
            buckets=cumulative, sum_value=total)


class GatewayCollector(Collector):
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        m = self.gateway.metrics
        h = self.gateway.health()
        for key, name, help_, label in _LABELLED:
            family = CounterMetricFamily(name, help_, labels=[label])
            for value, n in sorted(m[key].items()):
                family.add_metric([value], n)
            yield family
        for key, name, help_ in _COUNTERS:
            yield CounterMetricFamily(name, help_, value=m.get(key, 0))
        yield GaugeMetricFamily("preau_gateway_outbox_records", "Records not yet acknowledged by the city.",
                                value=m["outbox"])
        yield GaugeMetricFamily("preau_gateway_telemetry_outbox_records",
                                "Telemetry records waiting for the city (bounded by city.telemetry_outbox_max).",
                                value=m["telemetry_outbox"])
        yield GaugeMetricFamily("preau_gateway_last_seq", "Sequence number of the last record committed.",
                                value=m["last_seq"])
        yield GaugeMetricFamily("preau_gateway_journal_pending", "Writes handed to the database, not yet committed.",
                                value=m["journal_pending"])
        journal = self.gateway.journal
        # Before the journal opens (or after it closed): the family at zero, so a dashboard sees it.
        yield (journal.commit_times if journal is not None else CommitTimes()).family()
        yield GaugeMetricFamily("preau_gateway_clock_synced",
                                "1 when something vouches for the gateway's clock (NTP, an RTC); 0: lessons refused.",
                                value=m["clock_synced"])
        brokers = GaugeMetricFamily("preau_gateway_broker_connected", "1 when the link to a broker is up.",
                                    labels=["broker"])
        brokers.add_metric(["school"], int(bool(h["school_broker"])))
        if h["city_broker"] is not None:
            brokers.add_metric(["city"], int(bool(h["city_broker"])))
        yield brokers


def make_registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
