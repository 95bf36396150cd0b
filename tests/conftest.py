import pytest

from devkit.brokers import Mosquitto, ThreadedAmqtt
from devkit.school import LockedSchool
from devkit.sim.classroom import SimClassroom


@pytest.fixture(autouse=True)
def access_point_fail_safes():
    """In every test that runs a simulated board: the relay's first level at
    each boot is off, and it is off when the test ends (loi 2015-136 art. 7)."""
    SimClassroom.instances.clear()
    yield
    for sim in SimClassroom.instances:
        for machine in sim.boots:
            levels = sim.relay_history(machine)
            assert levels and levels[0] is False, f"{sim.room}: relay not driven off first at boot"
        assert not sim.relay, f"{sim.room}: access point left on at the end of the test"
    SimClassroom.instances.clear()


@pytest.fixture
def mosquitto(tmp_path):
    """The school broker as a school runs it: Mosquitto from the files that
    `preau provision` generates, a board identity per room (devkit/school.py);
    devkit.testing.Board finds its room's credentials by itself."""
    school = LockedSchool(directory=str(tmp_path / "school")).start()
    yield school
    school.stop()


@pytest.fixture
def open_mosquitto():
    """An open Mosquitto (anonymous, no ACL): for the board's MQTT client
    tests, which are about the protocol, not about identities."""
    broker = Mosquitto().start()
    yield broker
    broker.stop()


@pytest.fixture
def amqtt_broker():
    broker = ThreadedAmqtt().start()
    yield broker
    broker.stop()


@pytest.fixture
def city_broker():
    """A second Mosquitto: the city's hop, separate from the school's."""
    broker = Mosquitto().start()
    yield broker
    broker.stop()


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request):
    """Each test using this runs once against an open Mosquitto and once
    against amqtt: the board's MQTT client proven against two implementations."""
    b = Mosquitto().start() if request.param == "mosquitto" else ThreadedAmqtt().start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL for the session (devkit/postgres.py): a fresh
    cluster in a temporary folder on a free port, stopped at the end."""
    from devkit.postgres import Postgres, PostgresError, available

    if not available():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql: initdb, pg_ctl)")
    try:
        pg = Postgres(fsync=False).start()
    except PostgresError as e:
        pytest.fail(f"PostgreSQL did not start: {e}")
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def city_database(request, tmp_path):
    """Where a city store lives, once per backend: CityStore(**city_database)."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "city.db")}
    return {"url": request.getfixturevalue("postgres").new_database()}


@pytest.fixture
def city_ingest(city_database, tmp_path):
    """The city's ingest on a real store, once per backend, its clock at 5000 s:
    Ingest.handle and handle_many without a broker."""
    from cloud_bridge.ingest import Ingest
    from cloud_bridge.metrics import Metrics
    from cloud_bridge.settings import CitySettings
    from cloud_bridge.store import CityStore

    store = CityStore(**city_database)
    yield Ingest(CitySettings(token="t" * 24, db_path=str(tmp_path / "city.db")), store, Metrics(),
                 now=lambda: 5000.0)
    store.close()
