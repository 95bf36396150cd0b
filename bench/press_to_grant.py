"""Press-to-grant round trip through a real broker and the real gateway,
with and without a background load on the same broker.

A board (paho, the protocol's `lesson.requested`) asks N times; each time is
measured from the publish to the arrival of the gateway's `grant` for that
request. The load runs in a separate process: boards of 20 other rooms
publishing events (QoS 1, stored by the gateway: the hardest kind of load)
or telemetry (QoS 0) at a fixed rate.

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
from devkit.brokers import Mosquitto, ThreadedAmqtt, free_port, wait_port
from devkit.testing import Board, school_clock
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway

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


def load_process(port: int, rate: int, kind: str, stop, sent) -> None:
    """Publish `rate` messages a second until told to stop (bounded by the parent)."""
    c = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-load"))
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for room in LOAD_ROOMS:
        c.publish(f"preau/v1/{SCHOOL}/{room}/state", json.dumps({
            "v": 1, "online": True, "boot": 1, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 1,
            "session": "idle", "ap": False, "devices": []}), qos=1, retain=True)
    seq = {room: 0 for room in LOAD_ROOMS}
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    t_next = time.perf_counter()
    n = 0
    while not stop.is_set():
        for _ in range(per_tick):
            room = LOAD_ROOMS[n % len(LOAD_ROOMS)]
            if kind == "evt":
                seq[room] += 1
                body = {"v": 1, "boot": 1, "seq": seq[room], "uptime_ms": seq[room], "time": None,
                        "type": "button", "data": {"press": "short"}}
                c.publish(f"preau/v1/{SCHOOL}/{room}/evt", json.dumps(body), qos=1)
            else:
                body = {"v": 1, "boot": 1, "uptime_ms": n, "session": "idle", "ap": False}
                c.publish(f"preau/v1/{SCHOOL}/{room}/tele", json.dumps(body), qos=0)
            n += 1
        t_next += tick
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    sent.value = n
    c.loop_stop()
    c.disconnect()


def requests(port: int, n: int) -> list[float]:
    board = Board("127.0.0.1", port, SCHOOL, "r1").connect()
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
            board.client.publish(board.topic("evt"), json.dumps(body), qos=1)
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


def run(port: int, n: int, rate: int, kind: str, workdir: str, tag: str) -> tuple[list[float], float]:
    config = Config.from_dict({
        "school": SCHOOL, "gateway_id": "gw-bench", "db": os.path.join(workdir, f"gw-{tag}.sqlite3"),
        "school_broker": {"host": "127.0.0.1", "port": port}, "policy": {"zone": "C"},
        "rooms": {room: {"wifi": "allowed"} for room in ["r1", *LOAD_ROOMS]},
    }, source="bench")
    gateway = Gateway(config, clock=school_clock()).start()
    stop, sent = mp.Event(), mp.Value("l", 0)
    proc = None
    try:
        if rate:
            proc = mp.Process(target=load_process, args=(port, rate, kind, stop, sent), daemon=True)
            proc.start()
            time.sleep(1.0)
        t0 = time.perf_counter()
        rtts = requests(port, n)
        elapsed = time.perf_counter() - t0
        accepted = gateway.metrics.get("accepted", {})
    finally:
        stop.set()
        if proc:
            proc.join(10)
        gateway.stop()
    achieved = sent.value / (elapsed + 1.0) if rate else 0.0
    print(f"  [{tag}] gateway accepted: {accepted}")
    return rtts, achieved


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=1000, help="background messages per second")
    ap.add_argument("--load", choices=("evt", "tele"), default="evt")
    ap.add_argument("--broker", choices=("mosquitto", "amqtt"), default="mosquitto")
    args = ap.parse_args()
    # amqtt runs in a process of its own, as a broker does in the field: in
    # this process it would share one GIL with the gateway and the board.
    broker = Mosquitto().start() if args.broker == "mosquitto" else AmqttProcess().start()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            quiet, _ = run(broker.port, args.n, 0, args.load, workdir, "quiet")
            loaded, achieved = run(broker.port, args.n, args.rate, args.load, workdir, "loaded")
    finally:
        broker.stop()
    print(f"broker {args.broker}, {args.n} requests each")
    print(f"no load                          p50 {pct(quiet, 50):6.2f} ms  p99 {pct(quiet, 99):6.2f} ms  max {max(quiet):6.2f} ms")
    print(f"{args.load} load ~{achieved:5.0f} msg/s          p50 {pct(loaded, 50):6.2f} ms  p99 {pct(loaded, 99):6.2f} ms"
          f"  max {max(loaded):6.2f} ms")
    print(f"ratio loaded/quiet               p50 {pct(loaded, 50) / pct(quiet, 50):6.2f} x  p99 {pct(loaded, 99) / pct(quiet, 99):6.2f} x")
    print(f"target p99 <= 20 ms under load: {'met' if pct(loaded, 99) <= 20 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
