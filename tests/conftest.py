import pytest

from edge_gateway.brokers import Mosquitto, ThreadedAmqtt


@pytest.fixture
def mosquitto():
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
    """Each test using this runs once against Mosquitto and once against amqtt."""
    b = Mosquitto().start() if request.param == "mosquitto" else ThreadedAmqtt().start()
    yield b
    b.stop()
