"""firmware/mqtt.py under CPython: exact frames against a scripted raw TCP
broker, then behaviour against real brokers (Mosquitto and amqtt) with paho as
the independent peer. No test asserts a wall-clock duration; waits are bounded
only so that a failure cannot hang the suite."""

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading

import paho.mqtt.client as paho
import pytest

from devkit.brokers import Mosquitto, free_port
from firmware.mqtt import MQTTClient, MQTTError, backoff_wait, encode_length
from tests.helpers import await_for, run

ROOM = "preau/v1/0341234a/cm2-b/"
FAST = (20, 200)  # backoff_ms for tests: reconnects are quick but still doubled


async def until(cond, what, timeout=5.0):
    await await_for(cond, timeout, interval=0.01, what=what)


async def stop(client, task):
    await client.disconnect()
    await asyncio.wait_for(task, 5)  # run() returns after disconnect()
    assert not client.up


class Peer:
    """paho-mqtt 2.x in its own thread: the independent client on the broker."""

    def __init__(self, broker, *topics, client_id=""):
        self.messages = []  # (topic, payload, retain, qos)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subacks = threading.Semaphore(0)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subacks.release()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(5), "paho could not connect"
        for t in topics:
            self.client.subscribe(t, qos=1)
            assert self._subacks.acquire(timeout=5), "paho got no SUBACK"

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), msg.qos))

    def payloads(self, topic=None):
        with self._lock:
            return [m[1] for m in self.messages if topic is None or m[0] == topic]

    async def wait(self, n, topic=None):
        await until(lambda: len(self.payloads(topic)) >= n, "%d messages at paho, got %r" % (n, self.messages))
        return self.payloads(topic)

    def publish(self, topic, payload, qos=0, retain=False):
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


# ----- pure -----


