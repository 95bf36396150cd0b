"""Press-to-grant while the gateway's disk stalls: every commit of the
gateway's SQLite history is made to take STALL seconds (an SD card on a
Raspberry Pi does this), and boards in other rooms keep asking.

Each request is measured from the board's publish to the arrival of the
gateway's answer, through a real Mosquitto locked down as a school runs it
(devkit/school.py: a board identity and key per room, every board message
signed), first with a quiet disk, then with the stall. `--code DIR` runs the
same bench against another checkout's gateway (e.g. the one before the
journal, made with `git worktree add`), in the same run, so the two are
compared on the same machine at the same time.

    .venv/bin/python bench/commit_stall.py [--n 400] [--stall 1.0] [--rooms 10] [--code DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench._common import pct  # noqa: E402
from common.mqtt import tcp_nodelay  # noqa: E402
from devkit.school import LockedSchool  # noqa: E402
from edge_gateway.fleet import Credentials  # noqa: E402
from protocol import mac  # noqa: E402

SCHOOL = "bench"


def _load_gateway(code: str | None):
    """(Gateway, Config, school_clock) from this checkout or from `code`."""
    if code:
        sys.path.insert(0, os.path.abspath(code))
        for name in [m for m in sys.modules if m.split(".")[0] in ("edge_gateway", "firmware", "cloud_bridge")]:
            del sys.modules[name]
        import importlib

        # the layout before the journal: the gateway in service.py, the test tools beside it
        Config = importlib.import_module("edge_gateway.config").Config
        Gateway = importlib.import_module("edge_gateway.service").Gateway
        school_clock = importlib.import_module("edge_gateway.testing").school_clock
    else:
        from devkit.testing import school_clock
        from edge_gateway.config import Config
        from edge_gateway.gateway import Gateway
    return Gateway, Config, school_clock


def inject_stall(gateway, stall) -> None:
    """Make every commit call `stall()` first."""
    journal = getattr(gateway, "journal", None)
    if journal is not None:
        journal.before_commit = stall
        return
    store = gateway.store  # before the journal: the worker thread's own transaction
    original = store.transaction

    @contextlib.contextmanager
    def transaction():
        outer = store._depth == 0
        with original() as conn:
            yield conn
            if outer:
                stall()  # inside the transaction, before its COMMIT

    store.transaction = transaction


class Boards:
    """A paho client per room (on the locked broker a board may use only its
    own room's topics), each asking for a lesson, signed with its room's key,
    and timing the answer."""

    def __init__(self, host: str, port: int, creds: dict[str, Credentials]) -> None:
        self.rooms = list(creds)
        self.arrived: dict[tuple[str, int], float] = {}
        self.got = threading.Condition()
        self.seq = dict.fromkeys(self.rooms, 0)
        self.keys = {room: bytes.fromhex(c.key) for room, c in creds.items()}
        self.clients: dict[str, mqtt.Client] = {}
        for room, c in creds.items():
            client = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id=c.username))
            client.username_pw_set(c.username, c.password)
            client.max_inflight_messages_set(100)
            client.on_message = self._on_message
            client.connect(host, port)
            client.loop_start()
            self.clients[room] = client
            client.subscribe(f"preau/v1/{SCHOOL}/{room}/cmd", qos=1)
            info = self.publish(room, "state", {
                "v": 1, "online": True, "boot": 1, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 0,
                "session": "idle", "ap": False, "devices": []}, retain=True)
            info.wait_for_publish(5)
            if info.rc != mqtt.MQTT_ERR_SUCCESS or not info.is_published():
                raise RuntimeError(f"board {room}: its birth was not published (refused by the broker?)")

    def publish(self, room: str, leaf: str, body: dict, retain: bool = False) -> mqtt.MQTTMessageInfo:
        where = f"preau/v1/{SCHOOL}/{room}/{leaf}"
        payload = mac.sign(self.keys[room], where, json.dumps(body).encode())
        return self.clients[room].publish(where, payload, qos=1, retain=retain)

    def _on_message(self, client, userdata, msg) -> None:
        cmd = json.loads(msg.payload)
        if "req" in cmd:
            room = msg.topic.split("/")[3]
            with self.got:
                self.arrived[(room, cmd["req"])] = time.perf_counter()
                self.got.notify_all()

    def ask(self, room: str) -> float:
        """One request; its round trip in ms (signing included, as on a board)."""
        self.seq[room] += 1
        req = self.seq[room]
        body = {"v": 1, "boot": 1, "seq": req, "uptime_ms": 1000 * req, "time": None,
                "type": "lesson.requested", "data": {"req": req}}
        t = time.perf_counter()
        self.publish(room, "evt", body)
        with self.got:
            if not self.got.wait_for(lambda: (room, req) in self.arrived, timeout=10):
                raise RuntimeError(f"no answer to request {req} in {room} within 10 s")
        return (self.arrived[(room, req)] - t) * 1000

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


def gateway_config(code: str | None, school: LockedSchool, workdir: str, tag: str) -> dict:
    common = {"db": os.path.join(workdir, f"{tag}.sqlite3"), "policy": {"zone": "C"},
              "rooms": {room: {"wifi": "allowed"} for room in school.rooms}}
    if code is None:
        return school.config(workdir) | common  # the fleet: the boards' keys, the gateway's identity
    # An older gateway (before fleet identity) knows no fleet nor broker files,
    # and does not check MACs. It is measured on the same locked broker anyway,
    # with the same signed messages: it logs in with the gateway's identity,
    # given in its school_broker section (whose username and password it
    # already knew), and its codec checks only the fields it knows, so the
    # "mac" member at the end of each message passes unnoticed (checked with
    # 233e20a, the gateway before the journal). A gateway that refused it
    # would answer nothing, and the bench would stop at its first request
    # ("no answer ... within 10 s"): such a checkout needs an open broker.
    user, password = school.gateway_credentials()
    return {"school": school.school, "gateway_id": school.gateway_id,
            "school_broker": {"host": school.host, "port": school.port, "username": user, "password": password},
            } | common


def run(code: str | None, n: int, stall_s: float, rooms: int, workdir: str, tag: str,
        interval_s: float) -> dict:
    names = tuple(f"room-{i:02d}" for i in range(rooms))
    # A locked school broker of its own for each gateway measured: both start
    # from a fresh broker, and each has the gateway identity's session to itself.
    # Made before another checkout's gateway is loaded (which replaces this
    # checkout's edge_gateway modules, that the fleet's files are written with).
    school = LockedSchool(school=SCHOOL, gateway_id=f"gw-{tag}", rooms=names,
                          directory=os.path.join(workdir, f"school-{tag}"), observer=False).start()
    out = {}
    try:
        Gateway, Config, school_clock = _load_gateway(code)
        config = Config.from_dict(gateway_config(code, school, workdir, tag), source="bench")
        gateway = Gateway(config, clock=school_clock()).start()
        boards = Boards(school.host, school.port, school.creds)
        try:
            def ask(i: int) -> float:
                time.sleep(interval_s)  # a school's pace, so that the stalled phase spans many commits
                return boards.ask(names[i % rooms])

            for _ in range(20):  # warm-up
                boards.ask(names[0])
            quiet = [ask(i) for i in range(n)]
            stalls = {"count": 0}

            def stall() -> None:
                stalls["count"] += 1
                time.sleep(stall_s)

            inject_stall(gateway, stall)
            stalled = [ask(i) for i in range(n)]
            inject_stall(gateway, lambda: None)
            out = {"quiet": quiet, "stalled": stalled, "stalls": stalls["count"]}
        finally:
            boards.close()
            gateway.stop()
    finally:
        school.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400, help="requests per phase")
    ap.add_argument("--stall", type=float, default=1.0, help="seconds each commit takes during the stall")
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--interval", type=float, default=0.01, help="seconds between two requests")
    ap.add_argument("--code", help="another checkout's gateway to measure in the same run (before the journal)")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        results["this"] = run(None, args.n, args.stall, args.rooms, workdir, "this", args.interval)
        if args.code:
            results["other"] = run(args.code, min(args.n, 60), args.stall, args.rooms, workdir, "other", args.interval)
    print(f"press -> grant, {args.rooms} rooms in turn, a request every {args.interval * 1000:.0f} ms, "
          f"every commit stalled {args.stall:.1f} s in the second phase; locked Mosquitto, signed board messages"
          + (" (checked by this checkout's gateway, not by the older one)" if args.code else ""))
    for name, r in results.items():
        q, s = r["quiet"], r["stalled"]
        label = "this checkout" if name == "this" else f"{args.code}"
        print(f"{label}: {len(q)} requests per phase, {r['stalls']} stalled commits")
        print(f"  quiet disk     p50 {pct(q, 50):8.2f} ms  p99 {pct(q, 99):8.2f} ms  max {max(q):8.2f} ms")
        print(f"  stalled disk   p50 {pct(s, 50):8.2f} ms  p99 {pct(s, 99):8.2f} ms  max {max(s):8.2f} ms")
        print(f"  ratio stalled/quiet  p50 {pct(s, 50) / pct(q, 50):6.2f} x  p99 {pct(s, 99) / pct(q, 99):6.2f} x")
    this = results["this"]["stalled"]
    print(f"target p99 <= 20 ms during the stall: {'met' if pct(this, 99) <= 20 else 'NOT met'} ({pct(this, 99):.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
