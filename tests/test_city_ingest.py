"""The city service end to end against real brokers and a real SQLite file:
the city broker locked as a city runs it (Mosquitto, TLS, a certificate per
identity, the generated ACL: devkit/citybroker.py) and, for a second
implementation, an open amqtt; a plain paho client plays the school gateway."""

import json
import logging
import secrets
import threading
import uuid

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge.service import CityService, main
from cloud_bridge.settings import CitySettings
from devkit.brokers import Mosquitto, ThreadedAmqtt
from devkit.citybroker import LockedCity
from devkit.testing import wait_for

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"
GATEWAY_ID = "gw-0341234a"
WAIT_S = 15.0


class Gateway:
    """A school gateway reduced to its city link: publish batches, collect acks.
    On a LockedCity it connects with the school's certificate."""

    def __init__(self, broker, school=SCHOOL):
        self.school = school
        self.acks: list[dict] = []
        self.gaps: list[dict] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{school}-{uuid.uuid4().hex[:8]}")
        if isinstance(broker, LockedCity):
            tls = broker.gateway(school, GATEWAY_ID)
            self.client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"preau/v1/city/{school}/ack", 1), (f"preau/v1/city/{school}/gaps", 1)])
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_disconnect = lambda *a: self.ready.clear()
        self.client.on_message = lambda c, u, m: (self.gaps if m.topic.endswith("/gaps") else self.acks).append(
            json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(WAIT_S), "gateway not subscribed"

    def send(self, seqs, room="cm2-b", kind="decision", school=None, epoch=None, dropped=None):
        records = [{"seq": s, "room": room, "kind": kind, "at": 1000.0 + s, "body": {"v": 1, "n": s}} for s in seqs]
        envelope = {"v": 1, "school": school or self.school, "gateway": GATEWAY_ID, "records": records}
        if epoch:
            envelope["epoch"] = epoch
        if dropped:
            envelope["dropped"] = dropped
        self.publish(json.dumps(envelope))

    def publish(self, payload, topic=None):
        info = self.client.publish(topic or f"preau/v1/city/{self.school}/records", payload, qos=1)
        info.wait_for_publish(WAIT_S)

    def wait_ack(self, acked, count=None):
        """Wait for the `count`-th ack (any, if None) to say `acked`."""
        def arrived():
            acks = self.acks if count is None else self.acks[:count]
            return (count is None or len(acks) == count) and any(
                (a.get("v"), a.get("school"), a.get("acked")) == (1, self.school, acked) for a in acks[-1:])
        wait_for(arrived, timeout=WAIT_S, what=f"ack {acked}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def settings_for(broker, tmp_path, worker="1", **extra):
    """A worker's settings: on a LockedCity, worker.NAME's certificate and the CA's index."""
    values = {"db_path": str(tmp_path / "city.db"), **extra}
    if isinstance(broker, LockedCity):
        return broker.worker_settings(worker, **values)
    return CitySettings(token=secrets.token_urlsafe(24), broker_host=broker.host, broker_port=broker.port,
                        http_port=0, client_id=f"city-{uuid.uuid4().hex[:8]}", reconnect_max_s=1.0, **values)


def start_service(broker, tmp_path, worker="1", **extra):
    service = CityService(settings_for(broker, tmp_path, worker, **extra)).start()
    assert service.wait_ready(WAIT_S), f"city service not subscribed: {service.failed}"
    return service


@pytest.fixture
def locked_city(tmp_path):
    city = LockedCity.start(tmp_path / "pki", workers=("1", "2"))
    yield city
    city.stop()


@pytest.fixture(params=["locked-mosquitto", "amqtt"])
def broker(request, tmp_path):
    """Each test using this runs against the locked city Mosquitto and an open amqtt."""
    if request.param == "amqtt":
        b = ThreadedAmqtt().start()
        yield b
        b.stop()
    else:
        b = LockedCity.start(tmp_path / "pki", workers=("1", "2"))
        yield b
        b.stop()


@pytest.fixture
def city(broker, tmp_path):
    service = start_service(broker, tmp_path)
    yield service
    service.stop()


@pytest.fixture
def gateway(broker, city):
    gw = Gateway(broker)
    yield gw
    gw.close()


def test_replays_and_duplicates_are_stored_once_and_acked(city, gateway):
    gateway.send([1, 2, 3])
    gateway.wait_ack(3, count=1)
    gateway.send([2, 3, 4, 5, 5])  # overlapping replay, with a repeat inside
    gateway.wait_ack(5, count=2)
    gateway.send([8, 7])  # ahead of a gap: stored, not acked past 5
    gateway.wait_ack(5, count=3)
    gateway.send([1, 2, 3, 4, 5, 6])  # the whole outbox again, filling the gap
    gateway.wait_ack(8, count=4)
    assert city.store.seqs(SCHOOL) == [1, 2, 3, 4, 5, 6, 7, 8]
    snap = city.metrics.snapshot()
    assert (snap["batches"], snap["records_stored"], snap["duplicates"], snap["acks_published"]) == (4, 8, 8, 4)


def test_malformed_payloads_are_counted_logged_and_ingest_goes_on(city, gateway, broker, caplog):
    caplog.set_level(logging.WARNING, logger="cloud_bridge")
    gateway.publish(b"x" * 5000)
    gateway.publish(b"[1, 2]")
    gateway.publish(json.dumps({"v": 2, "school": SCHOOL, "gateway": "g", "records": []}))
    gateway.send([1], school="0679999z")
    gateway.publish(json.dumps({"v": 1, "school": SCHOOL, "gateway": "g", "records": "all"}))
    gateway.publish(json.dumps({"v": 1, "school": "UPPER", "gateway": "g", "records": []}),
                    topic="preau/v1/city/UPPER/records")
    gateway.publish(json.dumps({"v": 1, "school": SCHOOL, "gateway": GATEWAY_ID, "records": [
        {"seq": 1, "room": "cm2-b", "kind": "decision", "at": 1.0, "body": {}},
        {"seq": 2, "room": "cm2-b", "kind": "gossip", "at": 2.0, "body": {}},
        {"seq": 3, "room": "cm2-b", "kind": "decision", "at": 3.0, "body": {}},
    ]}))
    # The good records of the last batch are stored; the bad one is set aside.
    gateway.wait_ack(3)
    expected = {"not_json": 1, "not_object": 1, "version": 1, "school_mismatch": 1, "bad_field": 1,
                "bad_topic": 1, "record_kind": 1}
    if isinstance(broker, LockedCity):
        # The locked broker's ACL drops a gateway's publish outside its school's topics.
        del expected["bad_topic"]
    wait_for(lambda: {k: v for k, v in city.metrics.snapshot()["rejected"].items() if v} == expected, timeout=WAIT_S, what="rejections")
    assert city.store.seqs(SCHOOL) == [1, 3]
    messages = [r.getMessage() for r in caplog.records]
    for reason in expected:
        assert any(f"({reason})" in m for m in messages), reason
    assert all(len(m) < 600 for m in messages)  # payloads are truncated in the log
    assert any("x" * 200 + "…" in m for m in messages)
    gateway.send([4, 5])
    gateway.wait_ack(5)
    assert city.ready


def test_gateway_state_and_the_api_over_http(city, gateway, broker):
    gateway.client.publish(f"preau/v1/city/{SCHOOL}/gateway",
                           json.dumps({"v": 1, "online": True, "gateway": "gw-0341234a", "fw": "0.1.0"}),
                           qos=1, retain=True).wait_for_publish(WAIT_S)
    birth = {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "wt32-eth01", "uptime_ms": 5,
             "session": "idle", "ap": False, "devices": []}
    gateway.publish(json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-0341234a", "records": [
        {"seq": 1, "room": "cm2-b", "kind": "state", "at": 50.0, "body": birth}]}))
    gateway.wait_ack(1)
    wait_for(lambda: city.metrics.snapshot()["gateway_states"] == 1, timeout=WAIT_S, what="gateway state")
    auth = {"Authorization": f"Bearer {city.settings.token}"}
    status = httpx.get(city.url + "/api/status", headers=auth).json()
    [school] = status["schools"]
    assert (school["school"], school["gateway"], school["online"], status["records"]) == (SCHOOL, "gw-0341234a", True, 1)
    assert [(r["room"], r["online"], r["boot"], r["board"]) for r in school["rooms"]] == [("cm2-b", True, 7, "wt32-eth01")]
    assert httpx.get(city.url + "/api/status").status_code == 401
    assert httpx.get(city.url + "/healthz").json() == {"ok": True, "database": True, "broker": True}
    assert "preau_city_records_stored_total 1.0\n" in httpx.get(city.url + "/metrics").text


