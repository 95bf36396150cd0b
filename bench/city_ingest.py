"""City ingest: records per second into SQLite and PostgreSQL, against raw
`executemany` of the same rows in the same run, and two city workers
against one (shared subscription on a real locked Mosquitto, PostgreSQL).

The workload is a realistic mix of one morning of several schools (board
births, events, command results, the gateway's decisions, telemetry
aggregates, audit entries), as version 1 JSON batches of `--batch` records.

- `ingest`: `Ingest.handle(topic, payload)`, the city's writer thread's
  whole work per batch: the contract's checks (protocol.citylink), the
  store (one transaction with fsync), the live room view, the ack.
- `raw`: the same payloads decoded (`json.loads`) and their rows inserted
  with one `executemany` into the same `records` table (same indexes), one
  transaction per batch, same durability: what any JSON ingest must do at
  the least. `raw rows`: `executemany` of rows already built (no decoding).
- `store`: `CityStore.store_batch` of batches already parsed.
- `version 2`: the same batches in the compact version 2 (zstd), which
  gateways send once the city lists it; `a backlog`: batches taken 8 at a
  time (`Ingest.handle_many`), as the writer takes those waiting in its
  queue, stored in one transaction (group commit).

Rounds alternate (raw, ingest, raw, ingest...) on a fresh database each,
and the best of each is kept: the machine is shared, compare ratios.

Workers: `preau city` processes (`python -m cloud_bridge`) in one MQTT
share group on one PostgreSQL, paused (SIGSTOP) while every school hands
its batches to the broker (QoS 1, TLS, its certificate), then let go; the
figure is records over the time from then to the last school's final ack:
the workers' drain of a backlog, on a fresh broker and database each time,
in version 2 batches (version 1 without the zstandard module).

    .venv/bin/python bench/city_ingest.py [--batch 200] [--batches 300] [--rounds 3] [--no-workers]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from cloud_bridge.ingest import GROUP_MAX, Ingest  # noqa: E402
from cloud_bridge.metrics import Metrics  # noqa: E402
from cloud_bridge.settings import CitySettings  # noqa: E402
from cloud_bridge.store import CityStore  # noqa: E402
from protocol.citylink import parse_batch  # noqa: E402

ROOMS = [f"r{n:02d}" for n in range(12)]


def workload(schools: int, batches: int, size: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """`batches` batches of `size` records, spread over `schools`, in each
    school's seq order, as the gateways would send them."""
    rnd = random.Random(seed)
    names = [f"034{s:04d}a" for s in range(schools)]
    seq = dict.fromkeys(names, 0)
    boards = {(s, r): [1, 0, 1000] for s in names for r in ROOMS}
    out = []
    for b in range(batches):
        school = names[b % schools]
        records = []
        for _ in range(size):
            seq[school] += 1
            n = seq[school]
            room = rnd.choice(ROOMS)
            board = boards[(school, room)]
            board[1] += 1
            board[2] += rnd.randint(1000, 6000)
            at = 1764000000.0 + n
            x = rnd.random()
            if x < 0.05:
                kind, body = "state", {"v": 1, "online": True, "boot": board[0], "fw": "0.3.0",
                                       "board": "olimex-esp32-poe", "uptime_ms": board[2], "session": "idle",
                                       "ap": False, "devices": ["button", "led", "ap_relay"]}
            elif x < 0.50:
                kind, body = "evt", {"v": 1, "boot": board[0], "seq": board[1], "uptime_ms": board[2],
                                     "time": int(at), "type": "session.started",
                                     "data": {"req": board[1], "duration_s": 2700, "ap": True, "projector": True,
                                              "source": "gateway"}}
            elif x < 0.75:
                kind, body = "telemetry", {"v": 1, "interval_s": 300, "n": 10, "co2_ppm": [612, 745.5, 903],
                                           "temp_c": [20.1, 20.6, 21.0], "projector": "on", "lamp_h": 1234,
                                           "ap": True}
            elif x < 0.88:
                kind, body = "decision", {"v": 1, "room": room, "req": board[1], "grant": True,
                                          "until": int(at) + 2700, "ap": True, "projector": True}
            elif x < 0.97:
                kind, body = "ack", {"v": 1, "id": board[1], "ok": True}
            else:
                kind, body = "audit", {"v": 1, "action": "override.set", "scope": "room", "room": room,
                                       "wifi": "never", "until": int(at) + 3600}
            records.append({"seq": n, "room": "gateway" if kind in ("decision", "audit") else room, "kind": kind,
                            "at": at, "body": body})
        out.append((school, json.dumps({"v": 1, "school": school, "gateway": "gw-" + school, "epoch": "e1",
                                        "records": records}).encode()))
    return out


