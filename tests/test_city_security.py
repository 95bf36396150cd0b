"""The city link locked down (docs/city.md, "City PKI and broker"), against a
real Mosquitto 2.0.11 running the generated files with a fresh city CA
(devkit/citybroker.py): plain paho clients play the attacker; then a real
gateway and a real city work through it. And the seq-burning fix: a forged
batch with a real gateway's next seqs never makes the city drop the real
records, nor the gateway delete records the city never got.

"Not received" is proven with a sentinel: after the forbidden message, an
allowed one from the same sender on the same path; once the sentinel has
arrived, the forbidden one would have arrived before it (one publisher,
QoS 1: Mosquitto keeps the order)."""

import asyncio
import json
import logging
import secrets
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge.ca import CityCA, Written
from cloud_bridge.ingest import Ingest
from cloud_bridge.metrics import Metrics
from cloud_bridge.register import GatewayRegister
from cloud_bridge.service import CityService
from cloud_bridge.settings import CitySettings
from cloud_bridge.store import CityStore
from devkit.citybroker import LockedCity, TlsClient
from devkit.school import LockedSchool
from devkit.testing import Board, school_clock, wait_for
from edge_gateway.city_link import Forwarder
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from protocol.citylink import city_topic

A, B = "0341234a", "0679999z"
GW_A, GW_B = "gw-0341234a", "gw-0679999z"
WAIT_S = 15.0


@pytest.fixture
def city(tmp_path):
    locked = LockedCity.start(tmp_path, schools={A: GW_A, B: GW_B}, workers=("1", "2"))
    yield locked
    locked.stop()


@pytest.fixture
def clients():
    opened: list[TlsClient] = []

    def track(client: TlsClient) -> TlsClient:
        opened.append(client)
        return client

    yield track
    for c in opened:
        c.close()


def connected(city, clients, who, client_id=None):
    c = clients(city.client(who, client_id))
    assert c.connect(), f"{who} refused: {c.refused}"
    return c


def batch(school, gateway, seqs, tag="real", epoch=""):
    envelope = {"v": 1, "school": school, "gateway": gateway, "records": [
        {"seq": s, "room": "cm2-b", "kind": "decision", "at": 1000.0 + s, "body": {"v": 1, "n": s, "tag": tag}}
        for s in seqs]}
    if epoch:
        envelope["epoch"] = epoch  # a forger copies the real gateway's
    return json.dumps(envelope)


# ------------------------------------------------------------- who gets in

@pytest.mark.broker
def test_without_a_city_certificate_nobody_gets_in(city, clients, tmp_path):
    assert not clients(city.client(None)).connect()  # TLS, but no client certificate
    other = CityCA.init(str(tmp_path / "other"))
    forged = other.issue_gateway(A, GW_A, str(tmp_path / "forged"))  # same name, another CA
    c = clients(TlsClient(city.host, city.port, city.ca.cert_file, forged))
    assert not c.connect()
    # The broker's own certificate is serverAuth only: no client with it.
    server = Written(city.identities[A].entry, city.ca.server_cert_file, city.ca.server_key_file, city.ca.cert_file)
    assert not clients(TlsClient(city.host, city.port, city.ca.cert_file, server)).connect()
    assert "certificate verify failed" in city.broker.log_tail(5000)
    assert connected(city, clients, A)


@pytest.mark.broker
def test_the_broker_refuses_plain_tcp_and_anonymous(city):
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain")
    plain.connect(city.host, city.port, keepalive=5)  # TCP connects; the TLS listener drops the MQTT bytes
    wait_for(lambda: plain.loop(timeout=0.2) != mqtt.MQTT_ERR_SUCCESS, WAIT_S, "the broker to drop plain MQTT")
    assert not plain.is_connected()
    with open(city.files.conf) as f:
        conf = f.read()
    assert "allow_anonymous false" in conf and "require_certificate true" in conf
    assert "password_file" not in conf


# ------------------------------------------------------- what each may do

