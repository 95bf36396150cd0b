"""Two city workers on one PostgreSQL, splitting the schools' batches
through an MQTT shared subscription on the real locked city Mosquitto
(devkit/citybroker.py): every record stored once (batches resent too),
none lost, every batch acked, and each room's live view is its newest
record's, whichever worker applied which batch in which order."""

import json
import random

import pytest

from cloud_bridge.service import CityService
from devkit.citybroker import LockedCity
from devkit.testing import wait_for

pytestmark = pytest.mark.broker

SCHOOLS = {"0341234a": "gw-0341234a", "0679999z": "gw-0679999z"}
ROOMS = ("cm2-b", "ce1", "cp-a", "cm1")
WAIT_S = 60.0


def script(school, batches, per_batch, rnd):
    """A school's outbox as batches: each room's access point switched on
    and off, its board's uptime growing, in the gateway's seq order."""
    uptime = dict.fromkeys(ROOMS, 1000)
    out, seq, last = [], 0, {}
    for _ in range(batches):
        records = []
        for _ in range(per_batch):
            seq += 1
            room = rnd.choice(ROOMS)
            uptime[room] += rnd.randint(1, 5000)
            on = rnd.random() < 0.5
            records.append({"seq": seq, "room": room, "kind": "evt", "at": 1000.0 + seq, "body": {
                "v": 1, "boot": 3, "seq": seq, "uptime_ms": uptime[room], "time": None, "type": "ap.changed",
                "data": {"on": on, "reason": "teacher"}}})
            last[room] = (seq, on, uptime[room])
        out.append(json.dumps({"v": 1, "school": school, "gateway": SCHOOLS[school], "epoch": "e1",
                               "records": records}))
    return out, seq, last


def test_two_workers_on_postgresql_store_each_record_once_in_order(tmp_path, postgres):
    city = LockedCity.start(tmp_path / "pki", schools=SCHOOLS, workers=("1", "2"))
    url = postgres.new_database()
    workers, gateways = [], []
    try:
        first = CityService(city.worker_settings("1", database_url=url, share_group="city")).start()
        workers.append(first)
        second = CityService(city.worker_settings("2", database_url=url, share_group="city",
                                                  token=first.settings.token)).start()
        workers.append(second)
        assert first.wait_ready(15) and second.wait_ready(15)
        rnd = random.Random(11)
        plan = {school: script(school, batches=60, per_batch=15, rnd=rnd) for school in SCHOOLS}
        for school in SCHOOLS:
            gw = city.client(school)
            assert gw.connect()
            gw.subscribe(f"preau/v1/city/{school}/ack")
            gateways.append((school, gw))
        # Both schools at once, interleaved, and a tenth of the batches sent
        # twice (a gateway that missed an ack), so that the two workers hold
        # one school's batches at the same time.
        queue = [(school, payload) for school in SCHOOLS for payload in plan[school][0]]
        queue += [item for item in queue if rnd.random() < 0.1]
        order = sorted(range(len(queue)), key=lambda i: (i % len(plan[queue[i][0]][0]), queue[i][0]))
        clients = dict(gateways)
        for i in order:
            school, payload = queue[i]
            clients[school].client.publish(f"preau/v1/city/{school}/records", payload, qos=1)

        store = first.store
        for school, gw in gateways:
            total = plan[school][1]
            topic = f"preau/v1/city/{school}/ack"
            wait_for(lambda gw=gw, total=total, topic=topic: max(
                (json.loads(p)["acked"] for p in gw.received(topic)), default=0) == total, WAIT_S, f"{school} acked")
            assert store.seqs(school, "e1") == list(range(1, total + 1))  # each once, none lost
            assert store.acked(school, "e1") == total
        snaps = [w.metrics.snapshot() for w in workers]
        assert all(s["batches"] > 0 for s in snaps), "the shared subscription split nothing"
        assert sum(s["records_stored"] for s in snaps) == sum(p[1] for p in plan.values())
        assert sum(s["internal_errors"] + s["store_errors"] for s in snaps) == 0
        # Each room shows its newest record, never an older one applied late.
        rooms = {(r["school"], r["room"]): r for r in store._read(
            "SELECT school, room, ap, live_seq, live_uptime FROM rooms")}
        for school in SCHOOLS:
            for room, (seq, on, uptime) in plan[school][2].items():
                row = rooms[(school, room)]
                assert (row["live_seq"], bool(row["ap"]), row["live_uptime"]) == (seq, on, uptime), (school, room)
    finally:
        for _, gw in gateways:
            gw.close()
        for w in workers:
            w.stop()
        city.stop()

