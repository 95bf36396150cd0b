# The flash outbox (firmware/outbox.py): order, reopening, pop durability, the
# cap and its drop counters. Runs under CPython and in the MicroPython VM
# (whose RAM filesystem has open, rename, remove, stat). The exhaustive
# power-loss tests are CPython only: tests/test_outbox_power_loss.py.
import os

from firmware.outbox import EVENT, MAX_PAYLOAD, TELEMETRY, Outbox

from ._util import fresh, raises, wipe


def msg(i):
    return ('{"seq":%d}' % i).encode()


def drain(ob):
    out = []
    while True:
        rec = ob.peek()
        if rec is None:
            return out
        out.append(rec)
        assert ob.pop() is True


def test_records_come_out_in_append_order_with_their_kind():
    d = fresh("order")
    ob = Outbox(d)
    assert ob.peek() is None and len(ob) == 0
    for i in range(6):
        assert ob.append(msg(i), telemetry=i % 3 == 2) is True
    assert len(ob) == 6
    out = drain(ob)
    assert [p for _, p in out] == [msg(i) for i in range(6)]
    assert [k for k, _ in out] == [EVENT, EVENT, TELEMETRY, EVENT, EVENT, TELEMETRY]
    assert len(ob) == 0 and ob.bytes_used == 0
    wipe(d)


def test_peek_does_not_consume():
    d = fresh("peek")
    ob = Outbox(d)
    ob.append(msg(1))
    assert ob.peek() == (EVENT, msg(1))
    assert ob.peek() == (EVENT, msg(1))
    assert len(ob) == 1
    wipe(d)


def test_reopen_keeps_unsent_records_in_order():
    d = fresh("reopen")
    ob = Outbox(d, segment=64)  # several segments per kind
    for i in range(12):
        ob.append(msg(i), telemetry=i % 2 == 1)
    for _ in range(3):
        ob.peek()
        ob.pop()
    used = ob.bytes_used
    ob = Outbox(d, segment=64)
    assert len(ob) == 9 and ob.bytes_used == used
    ob.append(msg(12))
    assert [p for _, p in drain(ob)] == [msg(i) for i in range(3, 13)]
    wipe(d)


def test_pop_is_durable_across_reopen():
    d = fresh("durable")
    ob = Outbox(d)
    for i in range(4):
        ob.append(msg(i))
    ob.peek()
    ob.pop()
    ob.peek()
    ob.pop()
    ob = Outbox(d)
    assert ob.peek() == (EVENT, msg(2))
    assert len(ob) == 2
    wipe(d)


def test_sent_segments_are_deleted():
    d = fresh("deleted")
    ob = Outbox(d, segment=40)
    for i in range(6):
        ob.append(msg(i), telemetry=i == 5)
    assert len(os.listdir(d)) > 2
    drain(ob)
    assert os.listdir(d) == ["sent"]
    ob = Outbox(d)  # ids go on after the last one sent
    ob.append(msg(9))
    assert drain(Outbox(d)) == [(EVENT, msg(9))]
    wipe(d)


def test_cap_drops_oldest_telemetry_first_then_oldest_events():
    d = fresh("cap")
    rec = len(msg(10)) + 12  # 21 bytes on flash
    ob = Outbox(d, cap=10 * rec, segment=2 * rec)
    for i in range(10, 14):
        ob.append(msg(i))
    for i in range(20, 26):
        ob.append(msg(i), telemetry=True)
    assert ob.bytes_used == 10 * rec and ob.dropped == 0
    ob.append(msg(14))  # full: the oldest telemetry segment (20, 21) goes
    assert ob.dropped == 2 and ob.dropped_tele == 2
    assert len(ob) == 9 and ob.bytes_used <= ob.cap
    for i in range(15, 20):
        ob.append(msg(i))
    assert ob.dropped == ob.dropped_tele == 6  # all telemetry went before any event
    ob.append(msg(20))
    assert ob.dropped == 8 and ob.dropped_tele == 6  # then the oldest events: 10, 11
    out = drain(ob)
    assert [p for _, p in out] == [msg(i) for i in range(12, 21)]
    assert Outbox(d).dropped == 8  # the counters survive a reset
    wipe(d)


def test_a_record_dropped_while_being_published_is_not_popped():
    d = fresh("inflight")
    rec = len(msg(10)) + 12
    ob = Outbox(d, cap=4 * rec, segment=rec)
    ob.append(msg(10), telemetry=True)
    ob.append(msg(11))
    assert ob.peek() == (TELEMETRY, msg(10))
    for i in range(12, 15):  # while it is "in flight", the cap drops it
        ob.append(msg(i))
    assert ob.dropped_tele == 1
    assert ob.pop() is False  # not the record the publisher sent
    assert ob.peek() == (EVENT, msg(11))
    assert ob.pop() is True
    wipe(d)


def test_oversized_payload_is_rejected():
    d = fresh("oversized")
    ob = Outbox(d)
    raises(ValueError, ob.append, b"x" * (MAX_PAYLOAD + 1))
    assert len(ob) == 0
    assert ob.append(b"x" * MAX_PAYLOAD) is True
    assert ob.peek() == (EVENT, b"x" * MAX_PAYLOAD)
    wipe(d)


def test_max_payload_is_the_protocols():
    from protocol.wire import MAX_BOARD_PAYLOAD

    assert MAX_PAYLOAD == MAX_BOARD_PAYLOAD


def rewrite(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_torn_last_record_is_lost_alone_and_appends_go_on():
    d = fresh("torn")
    ob = Outbox(d)
    for i in range(3):
        ob.append(msg(i))
    raw = read(d + "/e1")
    rewrite(d + "/e1", raw[: len(raw) - 5])  # power cut in the last write
    said = []
    ob = Outbox(d, log=said.append)
    assert len(ob) == 2 and said
    ob.append(msg(3))
    assert [p for _, p in drain(ob)] == [msg(0), msg(1), msg(3)]
    wipe(d)


def test_corrupt_record_in_the_middle_is_skipped():
    d = fresh("corrupt")
    ob = Outbox(d)
    for i in range(3):
        ob.append(msg(i))
    raw = bytearray(read(d + "/e1"))
    raw[len(msg(0)) + 12 + 10] ^= 0xFF  # in the second record's payload
    rewrite(d + "/e1", raw)
    assert [p for _, p in drain(Outbox(d))] == [msg(0), msg(2)]
    wipe(d)


def test_damaged_sent_marker_resends_rather_than_loses():
    d = fresh("marker")
    ob = Outbox(d)
    for i in range(3):
        ob.append(msg(i))
    ob.peek()
    ob.pop()
    rewrite(d + "/sent", b"garbage")
    said = []
    ob = Outbox(d, log=said.append)
    assert said and len(ob) == 3
    wipe(d)


def test_unknown_files_are_left_alone():
    d = fresh("unknown")
    rewrite(d + "/notes", b"x")
    rewrite(d + "/e", b"x")
    ob = Outbox(d)
    ob.append(msg(1))
    assert drain(Outbox(d)) == [(EVENT, msg(1))]
    assert sorted(os.listdir(d)) == ["e", "notes", "sent"]
    wipe(d)
