"""The board signs every message it publishes (protocol/mac.py), in the real
MicroPython VM: the real application on a fake board, its MQTT client's
connection played at the byte boundary by a fake broker that records every
packet and answers CONNECT, SUBSCRIBE and QoS 1 PUBLISH. The frames are
decoded here and checked with the gateway's own `protocol.mac.verify`.
Also: a wrong key in config.json stops the boot, and the firmware's
HMAC-SHA256 agrees with CPython's hmac."""

from __future__ import annotations

import hashlib
import hmac
import json

import mpvm
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devkit.brokers import Mosquitto
from devkit.sim.classroom import SimClassroom
from hardware.boards import board_json
from protocol import mac
from protocol.wire import ProtocolError
from tests.helpers import Peer, await_for, run

pytestmark = pytest.mark.mpvm

KEY = bytes.fromhex("5f0c3a9e8d7b6a5948372615f4e3d2c1b0a99887766554433221100ffeeddccb")
OTHER_KEY = bytes(32)
ROOM = "preau/v1/0341234a/cm2-b/"

# Runs in the VM. The outbox's first record (the boot event) is read from
# flash before the link comes up, then the board connects, is granted a
# session, queues a telemetry record and shuts down cleanly.
BOARD = r"""
import asyncio, json, os

class Link:
    # The broker's end of the board's TCP connection.
    def __init__(self):
        self.packets = []  # every packet the board wrote, whole
        self.inbox = bytearray()
        self.ready = asyncio.Event()

    async def open(self, host, port):
        return self, self

    def write(self, data):
        pkt = bytes(data)
        self.packets.append(pkt)
        i = 1
        while pkt[i] & 0x80:
            i += 1
        body = pkt[i + 1:]
        kind = pkt[0] & 0xF0
        if kind == 0x10:  # CONNECT: accepted
            self.inbox += b"\x20\x02\x00\x00"
        elif kind == 0x80:  # SUBSCRIBE: granted QoS 1
            self.inbox += bytes((0x90, 3, body[0], body[1], 1))
        elif kind == 0x30 and pkt[0] & 0x06:  # PUBLISH QoS 1: PUBACK
            n = 2 + (body[0] << 8 | body[1])
            self.inbox += bytes((0x40, 2, body[n], body[n + 1]))
        self.ready.set()

    async def drain(self):
        pass

    def close(self):
        pass

    async def wait_closed(self):
        pass

    async def readexactly(self, n):
        while len(self.inbox) < n:
            self.ready.clear()
            await self.ready.wait()
        data = bytes(self.inbox[:n])
        self.inbox = self.inbox[n:]
        return data

link = Link()
asyncio.open_connection = link.open

from firmware.app import Classroom
from firmware.button import SHORT
from firmware.config import validate
from protocol.wire import encode

class Board:
    name = "fake"
    devices = ["button", "led", "ap_relay"]
    relay = False
    def set_relay(self, on):
        self.relay = bool(on)
    def set_led(self, on):
        pass
    def button_pressed(self):
        return False
    def on_button_edge(self, handler):
        pass
    def reset_cause(self):
        return "power_on"
    def i2c(self):
        return None

class Clock:
    now = 0
    def uptime_ms(self):
        return self.now
    def time(self):
        return None
    def set_time(self, unix):
        pass

def leaves():
    out = []
    for p in link.packets:
        if p[0] & 0xF0 == 0x30:
            i = 1
            while p[i] & 0x80:
                i += 1
            b = p[i + 1:]
            out.append(bytes(b[2:2 + (b[0] << 8 | b[1])]).decode().split("/")[-1])
    return out

async def until(cond):
    # Polls the condition while the board's tasks run; bounded in turns.
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep_ms(5)
    raise AssertionError("never came; published: %r" % (leaves(),))

os.mkdir("/mac")
cfg = validate({"school": "0341234a", "room": "cm2-b", "broker": "gw", "key": KEY})
app = Classroom(cfg, Board(), storage="/mac", clock=Clock(), log=print)
emit(["flash", app.outbox.peek()[1].hex()])

async def scenario():
    await app.mqtt.subscribe(app.t_cmd, 1)
    tasks = [asyncio.create_task(app.mqtt.run()), asyncio.create_task(app._publisher())]
    await until(lambda: "state" in leaves() and "evt" in leaves())
    app.clock.now = 1000
    app.on_press(SHORT, 1000)
    app._on_message(app.t_cmd.encode(), json.dumps({"v": 1, "id": "g-1", "cmd": "grant", "req": app.session.req,
                    "duration_s": 600, "ap": True, "projector": False}).encode(), False)
    app.outbox.append(encode(app.telemetry(2000)), True)
    app._wake.set()
    await until(lambda: "ack" in leaves() and "tele" in leaves() and not len(app.outbox))
    await app.shutdown()
    for t in tasks:
        t.cancel()

# The VM's top level is a JavaScript promise, not a task the board's
# asyncio can wake: the scenario runs as a task, the top level waits on it.
done = asyncio.create_task(scenario())
while not done.done():
    await asyncio.sleep_ms(10)
emit(["packets", [p.hex() for p in link.packets]])
"""