@pytest.mark.broker
def test_a_gateway_writes_only_its_own_schools_records_and_state(city, clients):
    worker = connected(city, clients, "worker.1")
    assert worker.subscribe(city_topic("+", "records"), city_topic("+", "gateway")) == [1, 1]
    # Whatever username it sends, its certificate's name is its username.
    a = clients(city.client(A))
    a.client.username_pw_set(B)
    assert a.connect()
    a.publish(city_topic(B, "records"), batch(B, GW_B, [1], tag="forged"))
    a.publish(city_topic(B, "gateway"), {"v": 1, "online": False, "gateway": GW_B}, retain=True)
    a.publish(city_topic(A, "records"), batch(A, GW_A, [1]))  # the sentinel
    wait_for(lambda: worker.received(city_topic(A, "records")), WAIT_S, "A's own batch at the worker")
    assert worker.received(city_topic(B, "records")) == []
    assert worker.received(city_topic(B, "gateway")) == []
    # Nor did the retained state stay: a new reader of B's state finds nothing from A.
    a.publish(city_topic(A, "gateway"), {"v": 1, "online": True, "gateway": GW_A}, retain=True)
    late = connected(city, clients, "worker.2")
    late.subscribe(city_topic("+", "gateway"))
    a.publish(city_topic(A, "gateway"), {"v": 1, "online": True, "gateway": GW_A})  # after every retained one
    wait_for(lambda: len(late.received(city_topic(A, "gateway"))) == 2, WAIT_S, "A's retained state, then the new")
    assert late.received(city_topic(B, "gateway")) == []


@pytest.mark.broker
def test_a_gateway_reads_only_its_own_acks_and_publishes_none(city, clients):
    a = connected(city, clients, A)
    b = connected(city, clients, B)
    worker = connected(city, clients, "worker.1")
    # Mosquitto grants the subscriptions (MQTT 3.1.1 has no per-message
    # refusal) but delivers nothing the ACL does not let A read.
    a.subscribe(city_topic(A, "ack"), city_topic(B, "ack"), "preau/v1/city/#", "#",
                f"$share/spy/{city_topic('+', 'records')}")
    b.subscribe(city_topic(B, "ack"))
    worker.publish(city_topic(B, "ack"), {"v": 1, "school": B, "acked": 7})
    b.publish(city_topic(B, "records"), batch(B, GW_B, [1]))
    worker.publish(city_topic(A, "ack"), {"v": 1, "school": A, "acked": 1})  # the sentinel
    wait_for(lambda: a.received(city_topic(A, "ack")), WAIT_S, "the worker's ack to A")
    assert [t for t, _ in a.messages] == [city_topic(A, "ack")]
    wait_for(lambda: b.received(city_topic(B, "ack")), WAIT_S, "the worker's ack to B")
    # Acks come from the city only: a gateway's ack, to itself or to another school, goes nowhere.
    a.publish(city_topic(B, "ack"), {"v": 1, "school": B, "acked": 99})
    a.publish(city_topic(A, "ack"), {"v": 1, "school": A, "acked": 99})
    b.publish(city_topic(B, "ack"), {"v": 1, "school": B, "acked": 99})
    worker.publish(city_topic(B, "ack"), {"v": 1, "school": B, "acked": 8})  # the sentinels
    worker.publish(city_topic(A, "ack"), {"v": 1, "school": A, "acked": 2})
    wait_for(lambda: len(b.received(city_topic(B, "ack"))) == 2, WAIT_S, "the worker's second ack to B")
    wait_for(lambda: len(a.received(city_topic(A, "ack"))) == 2, WAIT_S, "the worker's second ack to A")
    assert [json.loads(p)["acked"] for p in b.received(city_topic(B, "ack"))] == [7, 8]
    assert [json.loads(p)["acked"] for p in a.received(city_topic(A, "ack"))] == [1, 2]


@pytest.mark.broker
def test_gap_requests_come_from_workers_only_and_reach_their_school_only(city, clients):
    a = connected(city, clients, A)
    b = connected(city, clients, B)
    worker = connected(city, clients, "worker.1")
    a.subscribe(city_topic(A, "gaps"), city_topic(B, "gaps"))
    b.subscribe(city_topic(B, "gaps"))
    # A gateway asking another for records, or faking the city's request to itself: dropped.
    a.publish(city_topic(B, "gaps"), {"v": 1, "school": B, "epoch": "", "ranges": [[1, 9]]})
    b.publish(city_topic(B, "gaps"), {"v": 1, "school": B, "epoch": "", "ranges": [[1, 8]]})
    worker.publish(city_topic(B, "gaps"), {"v": 1, "school": B, "epoch": "", "ranges": [[3, 4]]})
    worker.publish(city_topic(A, "gaps"), {"v": 1, "school": A, "epoch": "", "ranges": [[5, 6]]})  # the sentinel
    wait_for(lambda: a.received(city_topic(A, "gaps")) and b.received(city_topic(B, "gaps")), WAIT_S,
             "the worker's requests")
    assert [t for t, _ in a.messages] == [city_topic(A, "gaps")]
    assert [json.loads(p)["ranges"] for p in b.received(city_topic(B, "gaps"))] == [[[3, 4]]]


