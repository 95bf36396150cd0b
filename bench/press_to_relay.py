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

The school broker is locked down as a school runs it (devkit/school.py): the
board logs in with its own identity and signs all it publishes with its key
(protocol/mac.py), and the gateway checks every message. `--broker amqtt`
runs the same fleet behind an open amqtt (the board still logs in and signs).

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
from devkit.brokers import ThreadedAmqtt
from devkit.school import LockedSchool
from devkit.sim.classroom import SimClassroom
from devkit.testing import school_clock
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from firmware.button import LONG

SCHOOL = "bench"


def mqtt_round_trips(school: LockedSchool, host: str, port: int, n: int) -> list[float]:
    """A paho client publishing to a topic it reads. On the locked broker the
    one topic an identity may both write and read is the gateway's own state:
    the gateway's identity, before the gateway starts (its session is clean
    when it connects), and not retained."""
    got = threading.Event()
    user, password = school.gateway_credentials()
    where = f"preau/v1/{SCHOOL}/gateway/state"
    c = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user))
    c.username_pw_set(user, password)
    c.on_message = lambda *a: got.set()
    c.connect(host, port)
    c.loop_start()
    c.subscribe(where, 1)
    time.sleep(0.3)
    for _ in range(20):  # warm-up, and drain anything a previous subscriber left
        c.publish(where, b"w", qos=1)
    time.sleep(0.3)
    out = []
    for _ in range(n):
        got.clear()
        t = time.perf_counter()
        c.publish(where, b"x", qos=1)
        got.wait(5)
        out.append((time.perf_counter() - t) * 1000)
    c.loop_stop()
    c.disconnect()
    return out


async def presses(school: LockedSchool, host: str, port: int, n: int, workdir: str) -> tuple[list[float], list[float]]:
    config = Config.from_dict(school.config(workdir) | {
        "db": os.path.join(workdir, "gw.sqlite3"), "school_broker": {"host": host, "port": port},
        "policy": {"zone": "C"}, "rooms": {"r1": {"wifi": "allowed"}},
    }, source="bench")
    # The bench's board presses about nine times a second, some 80 messages a second:
    # beyond the per-room limit meant for a real board (edge_gateway/limits.py,
    # 20 a second after a burst of 2,000), which after some 40 s would refuse
    # its events ("more messages than a board sends"). The limit is still
    # checked on every message, at a bench's rate.
    gateway = await asyncio.to_thread(Gateway(config, clock=school_clock(), room_rate_per_s=1000.0).start)
    # The board's config.json: its identity (user, password, key) from the fleet.
    sim = SimClassroom(school.board_config("r1") | {"broker": host, "port": port},
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
    # none expected: a board not signing with its room's key would be refused ("bad_mac")
    m = gateway.metrics
    print(f"gateway accepted: {m.get('accepted', {})}, rejected: {m.get('rejected') or 'none'}, "
          f"rate-limited: {m.get('rate_limited') or 'none'}")
    return led, relay


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--broker", choices=("mosquitto", "amqtt"), default="mosquitto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        school = LockedSchool(school=SCHOOL, gateway_id="gw-bench", rooms=("r1",),
                              directory=os.path.join(workdir, "school"), observer=False)
        amqtt = None
        if args.broker == "mosquitto":
            school.start()  # Mosquitto from the generated files: the locked school broker
            host, port = school.host, school.port
        else:
            school.prepare()  # the fleet only: amqtt stays open, the board logs in and signs anyway
            amqtt = ThreadedAmqtt().start()
            host, port = amqtt.host, amqtt.port
        try:
            rtt = mqtt_round_trips(school, host, port, args.n)
            led, press = asyncio.run(presses(school, host, port, args.n, workdir))
        finally:
            if amqtt is not None:
                amqtt.stop()
            school.stop()
    where = "locked Mosquitto" if args.broker == "mosquitto" else "open amqtt"
    print(f"broker: {args.broker} ({where}), signed board messages, n = {args.n}")
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
