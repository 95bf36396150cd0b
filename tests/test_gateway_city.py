"""The city link against a real Mosquitto playing the city broker, locked as
a city runs it (TLS, the gateway's own certificate, the generated ACL:
devkit/citybroker.py), stopped and restarted on the same port, with a
plain paho client playing the city's ingest (a worker's certificate), the
school's locked broker (devkit/school.py) and the gateway's real SQLite
outbox."""

import pytest

from devkit.citybroker import LockedCity, TlsCity
from devkit.school import LockedSchool
from devkit.testing import Board, school_clock, wait_for
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"
GATEWAY_ID = "gw-0341234a"


@pytest.fixture
def school(tmp_path):
    locked = LockedSchool(school=SCHOOL, gateway_id=GATEWAY_ID, rooms=("cm2-b", "bcd"),
                          directory=str(tmp_path / "school")).start()
    yield locked
    locked.stop()


@pytest.fixture
def city_broker(tmp_path):
    city = LockedCity.start(tmp_path / "city", schools={SCHOOL: GATEWAY_ID})
    yield city
    city.stop()


def config(school, city_broker, tmp_path):
    return Config.from_dict(school.config(str(tmp_path)) | {
        "city_broker": city_broker.gateway_config(SCHOOL),
        "rooms": {"cm2-b": {"wifi": "allowed"}, "bcd": {"sessions": False}},
        "policy": {"zone": "C"},
    })


@pytest.fixture
def run(school, city_broker, tmp_path):
    """Start gateways (several in turn for restart tests) and stop what is left."""
    started = []

    def start(start=True, **kw):
        gw = Gateway(config(school, city_broker, tmp_path), reconnect_max_s=1, clock=school_clock(), **kw)
        started.append(gw)
        return gw.start() if start else gw

    yield start
    for gw in started:
        if gw.running:
            gw.stop()


@pytest.fixture
def board(school):
    b = Board(school.host, school.port, SCHOOL, "cm2-b").connect()
    yield b
    b.close()


def first_deliveries(city):
    return list(dict.fromkeys(city.deliveries))


def test_records_forwarded_in_order_gap_free_and_acked(run, board, city_broker):
    city = TlsCity(city_broker, SCHOOL).connect()
    gw = run()
    board.event("boot", {"reset_cause": "power"})
    req = board.request()
    board.cmd_for(req)
    board.publish("ack", {"v": 1, "id": board.cmds[0]["id"], "ok": True, "boot": 1, "result": "started"})
    wait_for(lambda: gw.metrics["accepted"].get("ack") == 1, what="board ack stored")
    wait_for(lambda: gw.outbox_size() == 0 and city.contiguous() == 5, what="all records acked")

    assert sorted(city.stored) == list(range(1, gw.metrics["last_seq"] + 1))
    assert first_deliveries(city) == sorted(city.stored)
    kinds = [city.stored[s]["kind"] for s in sorted(city.stored)]
    assert kinds == ["state", "evt", "evt", "decision", "ack"]
    decision = city.stored[4]
    assert decision["room"] == "cm2-b" and decision["body"]["cmd"] == "grant" and decision["body"]["req"] == req
    assert all(b["school"] == SCHOOL and b["gateway"] == GATEWAY_ID and len(b["records"]) <= 200 for b in city.batches)
    wait_for(lambda: city.gateway_state, what="gateway state on the city broker")
    assert city.gateway_state["online"] is True
    city.close()


def test_city_down_records_kept_then_all_delivered_in_order(run, board, city_broker):
    city = TlsCity(city_broker, SCHOOL).connect()
    gw = run(resend_after_s=1)
    wait_for(lambda: gw.outbox_size() == 0 and city.contiguous() == 1, what="birth delivered")
    city.close()
    city_broker.broker.stop()
    wait_for(lambda: not gw.health()["city_broker"], what="city link down")

    for _ in range(300):  # more than one batch
        board.event("button", {"press": "short"})
    wait_for(lambda: gw.metrics["last_seq"] == 301, what="300 events stored")
    assert gw.outbox_size() == 300 and gw.metrics["city_acked"] == 1

    city_broker.broker.start()  # same port
    # The gateway may reconnect before the city subscribes again: the resend covers that.
    city.reconnect()
    wait_for(lambda: gw.outbox_size() == 0, timeout=20, what="outbox drained after the city came back")
    assert sorted(city.stored) == list(range(1, 302))
    # The newest first, by the live lane (edge_gateway/city_link.py), then
    # the backlog in order; the history lane does not send the live ones
    # again. Unless the gateway was back before the city subscribed: then the
    # live batch was lost, and the resend goes in order.
    live_first = [1] + list(range(282, 302)) + list(range(2, 282))
    assert first_deliveries(city) in (live_first, list(range(1, 302)))
    if first_deliveries(city) == live_first:
        assert city.deliveries.count(290) == 1
    assert [city.stored[s]["body"]["seq"] for s in range(2, 302)] == list(range(1, 301))
    assert max(len(b["records"]) for b in city.batches) == 200
    city.close()


def test_gateway_restart_keeps_seq_and_outbox(run, board, city_broker):
    city = TlsCity(city_broker, SCHOOL, ack=False).connect()
    gw = run()
    for _ in range(5):
        board.event("button", {"press": "long"})
    wait_for(lambda: len(city.stored) == 6, what="birth and 5 events sent, none acked")
    gw.stop()
    assert gw.outbox_size() == 6

    gw = run(start=False)
    assert gw.outbox_size() == 6 and gw.metrics["last_seq"] == 6
    city.ack = True
    gw.start()
    req = board.request()
    board.cmd_for(req)
    wait_for(lambda: gw.outbox_size() == 0 and city.contiguous() == 8, what="outbox delivered after restart")
    # Never reused: every delivery of a seq carried the same record.
    assert [city.stored[s]["kind"] for s in range(1, 9)] == ["state"] + ["evt"] * 6 + ["decision"]
    assert city.stored[8]["body"]["id"] == "g-000008"
    city.close()


def test_unacknowledged_batch_is_sent_again(run, board, city_broker):
    city = TlsCity(city_broker, SCHOOL, ack=False).connect()
    gw = run(resend_after_s=0.5)
    board.event("boot", {"reset_cause": "watchdog"})
    wait_for(lambda: gw.metrics["resends"] >= 1 and city.deliveries.count(2) >= 2, what="a resend of the unacked batch")
    assert gw.outbox_size() == 2
    city.send_ack(2)
    wait_for(lambda: gw.outbox_size() == 0, what="ack after resend")
    city.close()


def test_city_ack_beyond_our_records_is_refused(run, board, city_broker, caplog):
    city = TlsCity(city_broker, SCHOOL, ack=False).connect()
    gw = run()
    wait_for(lambda: len(city.stored) == 1, what="birth sent")
    city.send_ack(99)  # a city that knows more than we ever sent: the database was replaced?
    wait_for(lambda: any("beyond our last record" in r.getMessage() for r in caplog.records), what="error logged")
    assert gw.outbox_size() == 1
    city.close()