@pytest.mark.broker
def test_workers_read_every_school_also_shared_and_alone_ack(city, clients):
    w1 = connected(city, clients, "worker.1")
    w2 = connected(city, clients, "worker.2")
    shared = f"$share/city/{city_topic('+', 'records')}"
    assert w1.subscribe(shared) == [1] and w2.subscribe(shared) == [1]
    a = connected(city, clients, A)
    b = connected(city, clients, B)
    for i in range(1, 11):
        a.publish(city_topic(A, "records"), batch(A, GW_A, [i]))
        b.publish(city_topic(B, "records"), batch(B, GW_B, [i]))
    wait_for(lambda: len([p for w in (w1, w2) for _, p in w.messages]) == 20, WAIT_S, "20 batches shared")
    every = [p for w in (w1, w2) for _, p in w.messages]
    assert sorted({json.loads(p)["school"] for p in every}) == [A, B]
    assert w1.messages and w2.messages  # split between the two
    # A worker writes nothing but acks.
    b.subscribe(city_topic(B, "ack"))
    w1.publish(city_topic(B, "ack"), {"v": 1, "school": B, "acked": 10})
    wait_for(lambda: b.received(city_topic(B, "ack")), WAIT_S, "the worker's ack")
    w2.subscribe(city_topic(B, "records"))  # a plain subscription too: every batch, in order
    w1.publish(city_topic(B, "records"), batch(B, GW_B, [99], tag="from a worker"))
    b.publish(city_topic(B, "records"), batch(B, GW_B, [100]))  # the sentinel, after it
    wait_for(lambda: any(json.loads(p)["records"][0]["seq"] == 100 for p in w2.received(city_topic(B, "records"))),
             WAIT_S, "B's batch 100 at worker.2")
    assert not any(json.loads(p)["records"][0]["seq"] == 99 for w in (w1, w2) for _, p in w.messages)


@pytest.mark.broker
def test_no_one_takes_over_another_identitys_session(city, clients):
    # The client id is the certificate's name (use_username_as_clientid):
    # A asking for the worker's client id stays A, and the worker stays connected.
    worker = connected(city, clients, "worker.1", client_id="worker-session")
    worker.subscribe(city_topic("+", "records"))
    a = connected(city, clients, A, client_id="worker.1")
    a.publish(city_topic(A, "records"), batch(A, GW_A, [1]))
    wait_for(lambda: worker.received(city_topic(A, "records")), WAIT_S, "A's batch at the worker")
    assert worker.client.is_connected()
    log = city.broker.log_tail(5000)
    assert "as worker.1 (" in log and f"as {A} (" in log


# ------------------------------------------------------------ revocation

@pytest.mark.broker
def test_a_revoked_gateway_is_refused_once_the_broker_reloads(city, clients):
    # A probe of its own: polling with B's certificate would take B's client
    # id over, whenever the reload has not happened yet.
    city.issue_gateway("probe", "gw-probe")
    city.ca.revoke(B, reason="key-compromise")
    city.ca.revoke("probe")
    # Until the broker reads crl.pem again, a revoked certificate still works.
    before = connected(city, clients, B)
    city.reload()  # SIGHUP: Mosquitto 2.0.11 reads the CRL (and the ACL) again
    wait_for(lambda: not clients(city.client("probe")).connect(), WAIT_S, "a revoked certificate refused")
    assert not clients(city.client(B)).connect()
    assert "certificate verify failed" in city.broker.log_tail(5000)
    # A connection opened before the reload stays up: only a restart cuts it.
    assert before.client.is_connected()
    city.broker.restart()
    wait_for(lambda: not before.client.is_connected(), WAIT_S, "the old connection dropped by the restart")
    assert not clients(city.client(B)).connect()
    assert connected(city, clients, A)  # the others carry on


@pytest.mark.broker
def test_a_new_worker_gets_its_rights_on_reload(city, clients):
    city.issue_worker("3")  # after the broker started: not in its ACL yet
    w3 = connected(city, clients, "worker.3")
    w3.subscribe(city_topic("+", "records"))
    a = connected(city, clients, A)
    witness = connected(city, clients, "worker.1")
    witness.subscribe(city_topic("+", "records"))
    a.publish(city_topic(A, "records"), batch(A, GW_A, [1]))
    wait_for(lambda: witness.received(city_topic(A, "records")), WAIT_S, "batch 1 at worker.1")
    assert w3.received(city_topic(A, "records")) == []
    city.reload()

    def w3_reads() -> bool:
        a.publish(city_topic(A, "records"), batch(A, GW_A, [2]))
        return bool(w3.received(city_topic(A, "records")))

    wait_for(w3_reads, WAIT_S, "worker.3 reading after the reload, on the same connection")