def test_encode_length_uses_one_to_four_bytes():
    assert encode_length(0) == b"\x00"
    assert encode_length(127) == b"\x7f"
    assert encode_length(128) == b"\x80\x01"
    assert encode_length(16383) == b"\xff\x7f"
    assert encode_length(16384) == b"\x80\x80\x01"
    assert encode_length(2097151) == b"\xff\xff\x7f"
    assert encode_length(2097152) == b"\x80\x80\x80\x01"
    assert encode_length(268435455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        encode_length(268435456)


def test_backoff_wait_is_between_half_and_the_whole_delay():
    assert backoff_wait(1000, 0) == 500
    assert backoff_wait(1000, 255) == 998
    assert all(500 <= backoff_wait(1000, r) <= 1000 for r in range(256))
    assert backoff_wait(1, 255) == 0


def test_reconnect_backoff_doubles_up_to_the_maximum():
    waits = []

    async def main():
        c = MQTTClient("b", "127.0.0.1", free_port(), backoff_ms=(100, 800))  # nobody listens

        async def pause(ms):  # the one place run() waits: record instead of sleeping
            waits.append(ms)
            if len(waits) == 6:
                await c.disconnect()

        c._pause = pause
        await c.run()  # returns after disconnect()
        assert c.connects == 0 and c.errors == 6
        assert isinstance(c.last_error, ConnectionRefusedError)

    run(main())
    for wait, delay in zip(waits, (100, 200, 400, 800, 800, 800), strict=True):
        assert delay // 2 <= wait <= delay


def test_publish_rejects_wildcard_and_empty_topics():
    async def main():
        c = MQTTClient("b", "127.0.0.1", 1)
        for topic in ("", "preau/v1/+/cm2-b/evt", b"preau/#"):
            with pytest.raises(ValueError):
                await c.publish(topic, b"{}", qos=1)
        assert len(c._inflight) == 0

    run(main())


# ----- a scripted broker at the byte boundary -----


async def read_packet(r):
    """Test-side decoder, independent of the client's."""
    first = (await r.readexactly(1))[0]
    n, shift = 0, 0
    while True:
        b = (await r.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, await r.readexactly(n)


def frame(first, body):
    return bytes([first]) + encode_length(len(body)) + body


def s16(b):
    return len(b).to_bytes(2, "big") + b


CONNACK_OK = b"\x20\x02\x00\x00"


class RawBroker:
    """Loopback TCP server; the n-th accepted connection runs scripts[n]
    (the last one repeats). Each script gets (reader, writer)."""

    def __init__(self, *scripts):
        self.scripts = scripts
        self.accepted = 0
        self.server = None
        self.port = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, r, w):
        script = self.scripts[min(self.accepted, len(self.scripts) - 1)]
        self.accepted += 1
        try:
            await script(r, w)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()


async def closed_by_client(r):
    """True when the client closed the connection (EOF), reading whatever it
    still sends."""
    try:
        while await r.read(100):
            pass
    except OSError:
        pass
    return True


def test_exact_frames_connect_publish_subscribe_puback():
    seen = {}
    got = []

    async def script(r, w):
        seen["connect"] = frame(*await read_packet(r))
        w.write(CONNACK_OK)
        seen["subscribe"] = frame(*await read_packet(r))  # remembered before run()
        w.write(b"\x90\x03" + seen["subscribe"][2:4] + b"\x01")
        seen["publish"] = frame(*await read_packet(r))
        at = 4 + len(ROOM + "evt")  # header, length, topic length, topic
        w.write(b"\x40\x02" + seen["publish"][at : at + 2])  # PUBACK that packet id
        # 300-byte payload: a 2-byte remaining length on the way in.
        w.write(frame(0x33, s16(ROOM.encode() + b"cmd") + b"\x00\x07" + b"x" * 300))
        seen["puback"] = frame(*await read_packet(r))
        await closed_by_client(r)

    async def on_message(topic, payload, retain):  # an async callback is awaited
        got.append((topic, payload, retain))

    async def main():
        async with RawBroker(script) as b:
            c = MQTTClient(
                "board-7", "127.0.0.1", b.port, user="room", password="pw", keepalive=30,
                will=(ROOM + "state", b'{"v": 1, "online": false, "boot": 7}', True, 1),
                on_message=on_message,
            )
            await c.subscribe(ROOM + "cmd", qos=1)
            task = asyncio.create_task(c.run())
            await until(lambda: c.up, "CONNACK")
            pid = await c.publish(ROOM + "evt", b'{"v": 1}', qos=1)
            assert await c.wait_puback(pid, 5000)
            assert len(c._inflight) == 0
            await until(lambda: "puback" in seen, "our PUBACK")
            await stop(c, task)
            return pid

    pid = run(main())
    will_topic = (ROOM + "state").encode()
    assert seen["connect"] == frame(
        0x10,
        b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02]) + b"\x00\x1e"
        + s16(b"board-7") + s16(will_topic) + s16(b'{"v": 1, "online": false, "boot": 7}')
        + s16(b"room") + s16(b"pw"),
    )
    assert seen["subscribe"] == frame(0x82, seen["subscribe"][2:4] + s16((ROOM + "cmd").encode()) + b"\x01")
    assert seen["publish"] == frame(0x32, s16((ROOM + "evt").encode()) + pid.to_bytes(2, "big") + b'{"v": 1}')
    assert seen["puback"] == b"\x40\x02\x00\x07"
    assert got == [((ROOM + "cmd").encode(), b"x" * 300, True)]


def test_three_byte_remaining_length_within_max_packet():
    got = []

    async def script(r, w):
        await read_packet(r)
        w.write(CONNACK_OK)
        w.write(frame(0x30, s16(b"big") + bytes(range(256)) * 80))  # 20485 bytes: 3-byte length
        await closed_by_client(r)

    async def main():
        async with RawBroker(script) as b:
            c = MQTTClient("b", "127.0.0.1", b.port, max_packet=70000,
                           on_message=lambda t, p, r: got.append((t, p, r)))
            task = asyncio.create_task(c.run())
            await until(lambda: got, "the large message")
            await stop(c, task)

    run(main())
    assert got == [(b"big", bytes(range(256)) * 80, False)]


def test_qos1_retransmitted_with_dup_until_puback():
    sent = []

    async def script(r, w):
        await read_packet(r)
        w.write(CONNACK_OK)
        sent.append(frame(*await read_packet(r)))  # no PUBACK: the client must retry
        sent.append(frame(*await read_packet(r)))
        w.write(b"\x40\x02" + sent[1][9:11])  # after 0x3a, length, topic "t/evt"
        await closed_by_client(r)

    async def main():
        async with RawBroker(script) as b:
            c = MQTTClient("b", "127.0.0.1", b.port, retry_ms=100)
            task = asyncio.create_task(c.run())
            await until(lambda: c.up, "CONNACK")
            pid = await c.publish("t/evt", "one", qos=1)
            assert await c.wait_puback(pid, 5000)
            assert c.retransmits >= 1
            assert c.connects == 1  # retried on the same connection
            await stop(c, task)
            return pid

    pid = run(main())
    body = s16(b"t/evt") + pid.to_bytes(2, "big") + b"one"
    assert sent == [frame(0x32, body), frame(0x3A, body)]  # same id, DUP set


