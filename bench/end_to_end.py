"""School broker → gateway → city broker → city database, against a bare
relay with no storage, in one run (issue 11's figure).

Both paths start from the same signed board events published by simulated
boards (devkit/testing.py, in a process of their own, as boards are devices
of their own) on the locked school broker (a real Mosquitto):

- **Préau**: the real gateway (journal, SQLite, city link with its v2 batches,
  the uplink cap off), the city broker (Mosquitto, TLS, client
  certificates), the real city service storing into SQLite; done when the
  city's database holds every event;
- **bare relay**: one paho client reads the same events off the school broker
  and publishes each, as it came, to the city broker over TLS with the
  gateway's certificate; a second client there counts them; no storage, no
  batching, no check.

    .venv/bin/python bench/end_to_end.py [--rooms 10] [--events 300] [--rounds 3]

Prints events per second for each, and Préau's against the relay's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from cloud_bridge.ca import worker_cn  # noqa: E402
from cloud_bridge.service import CityService  # noqa: E402
from devkit.citybroker import LockedCity  # noqa: E402
from devkit.school import OBSERVER, LockedSchool  # noqa: E402
from devkit.testing import school_clock  # noqa: E402
from edge_gateway.config import Config  # noqa: E402
from edge_gateway.gateway import Gateway  # noqa: E402
from protocol.citylink import city_topic  # noqa: E402

SCHOOL = "0341234a"
GATEWAY_ID = f"gw-{SCHOOL}"


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


# The boards are devices of their own: they run in a process of their own,
# as the firmware runs on its own chip. In the process of the gateway and
# the city, their clients would wait on that process's interpreter lock for
# every acknowledgement, and the figure would be that contention's.
BOARDS = """
import json, sys
sys.path.insert(0, %r)
from devkit.testing import Board
from edge_gateway.fleet import Credentials
job = json.loads(sys.stdin.readline())
boards = [Board(job["host"], job["port"], job["school"], c["room"], boot=job["boot"],
                creds=Credentials(**c)).connect(birth=job["birth"]) for c in job["creds"]]
print("ready", flush=True)
sys.stdin.readline()
for n in range(job["events"]):
    for board in boards:
        board.event("button", {"press": "short", "n": n})
print("done", flush=True)
sys.stdin.readline()
for board in boards:
    board.close()
""" % ROOT


class BoardsProcess:
    """The rooms' boards in a process of their own: connected (and born) by
    start(), `events` each published by go(), disconnected by stop()."""

    def __init__(self, school, rooms: list[str], events: int, boot: int, birth: bool = True) -> None:
        from devkit.school import CREDENTIALS

        creds = [CREDENTIALS[(school.host, school.port, SCHOOL, room)] for room in rooms]
        self.proc = subprocess.Popen([sys.executable, "-c", BOARDS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        job = {"host": school.host, "port": school.port, "school": SCHOOL, "boot": boot, "events": events,
               "birth": birth, "creds": [dataclasses.asdict(c) for c in creds]}
        self._say(json.dumps(job))
        self._expect("ready")

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != word:
            raise SystemExit(f"the boards' process said {line!r}, not {word!r} (exit {self.proc.poll()})")

    def go(self) -> None:
        self._say("go")

    def wait_done(self) -> None:
        self._expect("done")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self._say("stop")
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()


def preau(workdir: str, rooms: list[str], events: int, boot: int) -> float:
    school = LockedSchool(school=SCHOOL, gateway_id=GATEWAY_ID, rooms=tuple(rooms),
                          directory=os.path.join(workdir, "school")).start()
    city_broker = LockedCity.start(os.path.join(workdir, "city"), {SCHOOL: GATEWAY_ID})
    city = CityService(city_broker.worker_settings("1", db_path=os.path.join(workdir, "city.sqlite3"))).start()
    config = Config.from_dict(school.config(workdir) | {
        "db": os.path.join(workdir, "gateway.sqlite3"), "city_broker": city_broker.gateway_config(SCHOOL),
        "city": {"uplink_kbit_s": 0}, "policy": {"zone": "C"},
        "rooms": {room: {"wifi": "allowed"} for room in rooms}})
    gateway = Gateway(config, clock=school_clock()).start()
    boards = BoardsProcess(school, rooms, events, boot)
    store = city.store
    assert store is not None, "the city service started without its store"
    try:
        wait(lambda: city.wait_ready(0.01) and store.record_count(SCHOOL) >= len(rooms), 60, "the births at the city")
        base = store.record_count(SCHOOL)
        t0 = time.perf_counter()
        boards.go()
        wait(lambda: store.record_count(SCHOOL) >= base + len(rooms) * events, 300, "every event at the city")
        elapsed = time.perf_counter() - t0
        boards.wait_done()
        return len(rooms) * events / elapsed
    finally:
        boards.stop()
        gateway.stop()
        city.stop()
        city_broker.stop()
        school.stop()


def relay(workdir: str, rooms: list[str], events: int, boot: int) -> float:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from common.mqtt import tcp_nodelay

    school = LockedSchool(school=SCHOOL, gateway_id=GATEWAY_ID, rooms=tuple(rooms),
                          directory=os.path.join(workdir, "school")).start()
    city_broker = LockedCity.start(os.path.join(workdir, "city"), {SCHOOL: GATEWAY_ID})
    city_broker.gateway(SCHOOL, GATEWAY_ID)
    counter = city_broker.client(worker_cn("1"))
    assert counter.connect(), "the counter's connection"
    counter.subscribe(city_topic(SCHOOL, "records"))
    out = city_broker.client(SCHOOL)
    assert out.connect(), "the relay's city connection"

    def forward(client, userdata, msg) -> None:
        out.client.publish(city_topic(SCHOOL, "records"), msg.payload, qos=1)

    inp = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-relay"))
    inp.username_pw_set(OBSERVER, school.observer_password)
    inp.on_message = forward
    subscribed = threading.Event()
    inp.on_subscribe = lambda *a: subscribed.set()
    inp.connect(school.host, school.port)
    inp.loop_start()
    inp.subscribe(f"preau/v1/{SCHOOL}/+/evt", qos=1)
    assert subscribed.wait(10)

    def counted() -> int:
        return len(counter.messages)

    boards = BoardsProcess(school, rooms, events, boot)
    try:
        t0 = time.perf_counter()
        boards.go()
        wait(lambda: counted() >= len(rooms) * events, 300, "every event through the relay")
        elapsed = time.perf_counter() - t0
        boards.wait_done()
        return len(rooms) * events / elapsed
    finally:
        boards.stop()
        inp.loop_stop()
        inp.disconnect()
        out.client.disconnect()
        counter.client.disconnect()
        city_broker.stop()
        school.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--events", type=int, default=300, help="per room")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rooms = [f"room-{i:02d}" for i in range(args.rooms)]
    best = {"preau": 0.0, "relay": 0.0}
    for r in range(args.rounds):
        for name, run in (("relay", relay), ("preau", preau)):
            with tempfile.TemporaryDirectory(prefix=f"preau-e2e-{name}-") as workdir:
                rate = run(workdir, rooms, args.events, boot=r + 1)
            best[name] = max(best[name], rate)
            print(f"  round {r + 1}: {name:6} {rate:9,.0f} events/s", flush=True)
    print(f"{args.rooms} rooms x {args.events} signed events, best of {args.rounds}:")
    print(f"  bare relay (no storage)              {best['relay']:9,.0f} events/s")
    print(f"  Préau (gateway, city, both databases) {best['preau']:9,.0f} events/s")
    print(f"  Préau / relay: {best['preau'] / best['relay']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