def test_ingest_carries_on_after_the_broker_restarts(locked_city, tmp_path):
    city = start_service(locked_city, tmp_path)
    gateway = Gateway(locked_city)
    try:
        gateway.send([1, 2])
        gateway.wait_ack(2)
        locked_city.broker.stop()
        wait_for(lambda: not city.ready, timeout=WAIT_S, what="the city to see the broker go")
        locked_city.broker.start()  # same port
        assert city.wait_ready(WAIT_S), "city did not reconnect"
        assert gateway.ready.wait(WAIT_S), "gateway did not reconnect"
        gateway.send([2, 3, 4])
        gateway.wait_ack(4)
        assert city.store.seqs(SCHOOL) == [1, 2, 3, 4]
        assert city.metrics.snapshot()["connects"] == 2
    finally:
        gateway.close()
        city.stop()


def test_a_crash_between_commit_and_ack_costs_only_a_repeat(locked_city, tmp_path):
    # The first worker stores the batch, then "crashes" before it acks to the
    # gateway or to the broker. Its persistent session keeps the batch at the
    # broker, which delivers it again to the next worker with that identity
    # (on the locked broker the client id is the certificate's name):
    # stored once, acked then.
    first = start_service(locked_city, tmp_path)
    gateway = Gateway(locked_city)
    try:
        ingest = first.city.ingest
        ingest.publish = lambda *args, **kwargs: True  # the ack to the gateway never leaves
        ingest.ack = lambda msg: None  # nor the acknowledgement to the broker
        gateway.send([1, 2])
        wait_for(lambda: first.store.seqs(SCHOOL) == [1, 2], timeout=WAIT_S, what="the batch committed")
        first.stop()
        assert gateway.acks == []
        second = CityService(first.settings).start()
        try:
            gateway.wait_ack(2, count=1)
            assert second.store.seqs(SCHOOL) == [1, 2]
            snap = second.metrics.snapshot()
            assert (snap["records_stored"], snap["duplicates"], snap["internal_errors"]) == (0, 2, 0)
        finally:
            second.stop()
    finally:
        gateway.close()
        first.stop()


