# Events of one boot: numbered from 1 without gaps. On the board they go to
# the flash outbox (firmware/outbox.py) as encoded JSON, so they survive a
# reset and leave in order once the broker is back; the outbox drops oldest
# (telemetry first) and counts. Without an outbox (pure logic tests) they
# stay in a bounded RAM queue that drops oldest and counts the same way.
from protocol.wire import encode


class Events:
    def __init__(self, boot, clock, outbox=None, on_emit=None, capacity=64):
        self.boot = boot
        self.on_emit = on_emit  # wakes whoever sends them
        self.clock = clock
        self.outbox = outbox
        self.capacity = capacity
        self.seq = 0
        self.queue = []  # without an outbox only
        self.dropped = 0  # oversized, or the RAM queue's oldest (without an outbox)
        self.flash_errors = 0

    def next_seq(self):
        return self.seq + 1

    def emit(self, kind, data):
        self.seq += 1
        evt = {
            "v": 1,
            "boot": self.boot,
            "seq": self.seq,
            "uptime_ms": self.clock.uptime_ms(),
            "time": self.clock.time(),  # None until the gateway gave the time
            "type": kind,
            "data": data,
        }
        if self.outbox is not None:
            try:
                if not self.outbox.append(encode(evt)):
                    # flash refused the write: the outbox counts it dropped; the
                    # LED shows a fault
                    self.flash_errors += 1
            except ValueError:  # over the protocol's payload limit: a bug, counted, never fatal
                self.dropped += 1
        else:
            if len(self.queue) >= self.capacity:
                self.queue.pop(0)
                self.dropped += 1
            self.queue.append(evt)
        if self.on_emit is not None:
            self.on_emit()
        return self.seq
