"""The gateway's Prometheus metrics, exposed with prometheus_client: a
collector reads the gateway's counters at scrape time, so the counting
itself stays one dict increment on the loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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