def as_version_2(work: list[tuple[str, bytes]]) -> list[tuple[str, bytes]] | None:
    """The same batches in the compact, compressed version 2 (the gateway's
    default once the city lists it), or None if this checkout has no such
    encoder."""
    try:
        from protocol.citylink import encode_batch
    except ImportError:
        return None
    out = []
    for school, payload in work:
        obj = json.loads(payload)
        # encode_batch takes any record with the body's text as stored
        records = [SimpleNamespace(seq=r["seq"], room=r["room"], kind=r["kind"], at=r["at"],
                                   body=json.dumps(r["body"], separators=(",", ":"), ensure_ascii=False))
                   for r in obj["records"]]
        out.append((school, encode_batch(school, obj["gateway"], records, epoch=obj["epoch"], version=2)))
    return out


def count(work: list[tuple[str, bytes]]) -> int:
    return sum(len(json.loads(p)["records"]) for _, p in work)


# ---------------------------------------------------------------- SQLite

def sqlite_raw(path: str, work, decode: bool = True, rows_ready=None) -> float:
    CityStore(path).close()  # the same tables and indexes
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    sql = ("INSERT INTO records (school, epoch, seq, room, kind, at, body, received_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    start = time.perf_counter()
    for i, (school, payload) in enumerate(work):
        if decode:
            obj = json.loads(payload)
            rows = [(school, obj["epoch"], r["seq"], r["room"], r["kind"], r["at"],
                     json.dumps(r["body"], separators=(",", ":"), ensure_ascii=False), 1.0) for r in obj["records"]]
        else:
            assert rows_ready is not None
            rows = rows_ready[i]
        db.execute("BEGIN")
        db.executemany(sql, rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def other_ingest(code: str, batches: int, size: int, schools: int, rounds: int) -> float:
    """Records/s of the SQLite ingest of the city in `code` (a subprocess:
    its cloud_bridge cannot share this one's modules)."""
    script = (
        "import sys, os, tempfile, time, json\n"
        f"sys.path[:0] = [{os.path.abspath(code)!r}, {ROOT!r}]\n"
        "from bench.city_ingest import workload, count\n"
        "from cloud_bridge.ingest import Ingest\nfrom cloud_bridge.metrics import Metrics\n"
        "from cloud_bridge.settings import CitySettings\nfrom cloud_bridge.store import CityStore\n"
        f"work = workload({schools}, {batches}, {size})\nbest = None\n"
        f"for r in range({rounds}):\n"
        "    store = CityStore(os.path.join(tempfile.mkdtemp(), 'c.db'))\n"
        "    ingest = Ingest(CitySettings(token='t' * 24), store, Metrics(), now=lambda: 1.0)\n"
        "    t = time.perf_counter()\n"
        "    for school, payload in work:\n"
        "        assert ingest.handle(f'preau/v1/city/{school}/records', payload) is not None\n"
        "    t = time.perf_counter() - t\n"
        "    best = t if best is None else min(best, t)\n"
        "    store.close()\n"
        "print(count(work) / best)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def city_ingest(store: CityStore, work, group: int = 1) -> float:
    """`group` 1: each batch as it comes, alone (`Ingest.handle`); more: a
    backlog, the batches taken `group` at a time as the writer takes those
    waiting in its queue (`Ingest.handle_many`, one commit per group)."""
    ingest = Ingest(CitySettings(token="t" * 24), store, Metrics(), now=lambda: 1.0)
    messages = [(f"preau/v1/city/{school}/records", payload) for school, payload in work]
    start = time.perf_counter()
    for i in range(0, len(messages), group):
        acks = ingest.handle_many(messages[i:i + group])
        assert None not in acks, ingest.metrics.snapshot()["rejected"]
    elapsed = time.perf_counter() - start
    assert ingest.metrics.snapshot()["internal_errors"] == 0
    return elapsed


def city_store(store: CityStore, work) -> float:
    batches = [parse_batch(school, payload) for school, payload in work]
    start = time.perf_counter()
    for b in batches:
        store.store_batch(b, 1.0, checked=True)
    return time.perf_counter() - start


def bench_sqlite(work, rounds: int, v2=None) -> dict:
    folder = tempfile.mkdtemp(prefix="preau-bench-")
    best: dict[str, float] = {}
    rows_ready = []
    for school, payload in work:
        obj = json.loads(payload)
        rows_ready.append([(school, obj["epoch"], r["seq"], r["room"], r["kind"], r["at"],
                            json.dumps(r["body"], separators=(",", ":"), ensure_ascii=False), 1.0)
                           for r in obj["records"]])
    try:
        for r in range(rounds):
            def path(name: str) -> str:
                return os.path.join(folder, f"{name}-{r}.db")  # noqa: B023 - used at once

            times = {"raw": sqlite_raw(path("raw"), work)}
            store = CityStore(path("ingest"))
            times["ingest"] = city_ingest(store, work)
            store.close()
            times["raw rows"] = sqlite_raw(path("rawrows"), work, decode=False, rows_ready=rows_ready)
            if v2 is not None:
                store = CityStore(path("ingest-v2"))
                times["ingest v2"] = city_ingest(store, v2)
                store.close()
                store = CityStore(path("ingest-v2-backlog"))
                times["ingest v2 backlog"] = city_ingest(store, v2, GROUP_MAX)
                store.close()
            store = CityStore(path("ingest-backlog"))
            times["ingest backlog"] = city_ingest(store, work, GROUP_MAX)
            store.close()
            store = CityStore(path("store"))
            times["store"] = city_store(store, work)
            store.close()
            for k, v in times.items():
                best[k] = min(best.get(k, v), v)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return best


# ------------------------------------------------------------ PostgreSQL

def pg_raw(url: str, work) -> float:
    import psycopg

    store = CityStore(url=url)  # the same tables and indexes
    store.close()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    sql = ("INSERT INTO records (school, epoch, seq, room, kind, at, body, received_at) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        for school, payload in work:
            obj = json.loads(payload)
            rows = [(school, obj["epoch"], r["seq"], r["room"], r["kind"], r["at"],
                     json.dumps(r["body"], separators=(",", ":"), ensure_ascii=False), 1.0) for r in obj["records"]]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows)  # psycopg 3: in pipeline mode
        return time.perf_counter() - start


def bench_postgres(pg, work, rounds: int, v2=None) -> dict:
    best: dict[str, float] = {}
    for _ in range(rounds):
        times = {"raw": pg_raw(pg.new_database(), work)}
        runs = [("ingest", work, 1)]
        if v2 is not None:
            runs += [("ingest v2", v2, 1), ("ingest v2 backlog", v2, GROUP_MAX)]
        for name, payloads, group in runs:
            store = CityStore(url=pg.new_database())
            times[name] = city_ingest(store, payloads, group)
            store.close()
        for k, v in times.items():
            best[k] = min(best.get(k, v), v)
    return best


# ---------------------------------------------------------------- workers

def run_workers(city, url: str, n: int, work, folder: str, payloads=None) -> float:
    """n `preau city` processes in one share group; seconds from the first
    publish to every school's last ack. `payloads`: the same batches in
    another version, published instead of `work`'s."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from cloud_bridge.ca import worker_cn

    token = secrets.token_urlsafe(24)
    procs = []
    logs = [open(os.path.join(folder, f"w{i}.log"), "w") for i in range(1, n + 1)]  # noqa: SIM115 - closed below
    # In the run's own folder: a worker keeps its accounts and alerts files
    # beside its --db, which defaults to its working directory.
    env = {**os.environ, "PREAU_CITY_TOKEN": token, "PREAU_CITY_DATABASE_URL": url,
           "PYTHONPATH": os.pathsep.join(filter(None, (os.path.abspath(ROOT), os.environ.get("PYTHONPATH"))))}
    for i in range(1, n + 1):
        identity = city.identities[worker_cn(str(i))]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cloud_bridge", "--broker", f"{city.host}:{city.port}", "--http", "127.0.0.1:0",
             "--ca-file", city.ca.cert_file, "--cert-file", identity.cert_file, "--key-file", identity.key_file,
             "--share-group", "bench", "--client-id", f"worker.{i}", "--log-level", "WARNING"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=logs[i - 1]))
    time.sleep(3.0)  # connected and subscribed (a first run creates the sessions)
    schools = sorted({s for s, _ in work})
    last = {s: max(r["seq"] for p in (p for sc, p in work if sc == s) for r in json.loads(p)["records"])
            for s in schools}
    done = threading.Event()
    acked: dict[str, int] = dict.fromkeys(schools, 0)
    lock = threading.Lock()
    clients = {}
    for school in schools:
        tls = city.gateway(school)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{school}-{n}")
        c.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        c.max_inflight_messages_set(20)
        c.max_queued_messages_set(0)
        subscribed = threading.Event()

        def on_message(client, userdata, msg, school=school):
            a = json.loads(msg.payload)["acked"]
            with lock:
                acked[school] = max(acked[school], a)
                if all(acked[s] >= last[s] for s in schools):
                    done.set()

        c.on_message = on_message
        c.on_subscribe = lambda *a, ev=subscribed: ev.set()
        c.connect(city.host, city.port)
        c.subscribe(f"preau/v1/city/{school}/ack", 1)
        c.loop_start()
        subscribed.wait(10)
        clients[school] = c
    # The workers paused (SIGSTOP, their connections open), every batch
    # handed to the broker, then the workers let go: the figure is the
    # workers' drain, not the publishers' pace (the machine has 2 cores).
    for p in procs:
        p.send_signal(signal.SIGSTOP)
    sent = [clients[school].publish(f"preau/v1/city/{school}/records", payload, qos=1)
            for school, payload in (payloads or work)]
    for info in sent:
        info.wait_for_publish(60)
    start = time.perf_counter()
    for p in procs:
        p.send_signal(signal.SIGCONT)
    ok = done.wait(300)
    elapsed = time.perf_counter() - start
    for c in clients.values():
        c.disconnect()
        c.loop_stop()
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    for f in logs:
        f.close()
    if not ok:
        raise RuntimeError(f"{n} workers: not every record acked within 300 s: {acked} of {last}")
    return elapsed


def bench_workers(pg, work, rounds: int, payloads=None) -> dict:
    from devkit.citybroker import LockedCity

    schools = {s: "gw-" + s for s in sorted({s for s, _ in work})}
    best: dict[str, float] = {}
    for r in range(rounds):
        for n in (1, 2):
            # A fresh broker, database and sessions each time: a worker's
            # persistent session from the run before would still take its
            # share of the batches (Mosquitto queues them for it).
            folder = tempfile.mkdtemp(prefix="preau-bench-workers-")
            city = LockedCity.start(folder, schools=schools, workers=("1", "2"))
            try:
                elapsed = run_workers(city, pg.new_database(), n, work, folder, payloads)
            finally:
                city.stop()
                shutil.rmtree(folder, ignore_errors=True)
            key = f"{n} worker" + ("s" if n > 1 else "")
            best[key] = min(best.get(key, elapsed), elapsed)
            print(f"  round {r + 1}: {key}: {count(work) / elapsed:,.0f} records/s", flush=True)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=200, help="records per batch")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-workers", action="store_true")
    parser.add_argument("--code", metavar="DIR", help="also measure the city of another checkout (SQLite ingest)")
    args = parser.parse_args()
    work = workload(args.schools, args.batches, args.batch)
    n = count(work)
    print(f"{n:,} records in {len(work)} batches of {args.batch}, {args.schools} schools; best of {args.rounds}")

    def line(name: str, seconds: float, base: float | None = None) -> None:
        ratio = f"  {base / seconds:.2f}x raw" if base else ""
        print(f"  {name:<28} {n / seconds:>10,.0f} records/s{ratio}")

    v2 = as_version_2(work)
    best = bench_sqlite(work, args.rounds, v2)
    print("SQLite (WAL, synchronous=FULL, a commit per batch)")
    line("raw executemany (decoded)", best["raw"])
    line("city ingest (Ingest.handle)", best["ingest"], best["raw"])
    if "ingest v2" in best:
        line("city ingest, version 2 batches", best["ingest v2"], best["raw"])
    line(f"  a backlog (groups of {GROUP_MAX})", best["ingest backlog"], best["raw"])
    if "ingest v2 backlog" in best:
        line("  version 2, a backlog", best["ingest v2 backlog"], best["raw"])
    line("raw executemany (rows ready)", best["raw rows"])
    line("city store (parsed batches)", best["store"], best["raw rows"])
    if args.code:
        rate = other_ingest(args.code, args.batches, args.batch, args.schools, args.rounds)
        print(f"  {'city ingest of ' + args.code:<28} {rate:>10,.0f} records/s  {rate * best['raw'] / n:.2f}x raw")
    if args.no_postgres:
        return 0
    from devkit.postgres import Postgres

    pg = Postgres(fsync=True).start()
    try:
        best = bench_postgres(pg, work, args.rounds, v2)
        print("PostgreSQL (fsync on, a commit per batch)")
        line("raw executemany (decoded)", best["raw"])
        line("city ingest (Ingest.handle)", best["ingest"], best["raw"])
        if "ingest v2" in best:
            line("city ingest, version 2 batches", best["ingest v2"], best["raw"])
            line("  version 2, a backlog", best["ingest v2 backlog"], best["raw"])
        if not args.no_workers:
            print("Workers on PostgreSQL, shared subscription, locked Mosquitto (TLS), "
                  + ("version 2 batches" if v2 else "version 1 batches"))
            best = bench_workers(pg, work, max(1, args.rounds - 1), v2)
            line("1 worker", best["1 worker"])
            line("2 workers", best["2 workers"])
            print(f"  2 workers / 1 worker: {best['1 worker'] / best['2 workers']:.2f}x")
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
