# Events of one boot: numbered from 1 without gaps, kept in a bounded queue
# until the MQTT client has them acknowledged. The queue drops oldest first
# and counts what it dropped (the count travels in telemetry). A flash-backed
# outbox replaces the RAM queue in a later step; the interface stays.


class Events:
    def __init__(self, boot, clock, capacity=64, on_emit=None):
        self.boot = boot
        self.on_emit = on_emit  # wakes whoever sends the queue
        self.clock = clock
        self.capacity = capacity
        self.seq = 0
        self.queue = []
        self.dropped = 0

    def next_seq(self):
        return self.seq + 1

    def emit(self, kind, data):
        self.seq += 1
        evt = {
            "v": 1,
            "boot": self.boot,
            "seq": self.seq,
            "uptime_ms": self.clock.uptime_ms(),
            "time": self.clock.time(),
            "type": kind,
            "data": data,
        }
        if len(self.queue) >= self.capacity:
            self.queue.pop(0)
            self.dropped += 1
        self.queue.append(evt)
        if self.on_emit is not None:
            self.on_emit()
        return self.seq

    def peek(self):
        return self.queue[0] if self.queue else None

    def pop(self):
        return self.queue.pop(0)
