"""Counters for the city ingest, read by /metrics in the Prometheus text
format. Labels carry reasons only, never a school or room name: the series
count stays fixed however many schools the city has."""

from __future__ import annotations

import threading

from protocol.citylink import REASONS

COUNTERS = {
    "batches": "Record batches received (valid or not).",
    "records_stored": "Records stored for the first time.",
    "duplicates": "Records received again and not stored (replays, QoS 1 redelivery).",
    "records_set_aside": "Refused records kept in rejected_records so the ack can pass them.",
    "unusable_bodies": "Stored records whose body could not update the room view.",
    "gateway_states": "Gateway online/offline messages applied.",
    "acks_published": "Acks published to gateways.",
    "store_errors": "Batches not stored because the database failed (not acked; the gateway resends).",
    "internal_errors": "Messages dropped by an unexpected error in the city code (a bug: see the log).",
    "connects": "Connections to the city broker.",
}
GAUGES = {
    "broker_connected": "1 while connected and subscribed to the city broker.",
    "queue_depth": "Messages received and waiting for the database writer.",
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters = {name: 0 for name in COUNTERS}
        self.gauges = {name: 0 for name in GAUGES}
        self.rejected = {reason: 0 for reason in REASONS}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self.gauges[name] = value

    def snapshot(self) -> dict:
        with self._lock:
            return {**self.counters, **self.gauges, "rejected": dict(self.rejected)}

    def prometheus(self) -> str:
        snap = self.snapshot()
        lines = []
        for name, text in COUNTERS.items():
            lines += [f"# HELP preau_city_{name}_total {text}", f"# TYPE preau_city_{name}_total counter",
                      f"preau_city_{name}_total {snap[name]}"]
        for name, text in GAUGES.items():
            lines += [f"# HELP preau_city_{name} {text}", f"# TYPE preau_city_{name} gauge", f"preau_city_{name} {snap[name]}"]
        lines += ["# HELP preau_city_rejected_total Payloads and records refused, by reason.",
                  "# TYPE preau_city_rejected_total counter"]
        lines += [f'preau_city_rejected_total{{reason="{reason}"}} {count}' for reason, count in sorted(snap["rejected"].items())]
        return "\n".join(lines) + "\n"