def test_silent_broker_is_pinged_then_dropped_and_reconnected():
    pings = []

    async def deaf(r, w):  # accepts, then never answers anything
        await read_packet(r)
        w.write(CONNACK_OK)
        pings.append(frame(*await read_packet(r)))
        await closed_by_client(r)

    async def healthy(r, w):
        await read_packet(r)
        w.write(CONNACK_OK)
        while True:
            first, _ = await read_packet(r)
            if first == 0xC0:
                w.write(b"\xd0\x00")

    async def main():
        async with RawBroker(deaf, healthy) as b:
            c = MQTTClient("b", "127.0.0.1", b.port, keepalive=1, backoff_ms=FAST)
            task = asyncio.create_task(c.run())
            await until(lambda: c.connects == 2 and c.up, "the reconnect")
            assert "keepalive" in str(c.last_error)
            await stop(c, task)

    run(main())
    assert pings == [b"\xc0\x00"]


def test_malformed_and_oversized_packets_close_the_connection_and_the_client_reconnects():
    errors = []
    got = []
    garbage = [
        b"\x30\x89\x27",  # PUBLISH announcing 5001 bytes > max_packet 4096; body never sent
        b"\x30\xff\xff\xff\xff\x01",  # remaining length with a 5th byte
        b"\x10\x00",  # a CONNECT sent by the "broker"
        frame(0x32, b"\x00\x64abc"),  # topic length 100 in a 5-byte packet
        frame(0x34, s16(b"t") + b"\x00\x01x"),  # QoS 2: we never subscribe above QoS 1
    ]

    def bad(n):
        async def script(r, w):
            await read_packet(r)
            w.write(CONNACK_OK + garbage[n])
            await closed_by_client(r)  # the client must hang up on its own
        return script

    async def good(r, w):
        await read_packet(r)
        w.write(CONNACK_OK + frame(0x32, s16(b"t") + b"\x00\x09ok"))
        assert frame(*await read_packet(r)) == b"\x40\x02\x00\x09"
        await closed_by_client(r)

    async def main():
        async with RawBroker(*[bad(i) for i in range(len(garbage))], good) as b:
            c = MQTTClient("b", "127.0.0.1", b.port, backoff_ms=FAST,
                           on_message=lambda t, p, r: got.append(p))

            async def on_connect():
                errors.append(str(c.last_error))

            c.on_connect = on_connect
            task = asyncio.create_task(c.run())
            await until(lambda: got, "the good message after the garbage", timeout=10)
            assert c.connects == len(garbage) + 1
            assert c.errors >= len(garbage)
            await stop(c, task)

    run(main())
    assert got == [b"ok"]
    reasons = errors[1:]  # last_error when each next connection came up
    assert "5001 > max_packet" in reasons[0]
    assert "length > 4 bytes" in reasons[1]
    assert "unexpected type 0x10" in reasons[2]
    assert "overruns" in reasons[3]
    assert "QoS 2" in reasons[4]


def test_a_failing_on_message_is_counted_and_the_message_still_acked():
    async def script(r, w):
        await read_packet(r)
        w.write(CONNACK_OK + frame(0x32, s16(b"t") + b"\x00\x05boom") + frame(0x30, s16(b"t") + b"fine"))
        assert frame(*await read_packet(r)) == b"\x40\x02\x00\x05"
        await closed_by_client(r)

    got = []

    def on_message(topic, payload, retain):
        if payload == b"boom":
            raise ValueError("app bug")
        got.append(payload)

    async def main():
        async with RawBroker(script) as b:
            c = MQTTClient("b", "127.0.0.1", b.port, on_message=on_message)
            task = asyncio.create_task(c.run())
            await until(lambda: got, "the second message")
            assert isinstance(c.last_error, ValueError)
            assert c.connects == 1 and c.errors == 1
            await stop(c, task)

    run(main())
    assert got == [b"fine"]


def test_puback_between_wait_start_and_its_inner_task_is_not_lost():
    # Regression: wait_for() runs event.wait() in a task that starts one loop
    # step later; a PUBACK in that gap used to be missed until the timeout.
    async def main():
        c = MQTTClient("b", "127.0.0.1", 1)
        pid = await c.publish("t", b"x", qos=1)  # down: queued
        waiter = asyncio.create_task(c.wait_puback(pid, 60000))
        await asyncio.sleep(0)  # the waiter is inside wait_for, its inner task not yet run
        r = asyncio.StreamReader()  # the PUBACK, through the client's own reader
        r.feed_data(b"\x40\x02" + pid.to_bytes(2, "big"))
        r.feed_eof()
        await c._read_loop(r, 0)
        assert await asyncio.wait_for(waiter, 5) is True
        assert len(c._inflight) == 0

    run(main())