def run_board(key: bytes | None):
    """(the boot event as kept in flash, [(kind, topic, payload)]): the Last
    Will from the CONNECT packet, then every PUBLISH, in the order written."""
    out = mpvm.run("KEY = %r\n%s" % (key and key.hex(), BOARD)).records
    records = dict(out)
    assert set(records) == {"flash", "packets"}, out
    return bytes.fromhex(records["flash"]), frames([bytes.fromhex(p) for p in records["packets"]])


def frames(packets: list[bytes]) -> list[tuple[str, str, bytes]]:
    """Test-side MQTT 3.1.1 decoder, independent of the client's."""
    out = []
    for p in packets:
        n, shift, i = 0, 0, 1
        while True:
            b = p[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = p[i:]
        assert len(body) == n, "one packet per write"
        if p[0] == 0x10:  # CONNECT: "MQTT", level, flags, keepalive; then length-prefixed fields
            assert body[:7] == b"\x00\x04MQTT\x04"
            fields, j = [], 10
            while j < len(body):
                size = body[j] << 8 | body[j + 1]
                fields.append(body[j + 2:j + 2 + size])
                j += 2 + size
            assert body[7] & 0x04, "a Last Will"
            out.append(("will", fields[1].decode(), fields[2]))  # after the client id
        elif p[0] & 0xF0 == 0x30:
            size = body[0] << 8 | body[1]
            start = 2 + size + (2 if p[0] & 0x06 else 0)  # the packet id, at QoS 1
            out.append(("publish", body[2:2 + size].decode(), body[start:]))
    return out


def refused(key: bytes, topic: str, payload: bytes) -> str:
    with pytest.raises(ProtocolError) as e:
        mac.verify(key, topic, payload)
    assert e.value.kind == "mac"
    return str(e.value)


def test_all_the_board_publishes_is_signed_with_its_key_for_its_topic():
    flash, sent = run_board(KEY)
    bodies = {}
    for kind, topic, payload in sent:
        body = mac.verify(KEY, topic, payload)  # the gateway's check
        assert payload == mac.sign(KEY, topic, body), "byte for byte the reference signature"
        obj = json.loads(body)
        assert "mac" not in obj and obj["v"] == 1
        bodies.setdefault((kind, topic.rsplit("/", 1)[1]), []).append(obj)
        # not with another key, nor replayed on another room's topic or another leaf
        refused(OTHER_KEY, topic, payload)
        refused(KEY, topic.replace("/cm2-b/", "/cm1-a/"), payload)
        refused(KEY, topic[:-3] + ("ack" if not topic.endswith("ack") else "evt"), payload)
    assert bodies[("will", "state")] == [{"v": 1, "online": False, "boot": 0}]
    assert [s["online"] for s in bodies[("publish", "state")]] == [True, False]  # birth, then the clean death
    assert bodies[("publish", "ack")] == [{"v": 1, "id": "g-1", "ok": True, "boot": 0, "result": "started"}]
    assert bodies[("publish", "tele")][0]["session"] == "active"
    events = bodies[("publish", "evt")]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {"boot", "lesson.requested", "session.started", "session.ended"} <= {e["type"] for e in events}
    # The outbox keeps the body as it was: signed only as it leaves.
    assert mac.split(flash) is None
    first_evt = next(p for k, t, p in sent if t.endswith("/evt"))
    assert mac.verify(KEY, ROOM + "evt", first_evt) == flash


def test_a_board_without_a_key_publishes_unsigned():
    flash, sent = run_board(None)
    assert {t.rsplit("/", 1)[1] for _, t, _ in sent} == {"state", "evt", "ack", "tele"}
    for _, topic, payload in sent:
        assert mac.split(payload) is None and "mac" not in json.loads(payload)
        assert "not signed" in refused(KEY, topic, payload)


# Runs in the VM: firmware/main.py's boot, with a fake `machine` that records
# every pin level and stops the fault pattern after a few LED writes.
BOOT = r"""
import sys, json

class Stop(Exception):
    pass

class Pin:
    IN, OUT, PULL_UP, PULL_DOWN, IRQ_RISING, IRQ_FALLING = 1, 3, 1, 2, 1, 2
    levels = []  # (pin, level), in order
    def __init__(self, pin, mode=-1, pull=-1, value=None):
        self.pin = pin
        if value is not None:
            Pin.levels.append((pin, value))
    def value(self, v=None):
        if v is None:
            return 1
        Pin.levels.append((self.pin, v))
        if self.pin == LED and len([x for x in Pin.levels if x[0] == LED]) > 4:
            raise Stop  # the fault pattern is running: enough

class Machine:
    Pin = Pin

sys.modules["machine"] = Machine()
with open("board.json", "w") as f:
    f.write(BOARD_JSON)
from firmware.main import main
for value in KEYS:
    Pin.levels = []
    cfg = {"school": "0341234a", "room": "cm2-b", "broker": "gw"}
    if value != "absent":
        cfg["key"] = value
    with open("config.json", "w") as f:
        json.dump(cfg, f)
    print("@boot")
    try:
        main()
        stopped = False
    except Stop:
        stopped = True
    emit([value, stopped, Pin.levels, "firmware.app" in sys.modules])
"""


def test_a_wrong_key_in_config_json_stops_the_boot_with_the_relay_off():
    profile = board_json("olimex-esp32-poe")
    relay, led = profile["pins"]["ap_relay"]["pin"], profile["pins"]["led"]["pin"]
    wrong = ["ab" * 31, "ab" * 33, "zz" * 32, "ab" * 31 + "a", "ab" * 31 + "g0", " " + "ab" * 31 + "a", 5]
    code = "BOARD_JSON = %r\nLED = %d\nKEYS = %r\n%s" % (json.dumps(profile), led, wrong, BOOT)
    result = mpvm.run(code)
    said = "\n".join(result.output).split("@boot")[1:]
    assert len(result.records) == len(wrong) == len(said)
    for (value, stopped, levels, app_loaded), text in zip(result.records, said, strict=True):
        assert stopped and not app_loaded, "the application never starts"
        assert [lv for pin, lv in levels if pin == relay] == [0], "the relay driven off once, at boot, and left off"
        assert len([lv for pin, lv in levels if pin == led]) > 4, "the LED shows the fault"
        if isinstance(value, str):
            assert text.strip() == ("preau: configuration error: config.json: key 'key': "
                                    "expected 64 hexadecimal characters (from preau provision)")
            assert value.strip() not in text, "the key is not echoed on the console"
        else:
            assert "key 'key': expected a string, got 5" in text


def test_config_json_takes_the_key_as_preau_provision_writes_it():
    code = """
from firmware.config import validate
for value in KEYS:
    emit(validate({"school": "s", "room": "r", "broker": "gw", "key": value})["key"])
emit(validate({"school": "s", "room": "r", "broker": "gw"})["key"])
"""
    keys = [KEY.hex(), KEY.hex().upper(), None]
    assert mpvm.run("KEYS = %r\n%s" % (keys, code)).records == [*keys, None]


@pytest.mark.broker
def test_a_simulated_board_given_its_key_signs_through_a_real_broker(tmp_path):
    # The simulator runs the same firmware under CPython (hashlib's sha256,
    # binascii): what the gateway's tests get from SimClassroom(key=...).
    broker = Mosquitto().start()
    peer = Peer(broker.host, broker.port, ROOM + "#")

    async def scenario():
        sim = SimClassroom({"school": "0341234a", "room": "cm2-b", "broker": broker.host, "port": broker.port},
                           storage=str(tmp_path), key=KEY)
        assert sim.key == KEY and sim.config["key"] == KEY.hex()
        sim.start()
        await await_for(lambda: {t.rsplit("/", 1)[1] for t, _, _ in peer.messages} >= {"state", "evt"},
                        what="birth and boot event")
        await sim.stop()
        await await_for(lambda: len([t for t, _, _ in peer.messages if t.endswith("/state")]) == 2,
                        what="death on clean shutdown")

    try:
        run(scenario())
        for topic, payload, _ in peer.messages:
            assert json.loads(mac.verify(KEY, topic, payload))["v"] == 1
            refused(OTHER_KEY, topic, payload)
    finally:
        peer.close()
        broker.stop()


# ----- the firmware's HMAC-SHA256 against CPython's -----

SIGN = """
from ubinascii import hexlify
from firmware.mqtt import MQTTClient
for key, topic, payload in CASES:
    emit(hexlify(MQTTClient("b", "gw", key=hexlify(key)).sign(topic, payload)).decode())
"""

objects = st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=20), st.booleans()),
                          max_size=6).map(lambda o: json.dumps(o).encode())
cases = st.lists(st.tuples(st.binary(max_size=150),  # longer than the 64-byte block: hashed first
                           st.text(max_size=60).map(str.encode),
                           st.one_of(objects, st.binary(min_size=1, max_size=300))),
                 min_size=1, max_size=12)


@settings(max_examples=15, deadline=None)  # one VM per example: each checks a dozen cases
@given(cases)
@example([(KEY, (ROOM + "evt").encode(), b'{"v": 1}'), (b"k" * 64, b"t", b"{}"), (b"k" * 65, b"t", b"{}"),
          (b"", b"", b"}")])
def test_the_firmware_hmac_agrees_with_cpython(batch):
    got = [bytes.fromhex(h) for h in mpvm.run("CASES = %r\n%s" % (batch, SIGN)).records]
    for (key, topic, payload), signed in zip(batch, got, strict=True):
        digest = hmac.new(key, topic + b"\n" + payload, hashlib.sha256).hexdigest()
        assert signed == payload[:-1] + b',"mac":"' + digest[:32].encode() + b'"}'
        if len(payload) > 2 and payload.endswith(b"}"):  # what protocol.mac.split can cut
            assert mac.verify(key, topic.decode(), signed) == payload
