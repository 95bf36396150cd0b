"""Per-room limits on what one client can cost the gateway: the records it
makes the gateway store and the log lines it makes it write. A board sends
a few messages a minute, and a burst when its flash outbox drains after an
outage; a flood beyond that is refused and counted, and the other rooms
keep their latency (docs/gateway.md, "Limits")."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# A board's outbox holds a few hundred records, sent in one go after an
# outage: the bucket lets that through, then a sustained 20 records/s.
BURST = 2000
RATE_PER_S = 20.0
LOG_BURST = 20
LOG_PER_S = 0.2  # one line every 5 s once the burst is spent


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RoomBuckets:
    burst: float = BURST
    rate: float = RATE_PER_S
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, room: str, now: float) -> bool:
        b = self._buckets.get(room)
        if b is None:
            b = self._buckets[room] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + max(0.0, now - b.at) * self.rate)
        b.at = now
        if b.tokens < 1:
            return False
        b.tokens -= 1
        return True


@dataclass
class LogLimiter:
    """At most LOG_BURST warnings per room, then one every 5 s (monotonic
    time: the gateway's clock may be simulated)."""

    buckets: RoomBuckets = field(default_factory=lambda: RoomBuckets(LOG_BURST, LOG_PER_S))

    def allow(self, room: str) -> bool:
        return self.buckets.take(room, time.monotonic())
