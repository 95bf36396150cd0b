"""Teacher press to LED and to relay on, through a real broker and the real
gateway.

A finger on the simulated board's button pin (the real firmware's interrupt,
button task, 30 ms debounce and 10 ms sampling); a short press is known at
its release. Timed from the release edge:
- to the LED's change to "waiting" (local feedback, no network),
- to the relay output energised: the board publishes `lesson.requested`, the
  real gateway decides and answers `grant`, the board drives the relay.
N sessions, each ended by a long press. For scale, the same run measures a
bare MQTT round trip (paho -> broker -> paho) on the same broker.

    .venv/bin/python bench/press_to_relay.py [--n 1000] [--broker mosquitto|amqtt]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import pct
from common.mqtt import tcp_nodelay
from devkit.brokers import Mosquitto, ThreadedAmqtt
from devkit.sim.classroom import SimClassroom
from devkit.testing import school_clock
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from firmware.button import LONG


def mqtt_round_trips(port: int, n: int) -> list[float]:
    got = threading.Event()
    c = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rtt"))
    c.on_message = lambda *a: got.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe("bench/rtt", 1)
    time.sleep(0.3)
    for _ in range(20):  # warm-up, and drain anything a previous subscriber left
        c.publish("bench/rtt", b"w", qos=1)
    time.sleep(0.3)
    out = []
    for _ in range(n):
        got.clear()
        t = time.perf_counter()
        c.publish("bench/rtt", b"x", qos=1)
        got.wait(5)
        out.append((time.perf_counter() - t) * 1000)
    c.loop_stop()
    c.disconnect()
    return out


async def presses(port: int, n: int, workdir: str) -> tuple[list[float], list[float]]:
    config = Config.from_dict({
        "school": "bench", "gateway_id": "gw-bench", "db": os.path.join(workdir, "gw.sqlite3"),
        "school_broker": {"host": "127.0.0.1", "port": port}, "policy": {"zone": "C"},
        "rooms": {"r1": {"wifi": "allowed"}},
    }, source="bench")
    gateway = await asyncio.to_thread(Gateway(config, clock=school_clock()).start)
    sim = SimClassroom({"school": "bench", "room": "r1", "broker": "127.0.0.1", "port": port},
                       storage=os.path.join(workdir, "board"))
    sim.start()
    pin = sim.pin("button")
    led, relay = [], []
    try:
        while not sim.app.mqtt.up:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        app = sim.app
        for _ in range(n):
            sim.machine.set_input(pin, 0)  # pressed (active low)
            await asyncio.sleep(0.05)
            t = time.perf_counter()
            sim.machine.set_input(pin, 1)  # released: a short press
            while app.led_mode(app.clock.uptime_ms()) != "waiting":
                await asyncio.sleep(0)
            led.append((time.perf_counter() - t) * 1000)
            while not sim.relay:
                await asyncio.sleep(0)
            relay.append((time.perf_counter() - t) * 1000)
            app.on_press(LONG, app.clock.uptime_ms())
            while sim.relay:
                await asyncio.sleep(0)
            await asyncio.sleep(0.02)
    finally:
        await sim.stop()
        await asyncio.to_thread(gateway.stop)
    return led, relay


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--broker", choices=("mosquitto", "amqtt"), default="mosquitto")
    args = ap.parse_args()
    broker = (Mosquitto() if args.broker == "mosquitto" else ThreadedAmqtt()).start()
    try:
        rtt = mqtt_round_trips(broker.port, args.n)
        with tempfile.TemporaryDirectory() as workdir:
            led, press = asyncio.run(presses(broker.port, args.n, workdir))
    finally:
        broker.stop()
    print(f"broker: {args.broker}, n = {args.n}")
    print(f"bare MQTT QoS1 round trip  p50 {pct(rtt, 50):7.2f} ms  p99 {pct(rtt, 99):7.2f} ms")
    print(f"release -> LED waiting     p50 {pct(led, 50):7.2f} ms  p99 {pct(led, 99):7.2f} ms"
          f"  (30 ms debounce, 10 ms sampling: no network)")
    print(f"release -> relay on        p50 {pct(press, 50):7.2f} ms  p99 {pct(press, 99):7.2f} ms"
          f"  mean {statistics.mean(press):.2f} ms")
    trip = [r - w for r, w in zip(press, led, strict=True)]  # relay on after LED waiting, press by press
    print(f"relay after the LED        p50 {pct(trip, 50):7.2f} ms"
          f"  p99 {pct(trip, 99):7.2f} ms  (gateway round trip)")
    print(f"ratio gateway trip/bare    p50 {pct(trip, 50) / pct(rtt, 50):7.1f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