# ----- real brokers, paho as the peer -----


def test_publish_qos0_and_qos1_reach_paho(broker):
    peer = Peer(broker, ROOM + "#")

    async def main():
        c = MQTTClient("b-pub", broker.host, broker.port)
        task = asyncio.create_task(c.run())
        await until(lambda: c.up, "connect")
        assert await c.publish(ROOM + "tele", '{"v": 1, "n": 0}') is None
        pid = await c.publish((ROOM + "evt").encode(), b'{"v": 1, "n": 1}', qos=1)
        assert await c.wait_puback(pid, 5000) and c.acked(pid)
        assert len(c._inflight) == 0
        await peer.wait(2)
        await stop(c, task)

    try:
        run(main())
    finally:
        peer.close()
    # amqtt 0.12 forwards at the subscription's QoS, not min(publish,
    # subscription) (broker.py: `broadcast.get("qos", sub_qos)`); the QoS 0
    # frame itself is pinned by the byte-level test.
    tele_qos = 0 if isinstance(broker, Mosquitto) else 1
    assert sorted(peer.messages) == [
        (ROOM + "evt", b'{"v": 1, "n": 1}', False, 1),
        (ROOM + "tele", b'{"v": 1, "n": 0}', False, tele_qos),
    ]


def test_subscribe_receives_retained_qos0_and_qos1(broker):
    peer = Peer(broker)
    peer.publish(ROOM + "policy", b'{"v": 1, "start": true, "max_s": 2700, "ap": false}', qos=1, retain=True)
    got = []

    async def main():
        c = MQTTClient("b-sub", broker.host, broker.port, on_message=lambda t, p, r: got.append((t, p, r)))
        await c.subscribe(ROOM + "policy")  # before run(): remembered, sent at connect
        task = asyncio.create_task(c.run())
        await until(lambda: got, "the retained policy")
        await c.subscribe(ROOM + "cmd", qos=1)  # while up: sent now
        # No SUBACK in the API: once a probe gets through, the broker has the
        # subscription (the ones sent before it are dropped).
        for _ in range(200):
            peer.publish(ROOM + "cmd", b"probe", qos=1)
            await asyncio.sleep(0.05)
            if len(got) > 1:
                break
        else:
            raise AssertionError("no probe got through: the subscription was not made")
        peer.publish(ROOM + "cmd", b'{"v": 1, "id": "t-1", "cmd": "end"}', qos=1)
        peer.publish(ROOM + "cmd", b'{"v": 1, "id": "t-2", "cmd": "end"}', qos=0)
        await until(lambda: len(commands()) == 3, "two commands")
        await stop(c, task)

    def commands():
        return [g for g in got if g[1] != b"probe"]

    try:
        run(main())
    finally:
        peer.close()
    assert commands() == [
        ((ROOM + "policy").encode(), b'{"v": 1, "start": true, "max_s": 2700, "ap": false}', True),
        ((ROOM + "cmd").encode(), b'{"v": 1, "id": "t-1", "cmd": "end"}', False),
        ((ROOM + "cmd").encode(), b'{"v": 1, "id": "t-2", "cmd": "end"}', False),
    ]


BIRTH = b'{"v": 1, "online": true, "boot": 7}'
DEATH = b'{"v": 1, "online": false, "boot": 7}'


def board(broker, **kw):
    c = MQTTClient("board-cm2-b", broker.host, broker.port, keepalive=30, backoff_ms=FAST,
                   will=(ROOM + "state", DEATH, True, 1), **kw)

    async def on_connect():
        await c.publish(ROOM + "state", BIRTH, retain=True, qos=1)

    c.on_connect = on_connect
    return c


def test_last_will_published_when_the_socket_dies_and_birth_after_reconnect(broker):
    peer = Peer(broker, ROOM + "state")

    async def main():
        c = board(broker)
        task = asyncio.create_task(c.run())
        assert await peer.wait(1) == [BIRTH]
        # Kill the TCP connection without DISCONNECT, as a power cut or Wi-Fi
        # loss would (CPython only: the stream's transport).
        c._writer.transport.abort()
        await peer.wait(3)  # the will, then the birth of the new connection
        assert c.connects == 2 and c.disconnects == 1
        await stop(c, task)

    try:
        run(main())
    finally:
        peer.close()
    assert peer.payloads() == [BIRTH, DEATH, BIRTH]


