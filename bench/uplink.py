"""The uplink to the city: bytes per record by kind (version 1 JSON against
version 2 with zlib, zstd, and zstd with the trained dictionary), the drain
of a 48-hour backlog of a 30-room school with the uplink's cap and without,
and how long a fresh record takes to reach the city while it drains.

    .venv/bin/python bench/uplink.py                  # sizes, then the drains (real brokers)
    .venv/bin/python bench/uplink.py --sizes-only
    .venv/bin/python bench/uplink.py --train-dict     # writes protocol/citylink-v2-d1.zdict (a new one is a new code)

The records are a school's 48 hours as the gateway stores them (`school_day`
below): per room a telemetry record every 5 minutes, day and night, and in
class hours four sessions (request, decision, the board's ack, started,
projector on and off, ended), presses, an air alert; births; the director's
audit. About nine records in ten are telemetry.

The drains run the real gateway (edge_gateway.Gateway) against a locked
Mosquitto playing the city broker (TLS, certificates: devkit/citybroker.py),
with a city that parses every batch with protocol.citylink.parse_batch and
acks the highest contiguous seq, as cloud_bridge does; bytes are counted on
the gateway's TCP connection by a relay in between (TLS and MQTT included)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from protocol import citylink
from protocol.citylink import encode_batch

START = 1763938800.0  # Monday 2025-11-24 00:00 Paris
KIT_READINGS = ("co2", "t", "rh")


@dataclass(frozen=True)
class Rec:
    seq: int
    room: str
    kind: str
    at: float
    body: str


def _j(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def school_day(rooms: int = 30, hours: int = 48, interval_s: int = 300, seed: int = 1, start: float = START,
               room_names: tuple[str, ...] | None = None) -> list[Rec]:
    """A school's records over `hours`, as its gateway stores them, in seq order."""
    rng = random.Random(seed)
    names = room_names or tuple(["cp-a", "cp-b", "ce1-a", "ce1-b", "ce2-a", "ce2-b", "cm1-a", "cm1-b", "cm2-a",
                                 "cm2-b", "bcd", "salle-info", "ulis", "ms-a", "ms-b", "gs-a", "gs-b", "ps-a"][:rooms]
                                + ["salle-%02d" % i for i in range(max(0, rooms - 18))])[:rooms]
    out: list[tuple[float, str, str, str]] = []
    for r, room in enumerate(names):
        _room(rng, room, r % 3 == 0, start, hours, interval_s, out)
    for i in range(hours // 8):
        at = start + i * 8 * 3600 + 9 * 3600
        out.append((at, "gateway", "audit", _j({"v": 1, "who": "direction", "action": "override.add", "detail": {
            "id": "o-%06d" % (i + 1), "scope": "room", "room": rng.choice(names), "effect": "deny", "ap": False,
            "ap_only": False, "starts": at, "expires": at + 7200, "who": "direction", "why": "Évaluation sur papier"}})))
    out.sort(key=lambda x: x[0])
    return [Rec(i + 1, room, kind, round(at, 3), body) for i, (at, room, kind, body) in enumerate(out)]


def _room(rng: random.Random, room: str, kit: bool, start: float, hours: int, interval_s: int,
          out: list[tuple[float, str, str, str]]) -> None:
    lamp = rng.randint(300, 4000)
    boot = rng.randint(1, 40)
    evt_seq = 0
    uptime0 = start - rng.randint(3600, 86400 * 5)
    co2, temp, rh = 450.0, 19.0 + rng.random() * 2, 45.0

    def evt(at: float, type_: str, data: dict) -> None:
        nonlocal evt_seq
        evt_seq += 1
        out.append((at, room, "evt", _j({"v": 1, "boot": boot, "seq": evt_seq, "uptime_ms": int((at - uptime0) * 1000),
                                         "time": int(at), "type": type_, "data": data})))

    sessions: list[tuple[float, float]] = []
    for day in range(hours // 24 + 1):
        base = start + day * 86400
        for h in (8.75, 10.5, 13.75, 15.0):
            t0 = base + h * 3600 + rng.randint(-300, 300)
            if t0 < start + hours * 3600 and rng.random() < 0.8:
                sessions.append((t0, t0 + rng.choice((2700, 3600, 5400))))
    for req, (t0, t1) in enumerate(sessions, 1):
        ap = rng.random() < 0.5
        evt(t0, "lesson.requested", {"req": req})
        out.append((t0 + 0.004, room, "decision", _j({"v": 1, "id": "g-%06d" % rng.randint(1, 999999), "cmd": "grant",
                                                       "req": req, "duration_s": int(t1 - t0), "ap": ap,
                                                       "projector": True, "grace_s": 300, "now": int(t0)})))
        out.append((t0 + 0.05, room, "ack", _j({"v": 1, "id": "g-%06d" % rng.randint(1, 999999), "ok": True,
                                                "boot": boot, "result": "started"})))
        evt(t0 + 0.06, "session.started", {"req": req, "duration_s": int(t1 - t0), "ap": ap, "projector": True,
                                           "source": "gateway"})
        evt(t0 + 31, "projector.changed", {"state": "on", "lamp_h": lamp})
        if rng.random() < 0.3:
            evt(t0 + rng.randint(60, 1200), "button", {"press": "short"})
        evt(t1, "session.ended", {"reason": rng.choice(("time", "time", "button")), "ran_s": int(t1 - t0)})
        evt(t1 + 2, "projector.changed", {"state": "cooling", "lamp_h": lamp})
        lamp += int((t1 - t0) // 3600)
    if kit and rng.random() < 0.5:
        evt(start + 11 * 3600, "air.alert", {"co2": 1520, "on": True})
    out.append((start + rng.randint(0, 3600), room, "state", _j({
        "v": 1, "online": True, "boot": boot, "fw": "0.4.2", "board": "olimex-esp32-poe", "uptime_ms": 5120,
        "session": "idle", "ap": False, "devices": ["button", "led", "ap_relay", "projector"] + (["kit"] if kit else [])})))
    t = start
    while t + interval_s <= start + hours * 3600:
        active = any(a <= t < b for a, b in sessions)
        body: dict = {"v": 1, "interval_s": interval_s, "n": interval_s // 60,
                      "session": "active" if active else "idle", "ap": active and rng.random() < 0.5,
                      "projector": "on" if active else "standby", "lamp_h": lamp}
        if kit:
            occupied = active or (8.5 <= ((t - start) % 86400) / 3600 <= 16.5)
            co2 = max(400.0, co2 + (rng.gauss(60, 40) if occupied else rng.gauss(-60, 20)))
            co2 = min(co2, 2400.0)
            temp = min(26.0, max(16.0, temp + rng.gauss(0.05 if occupied else -0.05, 0.1)))
            rh = min(70.0, max(30.0, rh + rng.gauss(0, 0.8)))
            air: dict = {}
            for name, v, spread, digits in (("co2", co2, 40, 0), ("t", temp, 0.2, 1), ("rh", rh, 1.0, 1)):
                lo, hi = v - rng.random() * spread, v + rng.random() * spread
                air[name] = [round(lo, digits), round(v, 1), round(hi, digits)]
                if digits == 0:
                    air[name] = [int(lo), round(v, 1), int(hi)]
            body |= air
        out.append((t + interval_s, room, "telemetry", _j(body)))
        t += interval_s


# sizes --------------------------------------------------------------------------

CODECS = (("v1 JSON", 1, citylink.COMPRESSION_NONE), ("v2 zlib", 2, citylink.COMPRESSION_ZLIB),
          ("v2 zstd", 2, citylink.COMPRESSION_ZSTD), ("v2 zstd+dict", 2, citylink.COMPRESSION_ZSTD_DICT1))
TOPIC = "preau/v1/city/0341234a/records"


def per_record(records: list[Rec], version: int, compression: int, batch: int) -> float:
    """Bytes per record on the wire: payload, MQTT and TLS framing (the
    gateway's own count, edge_gateway/city_link.wire_bytes)."""
    from edge_gateway.city_link import wire_bytes

    total = 0
    for i in range(0, len(records), batch):
        payload = encode_batch("0341234a", "gw-0341234a", records[i:i + batch], epoch="9f2c4e1a0b7d3e55",
                               version=version, compression=compression)
        total += wire_bytes(TOPIC, payload)
    return total / max(1, len(records))


def sizes(records: list[Rec], hours: int, rooms: int) -> None:
    kinds = ("telemetry", "evt", "decision", "ack", "state", "audit")
    print("bytes per record on the uplink (payload + MQTT + TLS framing), %d records, %d h, %d rooms"
          % (len(records), hours, rooms))
    print("%-14s %8s %8s %8s" % ("codec", "mix/200", "live/5", "live/1") + "".join(" %9s" % k for k in kinds))
    for name, version, compression in CODECS:
        row = "%-14s %8.1f %8.1f %8.1f" % (name, per_record(records, version, compression, 200),
                                           per_record(records[:2000], version, compression, 5),
                                           per_record(records[:500], version, compression, 1))
        for kind in kinds:
            of_kind = [r for r in records if r.kind == kind]
            row += " %9.1f" % per_record(of_kind, version, compression, 200)
        print(row)
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(records), 200):
        payload = encode_batch("0341234a", "gw-0341234a", records[i:i + 200], version=2)
        citylink.parse_batch("0341234a", payload)
        n += 1
    dt = time.perf_counter() - t0
    print("v2 zstd+dict: encode+parse %.2f ms per 200-record batch on this machine" % (dt / n * 1000))


def forwarding_cost(records: list[Rec]) -> None:
    """What each record costs the gateway on its way out: SQL statements
    per event in the journal (a burst of 30 rooms' events, each event a
    record and its room's row), and building a 200-record batch: the first
    stage's (each stored body parsed back and encoded again) against the
    bodies spliced in as stored (version 1) and version 2."""
    from edge_gateway import history
    from edge_gateway.journal import Journal

    events = [r for r in records if r.kind == "evt"][:3000]
    ops_per_commit = 60  # 30 rooms, two messages each, in one commit

    def first_stage_apply(conn, ops) -> None:  # the first stage's journal: one statement per operation
        conn.execute("BEGIN IMMEDIATE")
        for op in ops:
            conn.execute(history.INSERT_RECORD if op[0] == "rec" else history.UPSERT_ROOM,
                         op[1:] if op[0] == "rec" else op[1])
        conn.execute("COMMIT")

    for name in ("first stage", "now"):
        with tempfile.TemporaryDirectory() as d:
            journal = Journal(os.path.join(d, "gw.sqlite"), lambda ticket, seq: None)
            journal.conn.execute("PRAGMA synchronous=OFF")  # the statements' cost, not the card's fsync
            statements = [0]
            journal.conn.set_trace_callback(lambda sql, n=statements: n.__setitem__(0, n[0] + 1))
            t0 = time.perf_counter()
            for i in range(0, len(events), ops_per_commit):
                ops: list[tuple] = []
                for j, r in enumerate(events[i:i + ops_per_commit], i + 1):
                    ops.append(("rec", j, r.room, "evt", r.at, 1, j, r.body, b"d" * 16))
                    ops.append(("room", (r.room, 1, 1, "0.4.2", "olimex", "idle", 0, r.at, j, "{}")))
                if name == "now":
                    journal._apply(ops)
                else:
                    first_stage_apply(journal.conn, ops)
            dt = time.perf_counter() - t0
            journal.stop()
        print("journal, %-11s: %.2f SQL statements per event, %.1f us per event (bursts of 30 rooms, no fsync)"
              % (name, statements[0] / len(events), dt / len(events) * 1e6))
    stored = [history.StoredRecord(r.seq, r.room, r.kind, r.at, r.body) for r in records[:200]]

    def first_stage() -> bytes:
        return json.dumps({"v": 1, "school": "0341234a", "gateway": "gw-0341234a",
                           "records": [r.as_dict() for r in stored]},
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    for name, build in (("first stage (parse and encode each body)", first_stage),
                        ("v1, bodies spliced as stored", lambda: encode_batch("0341234a", "gw-0341234a", stored)),
                        ("v2 zstd+dict", lambda: encode_batch("0341234a", "gw-0341234a", stored, version=2))):
        n = 200
        t0 = time.perf_counter()
        for _ in range(n):
            build()
        print("batch of 200: %-42s %7.1f us per record" % (name, (time.perf_counter() - t0) / n / 200 * 1e6))


def train_dict(path: str = citylink.DICT1_PATH, size: int = 16 * 1024) -> None:
    """Train on another school's records (another seed, other room names)
    than the ones measured, in batches of the sizes the gateway sends."""
    import zstandard

    rng = random.Random(7)
    samples = []
    for seed in (11, 12, 13):
        names = tuple("%s-%s" % (g, c) for g in ("cp", "ce1", "ce2", "cm1", "cm2", "ms", "gs") for c in "abcd")[:25]
        recs = school_day(rooms=25, hours=48, seed=seed, start=START + seed * 86400 * 7, room_names=names)
        i = 0
        while i < len(recs):
            n = rng.choice((1, 1, 2, 3, 5, 10, 20, 50, 200))
            content = encode_batch("0%06da" % rng.randint(0, 999999), "gw-x", recs[i:i + n], epoch="%016x" % rng.getrandbits(64),
                                   version=2, compression=citylink.COMPRESSION_NONE)[2:]
            samples.append(content)
            i += n
    d = zstandard.train_dictionary(size, samples, level=citylink.ZSTD_LEVEL)
    with open(path, "wb") as f:
        f.write(d.as_bytes())
    print("dictionary: %d bytes from %d samples -> %s" % (len(d.as_bytes()), len(samples), path))


# drains -------------------------------------------------------------------------


class CountingRelay:
    """A TCP relay between the gateway and the city broker that counts the
    bytes the gateway sends (TLS and MQTT included)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def pipe(reader, writer, count: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if count:
                        self.up += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(reader, writer) -> None:
            try:
                r2, w2 = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, w2, True), pipe(r2, writer, False))

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await asyncio.Event().wait()

        self._loop.run_until_complete(main())


class ParsingCity:
    """The city's side as cloud_bridge does it: parse_batch (either
    version), store each seq once, ack the highest contiguous one, list
    the versions it reads and echo the epoch."""

    def __init__(self, locked, school: str) -> None:
        from devkit.citybroker import TlsClient

        self.school = school
        self.stored: dict[int, float] = {}  # seq -> when it arrived (monotonic)
        self.acked = 0
        self.lock = threading.Lock()
        self.client = locked.client("worker.1")
        self.client.client.on_message = self._on_message
        self.client.connect()
        self.client.subscribe(citylink.city_topic(school, "records"))
        assert isinstance(self.client, TlsClient)

    def _on_message(self, client, userdata, msg) -> None:
        batch = citylink.parse_batch(self.school, bytes(msg.payload))
        now = time.monotonic()
        with self.lock:
            for r in batch.records:
                self.stored.setdefault(r.seq, now)
            for first, last in batch.dropped:
                for s in range(first, last + 1):
                    self.stored.setdefault(s, now)
            while self.acked + 1 in self.stored:
                self.acked += 1
            acked = self.acked
        client.publish(citylink.city_topic(self.school, "ack"),
                       citylink.encode_city_ack(self.school, acked, batch.epoch), qos=1)


def drain(records: list[Rec], uplink_kbit_s: int, live_every_s: float = 0.5) -> dict:
    """Load a gateway database with `records` (the city away), start the
    gateway with the city back, and time the drain; meanwhile a live
    record every `live_every_s` (a telemetry interval ending), timed from
    its commit to the city's parse."""
    from devkit.citybroker import LockedCity
    from devkit.school import LockedSchool
    from devkit.testing import school_clock, wait_for
    from edge_gateway import history
    from edge_gateway.config import Config
    from edge_gateway.gateway import Gateway

    with tempfile.TemporaryDirectory() as d:
        school = LockedSchool(school="0341234a", gateway_id="gw-0341234a", rooms=("cm2-b",), directory=d + "/school").start()
        city_broker = LockedCity.start(d + "/city", schools={"0341234a": "gw-0341234a"})
        relay = CountingRelay(city_broker.port)
        try:
            base = school.config(d)
            conn = history.open_db(base["db"])
            conn.execute("BEGIN")
            conn.executemany(history.INSERT_RECORD, [(r.seq, r.room, r.kind, r.at, None, None, r.body, None)
                                                     for r in records])
            # A gateway back from an outage has spoken with this city before: it
            # knows the city reads version 2 (kept in its database).
            conn.execute(history.SET_IDENTITY, ("city_version", "2"))
            conn.execute("COMMIT")
            conn.close()
            city_cfg = city_broker.gateway_config("0341234a") | {"port": relay.port}
            cfg = Config.from_dict(base | {"city_broker": city_cfg, "rooms": {"cm2-b": {"wifi": "allowed"}},
                                           "policy": {"zone": "C"}, "city": {"uplink_kbit_s": uplink_kbit_s}})
            city = ParsingCity(city_broker, "0341234a")
            gw = Gateway(cfg, clock=school_clock(), reconnect_max_s=1)
            committed_at: dict[int, float] = {}
            n = len(records)
            t0 = time.monotonic()
            gw.start()
            try:
                # Make the city reads v2 before the drain starts: the first ack says so.
                stop = threading.Event()

                def live() -> None:
                    # A fresh record, the way the gateway stores its own: on its loop, through the journal.
                    while not stop.wait(live_every_s):
                        def add() -> None:
                            gw.intake.last_seq += 1
                            seq = gw.intake.last_seq
                            committed_at[seq] = time.monotonic()
                            gw._submit([("rec", seq, "cm2-b", "evt", gw.clock(), None, None,
                                         '{"v":1,"boot":9,"seq":%d,"type":"button","data":{"press":"short"}}' % seq,
                                         None)])
                        assert gw._loop is not None
                        gw._loop.call_soon_threadsafe(add)

                live_thread = threading.Thread(target=live, daemon=True)
                live_thread.start()
                wait_for(lambda: city.acked >= n, timeout=3600, what="the backlog drained")
                drained = time.monotonic() - t0
                stop.set()
                live_thread.join()
                last = max(committed_at) if committed_at else 0
                wait_for(lambda: city.acked >= last, timeout=60, what="the live records")
                lat = sorted(city.stored[s] - committed_at[s] for s in committed_at)
                assert gw.forwarder is not None
                return {"records": n, "cap_kbit_s": uplink_kbit_s, "drain_s": drained,
                        "wire_bytes": relay.up, "bytes_per_record": relay.up / n,
                        "live_n": len(lat), "live_p50_s": lat[len(lat) // 2] if lat else 0.0,
                        "live_p99_s": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
                        "live_max_s": lat[-1] if lat else 0.0, "version": gw.forwarder.version,
                        "live_batches": gw.forwarder.live_batches}
            finally:
                gw.stop()
                city.client.close()
        finally:
            city_broker.stop()
            school.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-dict", action="store_true")
    ap.add_argument("--sizes-only", action="store_true")
    ap.add_argument("--cost-only", action="store_true", help="the gateway's forwarding cost per record only")
    ap.add_argument("--rooms", type=int, default=30)
    ap.add_argument("--hours", type=int, default=48)
    ap.add_argument("--caps", default="256,0", help="uplink caps in kbit/s to drain with (0: none)")
    args = ap.parse_args()
    if args.train_dict:
        train_dict()
        return 0
    records = school_day(rooms=args.rooms, hours=args.hours)
    forwarding_cost(records)
    if args.cost_only:
        return 0
    sizes(records, args.hours, args.rooms)
    if args.sizes_only:
        return 0
    for cap in (int(c) for c in args.caps.split(",")):
        r = drain(records, cap)
        print("drain of %(records)d records, cap %(cap_kbit_s)s kbit/s: %(drain_s).1f s, %(wire_bytes)d bytes on the "
              "gateway's connection (%(bytes_per_record).1f B/record), batch version %(version)d; live records "
              "during it: %(live_n)d in %(live_batches)d live batches, p50 %(live_p50_s).3f s, p99 %(live_p99_s).3f s, "
              "max %(live_max_s).3f s" % r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