@pytest.mark.broker
def test_batches_queued_for_a_worker_survive_a_broker_restart(city, clients):
    # Restarting the broker (to cut a revoked client off) keeps the workers' sessions.
    session = clients(TlsClient(city.host, city.port, city.ca.cert_file, city.identities["worker.1"],
                                clean_session=False))
    assert session.connect()
    session.subscribe(city_topic("+", "records"))
    session.close()
    a = connected(city, clients, A)
    a.publish(city_topic(A, "records"), batch(A, GW_A, [1]))
    a.close()
    city.broker.restart()
    again = clients(TlsClient(city.host, city.port, city.ca.cert_file, city.identities["worker.1"],
                              clean_session=False))
    assert again.connect()
    wait_for(lambda: again.received(city_topic(A, "records")), WAIT_S, "the queued batch after the restart")


# -------------------------------------------------- the whole job, locked

@pytest.fixture
def school(tmp_path):
    """The school's side as a school runs it (devkit/school.py): a locked
    school broker with a board identity per room, for school A's gateway."""
    locked = LockedSchool(school=A, gateway_id=GW_A, directory=str(tmp_path / "school")).start()
    yield locked
    locked.stop()


def _gateway(city, school, tmp_path, **kw):
    config = Config.from_dict(school.config(str(tmp_path)) | {
        "city_broker": city.gateway_config(A),
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}},
        "policy": {"zone": "C"},
    })
    gateway = Gateway(config, reconnect_max_s=1, clock=school_clock(), **kw).start()
    board = Board(school.host, school.port, A, "cm2-b").connect()
    return gateway, board


@pytest.mark.broker
def test_a_real_gateway_and_city_work_through_the_locked_broker(city, school, tmp_path):
    service = CityService(city.worker_settings("1", db_path=str(tmp_path / "city.db"))).start()
    gateway = board = None
    try:
        assert service.wait_ready(WAIT_S), service.failed
        assert service.settings.broker.tls and service.settings.gateways == city.ca.index_file
        gateway, board = _gateway(city, school, tmp_path)
        board.cmd_for(board.request())
        for _ in range(5):
            board.event("button", {"press": "short"})
        wait_for(lambda: gateway.metrics["last_seq"] >= 8 and gateway.outbox_size() == 0
                 and service.store.acked(A) == gateway.metrics["last_seq"], WAIT_S,
                 "the gateway's records stored at the city and acked back")
        assert service.store.seqs(A) == list(range(1, gateway.metrics["last_seq"] + 1))
        wait_for(lambda: service.store.status()["schools"][0]["online"] is True, WAIT_S, "gateway online")
        [school] = service.store.status()["schools"]
        assert (school["school"], school["gateway"]) == (A, GW_A)
        snap = service.metrics.snapshot()
        assert snap["rejected"] == dict.fromkeys(snap["rejected"], 0) and snap["conflicts"] == 0
        assert gateway.forwarder is not None and gateway.forwarder.acks_ignored == 0
    finally:
        if board:
            board.close()
        if gateway:
            gateway.stop()
        service.stop()