def test_no_last_will_after_clean_disconnect(broker):
    peer = Peer(broker, ROOM + "state", ROOM + "marker")

    async def main():
        c = board(broker)
        task = asyncio.create_task(c.run())
        await peer.wait(1)
        await stop(c, task)
        # A marker published after the DISCONNECT: once it is in, a will
        # would have been too.
        await asyncio.sleep(0.3)
        peer.publish(ROOM + "marker", b"after", qos=1)
        await peer.wait(1, ROOM + "marker")
        assert c.disconnects == 1

    try:
        run(main())
    finally:
        peer.close()
    assert peer.payloads(ROOM + "state") == [BIRTH]


def test_qos1_published_while_the_broker_is_down_arrive_after_restart_in_order(open_mosquitto):
    mosquitto = open_mosquitto
    peers = [Peer(mosquitto, ROOM + "#")]

    async def main():
        gate = asyncio.Event()
        c = board(mosquitto, max_inflight=10)
        birth = c.on_connect

        async def on_connect():
            if c.connects > 1:  # hold the reconnect until paho listens again
                await gate.wait()
            await birth()

        c.on_connect = on_connect
        task = asyncio.create_task(c.run())
        await peers[0].wait(1)
        pid = await c.publish(ROOM + "evt", b"seq 0", qos=1)
        assert await c.wait_puback(pid, 5000)
        peers[0].close()

        mosquitto.stop()
        await until(lambda: not c.up, "the client to see the broker go")
        with pytest.raises(OSError):
            await c.publish(ROOM + "tele", b"qos0 needs a connection")
        pids = [await c.publish(ROOM + "evt", b"seq %d" % i, qos=1) for i in range(1, 11)]
        assert len(c._inflight) == 10
        with pytest.raises(OSError, match="inflight full"):
            await c.publish(ROOM + "evt", b"seq 11", qos=1)
        errors = c.errors
        await until(lambda: c.errors > errors + 1, "failed reconnect attempts")

        mosquitto.start()  # same port
        peers.append(Peer(mosquitto, ROOM + "#"))
        gate.set()
        for p in pids:
            assert await c.wait_puback(p, 5000)
        got = await peers[1].wait(11)
        assert c.connects == 2
        assert len(c._inflight) == 0
        await stop(c, task)
        return got

    try:
        got = run(main())
    finally:
        for p in peers:
            p.close()
    # the birth goes first (on_connect runs before the backlog), then every
    # queued event once, in order
    assert got == [BIRTH] + [b"seq %d" % i for i in range(1, 11)]


@pytest.fixture
def password_broker():
    # Mosquitto started as root drops to the `mosquitto` user: the password
    # file must be readable by it, so not in a private temporary directory.
    d = tempfile.mkdtemp(prefix="preau-pw-")
    os.chmod(d, 0o755)
    pw = os.path.join(d, "passwd")
    subprocess.run(["mosquitto_passwd", "-b", "-c", pw, "cm2-b", "right"], check=True, capture_output=True)
    os.chmod(pw, 0o644)
    m = Mosquitto(extra_config="allow_anonymous false\npassword_file %s\n" % pw).start()
    yield m
    m.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_connack_refusal_is_a_clear_mqtt_error_and_retried(password_broker):
    m = password_broker

    async def main():
        c = MQTTClient("board", m.host, m.port, user="cm2-b", password="wrong", backoff_ms=FAST)
        task = asyncio.create_task(c.run())
        await until(lambda: c.errors >= 2, "two refused attempts")  # keeps retrying
        e = c.last_error
        assert isinstance(e, MQTTError) and isinstance(e, OSError)
        assert e.rc == 5
        assert str(e) == "connection refused (CONNACK 5)"
        assert not c.up and c.connects == 0
        task.cancel()  # cancellation also stops run()
        with pytest.raises(asyncio.CancelledError):
            await task

        ok = MQTTClient("board", m.host, m.port, user="cm2-b", password="right")
        task = asyncio.create_task(ok.run())
        await until(lambda: ok.up, "the connection with the right password")
        assert await ok.wait_puback(await ok.publish(ROOM + "evt", b"{}", qos=1), 5000)
        await stop(ok, task)

    run(main())
