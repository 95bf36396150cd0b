"""Press-to-grant round trip through a real broker and the real gateway,
with and without a background load on the same broker.

The school is locked down as a school runs it (devkit/school.py): a board
identity and key per room, and every board message signed (protocol/mac.py),
so the gateway's MAC check is part of every round trip. By default the broker
is Mosquitto from the generated files (no anonymous client, per-board ACLs);
`--broker amqtt` runs the same fleet behind an open amqtt, the boards still
logging in with their credentials and signing.

A board (paho, the protocol's `lesson.requested`) asks N times; each time is
measured from the publish to the arrival of the gateway's `grant` for that
request. The load runs in a separate process: boards of 20 other rooms, each
with its own identity, publishing signed events (QoS 1, stored by the
gateway: the hardest kind of load) or telemetry (QoS 0) at a fixed rate.

    .venv/bin/python bench/press_to_grant.py [--n 1000] [--rate 1000] [--load evt|tele] [--broker mosquitto|amqtt]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import pct
from common.mqtt import tcp_nodelay
from devkit.brokers import ThreadedAmqtt, free_port, wait_port
from devkit.school import LockedSchool
from devkit.testing import Board, school_clock
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from protocol import mac

SCHOOL = "bench"
LOAD_ROOMS = [f"load-{i:02d}" for i in range(20)]


def _amqtt_main(port: int) -> None:
    broker = ThreadedAmqtt(port=port).start()
    try:
        while True:
            time.sleep(3600)
    finally:
        broker.stop()


class AmqttProcess:
    def start(self) -> AmqttProcess:
        self.port = free_port()
        self.proc = mp.Process(target=_amqtt_main, args=(self.port,), daemon=True)
        self.proc.start()
        wait_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


def _connect(c: mqtt.Client, host: str, port: int, who: str) -> None:
    answer: list[str] = []
    up = threading.Event()

    def on_connect(client, userdata, flags, rc, props) -> None:
        answer.append(str(rc))
        up.set()

    c.on_connect = on_connect
    c.connect(host, port)
    c.loop_start()
    if not up.wait(10) or answer[0] != "Success":
        raise RuntimeError(f"{who}: not connected to {host}:{port} ({answer[0] if answer else 'no CONNACK'})")


# What the load process needs of each room's board, as plain values (it is
# another process): (room, username, password, key).
LoadBoard = tuple[str, str, str, bytes]


def load_process(host: str, port: int, boards: list[LoadBoard], rate: int, kind: str, stop, sent) -> None:
    """Publish `rate` signed messages a second, round the rooms, until told to
    stop (bounded by the parent). One MQTT client per room: on the locked
    broker each board may publish only its own room's topics."""
    clients: dict[str, tuple[mqtt.Client, bytes]] = {}
    for room, username, password, key in boards:
        c = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username))
        c.username_pw_set(username, password)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        _connect(c, host, port, room)
        clients[room] = (c, key)

    def publish(room: str, leaf: str, body: dict, qos: int, retain: bool = False) -> None:
        c, key = clients[room]
        where = f"preau/v1/{SCHOOL}/{room}/{leaf}"
        c.publish(where, mac.sign(key, where, json.dumps(body).encode()), qos=qos, retain=retain)

    rooms = list(clients)
    for room in rooms:
        publish(room, "state", {
            "v": 1, "online": True, "boot": 1, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 1,
            "session": "idle", "ap": False, "devices": []}, qos=1, retain=True)
    seq = dict.fromkeys(rooms, 0)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    t_next = time.perf_counter()
    n = 0
    while not stop.is_set():
        for _ in range(per_tick):
            room = rooms[n % len(rooms)]
            if kind == "evt":
                seq[room] += 1
                publish(room, "evt", {"v": 1, "boot": 1, "seq": seq[room], "uptime_ms": seq[room], "time": None,
                                      "type": "button", "data": {"press": "short"}}, qos=1)
            else:
                publish(room, "tele", {"v": 1, "boot": 1, "uptime_ms": n, "session": "idle", "ap": False}, qos=0)
            n += 1
        t_next += tick
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    sent.value = n
    for c, _ in clients.values():
        c.loop_stop()
        c.disconnect()