@pytest.mark.broker
def test_a_forged_batch_does_not_make_the_city_drop_the_real_records(city, school, tmp_path, caplog):
    """As through a misconfigured broker: a batch with the real gateway's
    next seqs reaches the city's worker first. The city stores it and acks
    20; the gateway, which sent only 1, ignores that ack. Its real records
    then come with the same seqs: kept beside the forgeries, none lost, and
    acked as they arrive, so the gateway's link goes on."""
    caplog.set_level(logging.WARNING)
    service = CityService(city.worker_settings("1", db_path=str(tmp_path / "city.db"))).start()
    gateway = board = None
    try:
        assert service.wait_ready(WAIT_S)
        gateway, board = _gateway(city, school, tmp_path)
        wait_for(lambda: gateway.outbox_size() == 0 and service.store.acked(A) == 1, WAIT_S, "the birth acked")
        forwarder = gateway.forwarder
        assert forwarder is not None

        # The forgery, delivered to the worker as the broker would hand it.
        from paho.mqtt.client import MQTTMessage

        msg = MQTTMessage(topic=city_topic(A, "records").encode())
        msg.payload = batch(A, GW_A, range(2, 21), tag="forged", epoch=getattr(gateway, "epoch", "")).encode()
        ingest = service.city.ingest
        ingest._loop.call_soon_threadsafe(ingest.on_message, msg)
        wait_for(lambda: service.store.acked(A) == 20, WAIT_S, "the forgery stored")
        wait_for(lambda: forwarder.acks_ignored == 1, WAIT_S, "the gateway ignoring the ack of 20")
        assert forwarder.acked == 1
        assert gateway.metrics["city_acks_ignored"] == 1  # exposed as preau_gateway_city_acks_ignored_total

        for _ in range(20):
            board.event("button", {"press": "short"})
        wait_for(lambda: gateway.metrics["last_seq"] == 21 and gateway.outbox_size() == 0, WAIT_S,
                 "the gateway's real records acked")
        # Every real record is at the city: 21 stored, 2..20 beside the forgeries.
        conflicts = service.store.conflicts(A)
        assert [c["seq"] for c in conflicts] == list(range(2, 21))
        assert all(c["gateway"] == GW_A and c["kind"] == "evt" and c["body"]["type"] == "button" for c in conflicts)
        assert all(c["stored_body"]["tag"] == "forged" for c in conflicts)
        assert service.store.records(school=A, limit=1000)[0]["seq"] == 21
        assert service.metrics.snapshot()["conflicts"] == 19
        assert any("already stored under another content" in r.getMessage() for r in caplog.records)
        assert any("ignored" in r.getMessage() and r.name == "edge_gateway.city_link" for r in caplog.records)
    finally:
        if board:
            board.close()
        if gateway:
            gateway.stop()
        service.stop()


# ------------------------------------------------ the city's own checks

def _ingest(tmp_path, register=None):
    settings = CitySettings(token=secrets.token_urlsafe(24), db_path=str(tmp_path / "city.db"))
    store = CityStore(settings.db_path)
    return Ingest(settings, store, Metrics(), now=lambda: 5000.0, register=register), store