def test_shared_subscription_workers_split_the_batches(locked_city, tmp_path):
    # Two workers (two identities) in one share group, one database: every
    # record once, one ack per batch.
    first = start_service(locked_city, tmp_path, share_group="city")
    second_settings = settings_for(locked_city, tmp_path, worker="2", token=first.settings.token, share_group="city")
    second = CityService(second_settings).start()
    gateway = Gateway(locked_city)
    try:
        assert second.wait_ready(WAIT_S)
        for start in range(1, 41, 4):
            gateway.send(range(start, start + 4))
        # Two writers may publish their acks in either order: the gateway
        # keeps the highest.
        wait_for(lambda: max((a["acked"] for a in gateway.acks), default=0) == 40, timeout=WAIT_S, what="ack 40")
        assert first.store.seqs(SCHOOL) == list(range(1, 41))
        batches = first.metrics.snapshot()["batches"] + second.metrics.snapshot()["batches"]
        assert batches == 10
    finally:
        gateway.close()
        second.stop()
        first.stop()


def test_a_lasting_gap_is_asked_for_and_the_ack_carries_the_epoch(locked_city, tmp_path):
    city = start_service(locked_city, tmp_path, gap_after_s=0.5)
    gateway = Gateway(locked_city)
    try:
        gateway.send([1, 2], epoch="e7")
        gateway.wait_ack(2)
        assert gateway.acks[-1] == {"v": 1, "school": SCHOOL, "acked": 2, "versions": gateway.acks[-1]["versions"],
                                    "epoch": "e7"}
        gateway.send([5, 6, 9], epoch="e7", dropped=[[7, 8]])  # 3 and 4 lost on the way
        gateway.wait_ack(2, count=2)
        wait_for(lambda: gateway.gaps, timeout=WAIT_S, what="a gap request")
        assert gateway.gaps[0] == {"v": 1, "school": SCHOOL, "epoch": "e7", "ranges": [[3, 4]]}
        gateway.send([3, 4], epoch="e7")  # what a gateway resends
        gateway.wait_ack(9, count=3)
        snap = city.metrics.snapshot()
        assert snap["gap_requests"] >= 1 and snap["records_dropped"] == 2
        requests = len(gateway.gaps)
        assert city.store.status()["schools"][0]["gaps"] == 0
        assert city.city.ingest.due_gaps() == [] and len(gateway.gaps) == requests
    finally:
        gateway.close()
        city.stop()


def test_cli_refuses_to_start_without_a_token(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("PREAU_CITY_TOKEN", raising=False)
    assert main(["--db", str(tmp_path / "city.db")]) == 2
    assert "PREAU_CITY_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("PREAU_CITY_TOKEN", secrets.token_urlsafe(24))
    assert main(["--broker", "no-port-here"]) == 2
    assert "--broker: expected HOST:PORT" in capsys.readouterr().err


def test_cli_stops_with_a_clear_error_when_the_broker_refuses_us(monkeypatch, capsys, tmp_path):
    broker = Mosquitto(extra_config="allow_anonymous false\n").start()
    try:
        monkeypatch.setenv("PREAU_CITY_TOKEN", secrets.token_urlsafe(24))
        code = main(["--broker", f"{broker.host}:{broker.port}", "--db", str(tmp_path / "city.db"),
                     "--http", "127.0.0.1:0", "--log-level", "ERROR"])
    finally:
        broker.stop()
    assert code == 1
    assert "refused client 'preau-city': Not authorized" in capsys.readouterr().err
