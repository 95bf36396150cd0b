"""Both ends of the city link together: the real school gateway forwards a
board's records through a real Mosquitto, locked as a city runs it
(devkit/citybroker.py), to the real city service, which stores them, acks
them (the gateway's outbox drains) and shows the room. The school's side
is locked too (devkit/school.py)."""

import pytest

from cloud_bridge.service import CityService
from devkit.citybroker import LockedCity
from devkit.school import LockedSchool
from devkit.testing import Board, school_clock, wait_for
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"


def test_a_real_gateway_drains_into_the_city(tmp_path):
    school_broker = LockedSchool(school=SCHOOL, gateway_id="gw-0341234a", rooms=("cm2-b",),
                                 directory=str(tmp_path / "school")).start()
    city_broker = LockedCity.start(tmp_path / "city", schools={SCHOOL: "gw-0341234a"})
    city = CityService(city_broker.worker_settings("1", db_path=str(tmp_path / "city.db"))).start()
    gateway = board = None
    try:
        assert city.wait_ready(15)
        gateway = Gateway(Config.from_dict(school_broker.config(str(tmp_path)) | {
            "city_broker": city_broker.gateway_config(SCHOOL),
            "rooms": {"cm2-b": {"wifi": "allowed"}},
            "policy": {"zone": "C"},
        }), reconnect_max_s=1, clock=school_clock()).start()
        board = Board(school_broker.host, school_broker.port, SCHOOL, "cm2-b").connect()
        board.cmd_for(board.request())
        # birth, lesson.requested, the gateway's decision: all stored, all acked.
        wait_for(lambda: city.store.record_count(SCHOOL) >= 3 and gateway.outbox_size() == 0,
                 timeout=15, what="the gateway's outbox drained into the city")
        assert city.metrics.snapshot()["rejected"] == dict.fromkeys(city.metrics.snapshot()["rejected"], 0)
        assert city.store.seqs(SCHOOL) == list(range(1, city.store.record_count(SCHOOL) + 1))
        [school] = city.store.status()["schools"]
        assert (school["school"], school["gateway"]) == (SCHOOL, "gw-0341234a")
        wait_for(lambda: city.store.status()["schools"][0]["online"] is True, what="gateway online at the city")
        [room] = school["rooms"]
        assert (room["room"], room["online"], room["boot"]) == ("cm2-b", True, 1)
        assert {r["kind"] for r in city.store.records(school=SCHOOL)} >= {"state", "evt", "decision"}
    finally:
        if board:
            board.close()
        if gateway:
            gateway.stop()
        city.stop()
        city_broker.stop()
        school_broker.stop()