def test_the_city_takes_a_schools_batches_only_from_its_certified_gateway(tmp_path, caplog):
    ca = CityCA.init(str(tmp_path / "ca"))
    ca.issue_gateway(A, GW_A, str(tmp_path / "a"))
    register = GatewayRegister(ca.index_file)
    ingest, store = _ingest(tmp_path, register)
    try:
        assert ingest.handle(city_topic(A, "records"), batch(A, "gw-rogue", [1]).encode()) is None
        assert ingest.handle(city_topic(B, "records"), batch(B, GW_B, [1]).encode()) is None
        assert ingest.handle(city_topic(A, "gateway"), b'{"v": 1, "online": true, "gateway": "gw-rogue"}') is None
        assert store.seqs(A) == [] and store.seqs(B) == [] and store.status()["schools"] == []
        rejected = ingest.metrics.snapshot()["rejected"]
        assert (rejected["gateway_mismatch"], rejected["gateway_unknown"]) == (2, 1)
        assert ingest.handle(city_topic(A, "records"), batch(A, GW_A, [1]).encode()) == (A, 1, "")
        # A new gateway for the school (replace): the register follows the CA's index.
        ca.issue_gateway(A, "gw-new", str(tmp_path / "a2"), replace_gateway=True)
        assert ingest.handle(city_topic(A, "records"), batch(A, "gw-new", [2]).encode()) == (A, 2, "")
        assert ingest.handle(city_topic(A, "records"), batch(A, GW_A, [3]).encode()) is None
        assert any("gw-rogue" in r.getMessage() and "gateway_mismatch" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_a_forged_record_first_keeps_the_real_one_and_acks_only_what_was_sent(tmp_path):
    ingest, store = _ingest(tmp_path)
    try:
        assert ingest.handle(city_topic(A, "records"), batch(A, GW_A, [1]).encode()) == (A, 1, "")
        # Forged 2..20 first: stored, acked (the gateway ignores an ack beyond what it sent).
        assert ingest.handle(city_topic(A, "records"), batch(A, GW_A, range(2, 21), "forged").encode()) == (A, 20, "")
        # The real 2..5: kept beside, and acked up to 5 only, so the gateway deletes only what it sent.
        assert ingest.handle(city_topic(A, "records"), batch(A, GW_A, range(2, 6)).encode()) == (A, 5, "")
        # Sent again (no ack seen): nothing new kept, still 5.
        assert ingest.handle(city_topic(A, "records"), batch(A, GW_A, range(2, 6)).encode()) == (A, 5, "")
        assert ingest.handle(city_topic(A, "records"), batch(A, GW_A, range(6, 23)).encode()) == (A, 22, "")
        assert [c["seq"] for c in store.conflicts(A)] == list(range(2, 21))
        assert {c["body"]["tag"] for c in store.conflicts(A)} == {"real"}
        assert store.seqs(A) == list(range(1, 23))
        snap = ingest.metrics.snapshot()
        assert (snap["conflicts"], snap["duplicates"], snap["records_stored"]) == (19, 4, 22)
    finally:
        store.close()


def test_a_forged_record_after_the_real_one_changes_nothing(tmp_path):
    ingest, store = _ingest(tmp_path)
    birth = {"v": 1, "online": True, "boot": 3, "fw": "0.1.0", "board": "olimex-esp32-poe", "uptime_ms": 5,
             "session": "idle", "ap": False, "devices": []}
    real = {"v": 1, "school": A, "gateway": GW_A, "records": [
        {"seq": 1, "room": "cm2-b", "kind": "state", "at": 10.0, "body": birth}]}
    forged = json.loads(json.dumps(real))
    forged["records"][0]["body"]["boot"] = 99
    try:
        assert ingest.handle(city_topic(A, "records"), json.dumps(real).encode()) == (A, 1, "")
        assert ingest.handle(city_topic(A, "records"), json.dumps(forged).encode()) == (A, 1, "")
        # Keys in another order are the same record: a repeat, not a conflict.
        reordered = {**real, "records": [dict(reversed(list(real["records"][0].items())))]}
        assert ingest.handle(city_topic(A, "records"), json.dumps(reordered).encode()) == (A, 1, "")
        [room] = store.status()["schools"][0]["rooms"]
        assert room["boot"] == 3  # the forgery never applied
        [conflict] = store.conflicts(A)
        assert conflict["body"]["boot"] == 99 and conflict["stored_body"]["boot"] == 3
        assert ingest.metrics.snapshot()["conflicts"] == 1
    finally:
        store.close()


def test_the_gateway_ignores_an_ack_beyond_what_it_sent():
    saved = []

    class Link:
        connected = False

    config = Config.from_dict({"school": A, "gateway_id": GW_A, "db": ":memory:",
                               "school_broker": {"host": "127.0.0.1"}, "rooms": {"cm2-b": {}},
                               "policy": {"zone": "C"}})

    async def scenario():  # on the gateway's loop, as in the gateway
        forwarder = Forwarder(":memory:", Link(), config, acked=4, committed=50,  # type: ignore[arg-type]
                              clock=lambda: 0.0, save_acked=saved.append)
        forwarder.sent_max = 10
        forwarder.on_ack(11)  # within what was committed, beyond what was sent: forged or stale
        forwarder.on_ack(60)  # beyond what was committed
        assert (forwarder.acked, saved, forwarder.acks_ignored) == (4, [], 2)
        forwarder.on_ack(10)
        assert forwarder.acked == 10
        await forwarder.close()
        return forwarder

    forwarder = asyncio.run(scenario())
    assert forwarder.acked == 10


@pytest.mark.broker
def test_an_open_broker_is_where_the_forgery_would_come_from(open_mosquitto, tmp_path):
    """The same forgery through an open broker (no certificates, no ACL): the
    real records that follow are still all kept."""
    settings = CitySettings(token=secrets.token_urlsafe(24), broker_host=open_mosquitto.host,
                            broker_port=open_mosquitto.port,
                            db_path=str(tmp_path / "city.db"), http_port=0, reconnect_max_s=1.0,
                            client_id=f"city-{uuid.uuid4().hex[:8]}")
    service = CityService(settings).start()
    try:
        assert service.wait_ready(WAIT_S)
        rogue = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue")
        rogue.connect(open_mosquitto.host, open_mosquitto.port)
        rogue.loop_start()
        rogue.publish(city_topic(A, "records"), batch(A, GW_A, range(1, 21), "forged"), qos=1).wait_for_publish(5)
        wait_for(lambda: service.store.acked(A) == 20, WAIT_S, "the forgery stored")
        rogue.publish(city_topic(A, "records"), batch(A, GW_A, range(1, 21)), qos=1).wait_for_publish(5)
        wait_for(lambda: len(service.store.conflicts(A)) == 20, WAIT_S, "the real records kept")
        rogue.disconnect()
        rogue.loop_stop()
    finally:
        service.stop()