def requests(school: LockedSchool, host: str, port: int, n: int) -> list[float]:
    board = Board(host, port, SCHOOL, "r1", creds=school.creds["r1"]).connect()
    arrived: dict[int, float] = {}
    got = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.topic == board.topic("cmd"):
            cmd = json.loads(msg.payload)
            if "req" in cmd:
                arrived[cmd["req"]] = time.perf_counter()
                got.set()

    board.client.on_message = on_message
    time.sleep(0.5)
    out = []
    try:
        for _ in range(n):
            req = board.seq + 1
            body = {"v": 1, "boot": 1, "seq": req, "uptime_ms": req, "time": None,
                    "type": "lesson.requested", "data": {"req": req}}
            got.clear()
            t = time.perf_counter()
            board.seq = req
            # signed as the board signs (2 us here): inside the timed part, as on the board
            board.client.publish(board.topic("evt"), board.sign(board.topic("evt"), json.dumps(body).encode()), qos=1)
            deadline = t + 5
            while req not in arrived and time.perf_counter() < deadline:
                got.wait(0.5)
                got.clear()
            if req not in arrived:
                raise RuntimeError(f"no answer to request {req} within 5 s")
            out.append((arrived[req] - t) * 1000)
    finally:
        board.close()
    return out


def run(school: LockedSchool, host: str, port: int, n: int, rate: int, kind: str, workdir: str,
        tag: str) -> tuple[list[float], float]:
    # The school's gateway configuration (fleet, broker files), on the broker in use.
    config = Config.from_dict(school.config(workdir) | {
        "db": os.path.join(workdir, f"gw-{tag}.sqlite3"),
        "school_broker": {"host": host, "port": port}, "policy": {"zone": "C"},
        "rooms": {room: {"wifi": "allowed"} for room in ["r1", *LOAD_ROOMS]},
    }, source="bench")
    # The bench's rooms send far more than a board does (r1 a request a
    # millisecond, each load room 50 messages a second by default): above the
    # per-room limit (edge_gateway/limits.py, 20 a second after a burst of
    # 2,000) the gateway would refuse them before storing anything, and the
    # load would get lighter. The limit is still checked, at a bench's rate.
    gateway = Gateway(config, clock=school_clock(), room_rate_per_s=10_000.0).start()
    stop, sent = mp.Event(), mp.Value("l", 0)
    proc = None
    boards = [(room, c.username, c.password, bytes.fromhex(c.key))
              for room, c in school.creds.items() if room in LOAD_ROOMS]
    try:
        if rate:
            proc = mp.Process(target=load_process, args=(host, port, boards, rate, kind, stop, sent), daemon=True)
            proc.start()
            time.sleep(1.0)
        t0 = time.perf_counter()
        rtts = requests(school, host, port, n)
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        if proc:
            proc.join(10)
        gateway.stop()
    # Counted once committed: read after the stop, which drains the journal.
    accepted = gateway.metrics.get("accepted", {})
    rejected = gateway.metrics.get("rejected", {})
    limited = gateway.metrics.get("rate_limited", {})
    achieved = sent.value / (elapsed + 1.0) if rate else 0.0
    print(f"  [{tag}] gateway accepted: {accepted}, rejected: {rejected or 'none'}, rate-limited: {limited or 'none'}")
    return rtts, achieved


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=1000, help="background messages per second")
    ap.add_argument("--load", choices=("evt", "tele"), default="evt")
    ap.add_argument("--broker", choices=("mosquitto", "amqtt"), default="mosquitto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        school = LockedSchool(school=SCHOOL, gateway_id="gw-bench", rooms=("r1", *LOAD_ROOMS),
                              directory=os.path.join(workdir, "school"), observer=False)
        amqtt = None
        if args.broker == "mosquitto":
            school.start()  # Mosquitto from the generated files: the locked school broker
            host, port = school.host, school.port
        else:
            # The fleet without its Mosquitto: amqtt stays open, but the boards
            # log in with their credentials and sign, and the gateway checks.
            # amqtt runs in a process of its own, as a broker does in the field:
            # in this process it would share one GIL with the gateway and the board.
            school.prepare()
            amqtt = AmqttProcess().start()
            host, port = "127.0.0.1", amqtt.port
        try:
            quiet, _ = run(school, host, port, args.n, 0, args.load, workdir, "quiet")
            loaded, achieved = run(school, host, port, args.n, args.rate, args.load, workdir, "loaded")
        finally:
            if amqtt is not None:
                amqtt.stop()
            school.stop()
    where = "locked Mosquitto" if args.broker == "mosquitto" else "open amqtt"
    print(f"broker {args.broker} ({where}), signed board messages, {args.n} requests each")
    print(f"no load                          p50 {pct(quiet, 50):6.2f} ms  p99 {pct(quiet, 99):6.2f} ms  max {max(quiet):6.2f} ms")
    print(f"{args.load} load ~{achieved:5.0f} msg/s          p50 {pct(loaded, 50):6.2f} ms  p99 {pct(loaded, 99):6.2f} ms"
          f"  max {max(loaded):6.2f} ms")
    print(f"ratio loaded/quiet               p50 {pct(loaded, 50) / pct(quiet, 50):6.2f} x  p99 {pct(loaded, 99) / pct(quiet, 99):6.2f} x")
    print(f"target p99 <= 20 ms under load: {'met' if pct(loaded, 99) <= 20 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
