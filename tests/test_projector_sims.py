"""The simulated projectors (devkit/sim/projector.py) against clients that
are not ours, so the simulators answer what real projectors answer and not
what our driver happens to expect:

- PJLink: pypjlink2 (the client Home Assistant's PJLink integration uses)
  for every class 1 command, authentication and the ERR1..ERR4 answers; and
  the bytes of the JBMIA specification (1.04), its authentication example
  included.
- Epson: epson-projector (Home Assistant's Epson integration; its serial
  connection sends a bare CR first and wants ':'), and the formats of Epson's
  "ESC/VP21 Command User's Guide for Business Projectors" (section 2: get,
  set, null command, illegal command).
- BenQ: benqprojector (which waits for the '>' prompt before each command),
  and the bytes a TK700STi sends back, as recorded from the wire.

Time is a clock the test moves (the lamp's warm-up), never the wall clock;
no test asserts a duration.
"""

import hashlib
import logging
import socket
import time

import pytest
import serial
from benqprojector import BenQProjector
from benqprojector.benqconnection import BenQSerialConnection
from epson_projector import Projector as EpsonClient
from pypjlink import Projector as PJLinkClient
from pypjlink import protocol as pjlink_protocol
from pypjlink.projector import MUTE_AUDIO, MUTE_VIDEO, ProjectorError

from devkit.sim.projector import BenQSim, EpsonSim, PJLinkSim
from tests.helpers import run

# benqprojector reads its model files with importlib.resources.open_text.
pytestmark = pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")


class Clock:
    """Simulated seconds for a simulator's `clock`: moved by the test only."""

    def __init__(self):
        self.s = 0.0

    def __call__(self):
        return self.s


@pytest.fixture(autouse=True)
def quiet_client_logs(caplog):
    # The clients log every refusal at ERROR: expected here.
    caplog.set_level(logging.CRITICAL, logger="benqprojector")
    caplog.set_level(logging.CRITICAL, logger="epson_projector")


# -- PJLink: pypjlink2 ---------------------------------------------------------------


@pytest.fixture
def pjlink():
    clock = Clock()
    with PJLinkSim(clock=clock) as sim:
        yield sim, clock


def connect(sim, password=None):
    client = PJLinkClient.from_address("127.0.0.1", sim.port, timeout=5)
    return client, client.authenticate(password)


def test_pjlink_answers_every_class_1_query_in_standby(pjlink):
    sim, _ = pjlink
    client, auth = connect(sim)
    with client:
        assert auth is None  # "PJLINK 0": no authentication
        assert client.get_power() == "off"
        assert client.get_errors() == dict.fromkeys(("fan", "lamp", "temperature", "cover", "filter", "other"), "ok")
        assert client.get_lamps() == [(1200, False)]
        assert client.get_inputs() == [("RGB", 1), ("DIGITAL", 1), ("DIGITAL", 2)]
        assert client.get_name() == "Salle 12"
        assert client.get_manufacturer() == "Preau"
        assert client.get_product_name() == "Sim PJ-1"
        assert client.get_other_info() == "firmware 1.0"
        assert pjlink_protocol.send_command(client.f, "CLSS", "?", "utf-8") == (True, "1")
        # Input and mute are "unavailable time" in standby.
        for query in (client.get_input, client.get_mute):
            with pytest.raises(ProjectorError, match="unavailable time"):
                query()
    # One connection, every command on it, nothing prefixed.
    assert sim.connections == 1
    assert sim.frames[:3] == [b"%1POWR ?\r", b"%1ERST ?\r", b"%1LAMP ?\r"]


def test_pjlink_power_input_and_mute_with_their_refusals(pjlink):
    sim, clock = pjlink
    client, _ = connect(sim)
    with client:
        client.set_power("on")
        assert client.get_power() == "warm-up"
        assert client.get_lamps() == [(1200, True)]
        with pytest.raises(ProjectorError, match="unavailable time"):  # ERR3: no off during the warm-up
            client.set_power("off")
        with pytest.raises(ProjectorError, match="out of parameter"):  # ERR2: POWR 2
            client.set_power("cooling", force=True)
        clock.s += sim.warm_s
        assert client.get_power() == "on"
        assert client.get_input() == ("DIGITAL", 1)
        client.set_input("DIGITAL", 2)
        assert client.get_input() == ("DIGITAL", 2)
        with pytest.raises(ProjectorError, match="out of parameter"):  # no VIDEO input on this model
            client.set_input("VIDEO", 1)
        assert client.get_mute() == (False, False)
        client.set_mute(MUTE_VIDEO, True)
        assert client.get_mute() == (True, False)
        client.set_mute(MUTE_AUDIO, True)
        assert client.get_mute() == (True, True)
        client.set_mute(MUTE_VIDEO | MUTE_AUDIO, False)
        assert client.get_mute() == (False, False)
        client.set_power("off")
        assert client.get_power() == "cooling"
        with pytest.raises(ProjectorError, match="unavailable time"):  # ERR3: no on while cooling
            client.set_power("on")
        clock.s += sim.cool_s
        assert client.get_power() == "off"


def test_pjlink_error_answers(pjlink):
    sim, _ = pjlink
    client, _ = connect(sim)
    with client:
        # ERR1: a command class 1 does not define (FREZ is class 2), and LAMP on a model without a lamp.
        assert pjlink_protocol.send_command(client.f, "FREZ", "?", "utf-8") == (False, "undefined command")
        sim.lamps = 0
        with pytest.raises(ProjectorError, match="undefined command"):
            client.get_lamps()
        sim.lamps = 2
        assert client.get_lamps() == [(1200, False), (1200, False)]
        # ERR2: a parameter out of range, a query-only command given a value.
        assert pjlink_protocol.send_command(client.f, "NAME", "x", "utf-8") == (False, "out of parameter")
        # ERR3: not now.
        sim.busy = {"POWR"}
        with pytest.raises(ProjectorError, match="unavailable time"):
            client.get_power()
        sim.busy = set()
        # ERR4: the projector has failed.
        sim.failure = True
        with pytest.raises(ProjectorError, match="projector failure"):
            client.get_power()
        sim.failure = False
        sim.erst = "020100"
        assert client.get_errors()["lamp"] == "error" and client.get_errors()["cover"] == "warning"


def test_pjlink_authentication():
    with PJLinkSim(clock=Clock(), password="JBMIAProjectorLink") as sim:
        client, auth = connect(sim, "JBMIAProjectorLink")
        with client:
            assert auth is True
            assert client.get_power() == "off"  # later commands without the digest
        assert sim.frames[:2] == [b"%1POWR ?\r", b"%1POWR ?\r"]  # the digest is not kept
        client, auth = connect(sim, "wrong")
        with client:
            assert auth is False  # "PJLINK ERRA"
        assert sim.auth_failures == 1
        client = PJLinkClient.from_address("127.0.0.1", sim.port, timeout=5)
        with client, pytest.raises(RuntimeError, match="needs a password"):
            client.authenticate(None)


# -- PJLink: the specification's bytes ----------------------------------------------


class Raw:
    """A bare TCP client: what goes on the wire, nothing interpreted."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def line(self, timeout=5.0):
        """The next CR-terminated line, or None when nothing came in `timeout` s."""
        self.sock.settimeout(timeout)
        while b"\r" not in self.buf:
            try:
                chunk = self.sock.recv(256)
            except TimeoutError:
                return None
            if not chunk:
                return b"<closed>"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r", 1)
        return line + b"\r"

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def test_pjlink_spec_authentication_example():
    # PJLink 1.04, chapter 5: random 498e4a67, password JBMIAProjectorLink.
    with PJLinkSim(clock=Clock(), password="JBMIAProjectorLink") as sim:
        sim.challenge = "498e4a67"
        digest = b"5d8409bc1c3fa39749434aa3a5c38682"
        assert hashlib.md5(b"498e4a67JBMIAProjectorLink").hexdigest().encode() == digest
        raw = Raw(sim.port)
        assert raw.line() == b"PJLINK 1 498e4a67\r"
        raw.send(digest + b"%1POWR ?\r")
        assert raw.line() == b"%1POWR=0\r"
        raw.send(b"%1INF1 ?\r")
        assert raw.line() == b"%1INF1=Preau\r"
        raw.send(digest + b"%1CLSS ?\r")  # a digest on a later command is accepted too
        assert raw.line() == b"%1CLSS=1\r"
        raw.close()
        raw = Raw(sim.port)
        raw.line()
        raw.send(b"%1POWR ?\r")  # no digest
        assert raw.line() == b"PJLINK ERRA\r"
        assert raw.line() == b"<closed>"
        raw.close()


def test_pjlink_spec_formats():
    with PJLinkSim(clock=Clock()) as sim:
        raw = Raw(sim.port)
        assert raw.line() == b"PJLINK 0\r"
        raw.send(b"%1powr ?\r")  # the command body is case-insensitive
        assert raw.line() == b"%1POWR=0\r"
        raw.send(b"%1POWR?\r")  # not a command line (no space): no answer at all
        assert raw.line(timeout=0.3) is None
        raw.send(b"%1INST ?\r")
        assert raw.line() == b"%1INST=11 31 32\r"
        raw.send(b"%1XXXX ?\r")
        assert raw.line() == b"%1XXXX=ERR1\r"
        raw.send(b"%1POWR 7\r")
        assert raw.line() == b"%1POWR=ERR2\r"
        raw.send(b"%1AVMT 31\r")
        assert raw.line() == b"%1AVMT=ERR3\r"  # in standby
        raw.send(b"%1LAMP ?\r")
        assert raw.line() == b"%1LAMP=1200 0\r"
        raw.send(b"%1NAME ?\r")
        assert raw.line() == b"%1NAME=Salle 12\r"
        raw.close()


# -- Epson: epson-projector over the pseudo-terminal ------------------------------------


def test_epson_client_checks_readiness_then_queries():
    run(_epson_client_checks_readiness_then_queries(), 30)


async def _epson_client_checks_readiness_then_queries():
    clock = Clock()
    with EpsonSim(clock=clock) as sim:
        client = EpsonClient(host=sim.path, type="serial")
        assert await client.get_power() == "04"  # standby, network on
        assert sim.frames[:2] == [b"\r", b"PWR?\r"]  # the bare CR first: answered ':'
        assert await client.get_property("SOURCE") == "30"
        assert await client.get_serial_number() == sim.serial
        assert await client.get_property("LAMP") == "1200"
        assert await client.get_property("ERR") == "00"
        assert await client.send_command("PWR ON") == ""  # accepted: ':' alone
        client.close()
        assert sim.power == "warming"

        # A new client (the first one holds PWR ON for 40 s of its own).
        client = EpsonClient(host=sim.path, type="serial")
        assert await client.get_power() == "02"
        assert await client.send_command("PWR OFF") is False  # ERR: not during the warm-up
        client.close()
        clock.s += sim.warm_s
        client = EpsonClient(host=sim.path, type="serial")
        assert await client.get_power() == "01"
        assert await client.send_command("SOURCE 41") == ""
        client.close()
        client = EpsonClient(host=sim.path, type="serial")
        assert await client.get_property("SOURCE") == "41"
        sim.busy = {"PWR"}
        assert await client.get_power() is None  # ERR: no state to give
        client.close()
        assert sim.frames[-1] == b"PWR?\r"


# -- Epson: the guide's formats -----------------------------------------------------------


def exchange(port, data, until, timeout=5.0):
    """Write `data`, read until the bytes read end with `until`."""
    port.write(data)
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(until) and time.monotonic() < deadline:
        got += port.read(port.in_waiting or 1)
    return got


def test_epson_guide_formats():
    clock = Clock()
    with EpsonSim(clock=clock) as sim:
        port = serial.serial_for_url(sim.path, baudrate=9600, timeout=0.05)
        try:
            assert exchange(port, b"\r", b":") == b":"  # 2.3 null command
            assert exchange(port, b"PWR?\r", b":") == b"PWR=04\r:"  # 2.2 get
            assert exchange(port, b"SOURCE?\r", b":") == b"SOURCE=30\r:"
            assert exchange(port, b"SNO?\r", b":") == b"SNO=X4JW7200158\r:"
            assert exchange(port, b"LAMP?\r", b":") == b"LAMP=1200\r:"
            assert exchange(port, b"ERR?\r", b":") == b"ERR=00\r:"
            assert exchange(port, b"HELLO\r", b":") == b"ERR\r:"  # 2.4 illegal command
            assert exchange(port, b"SOURCE 41\r", b":") == b"ERR\r:"  # standby: PWR ON only
            assert exchange(port, b"PWR ON\r", b":") == b":"  # 2.1 set
            assert exchange(port, b"PWR OFF\r", b":") == b"ERR\r:"  # not during the warm-up
            clock.s += sim.warm_s
            assert exchange(port, b"SOURCE 41\r", b":") == b":"
            assert exchange(port, b"SOURCE?\r", b":") == b"SOURCE=41\r:"
            assert exchange(port, b"SOURCE 99\r", b":") == b"ERR\r:"
            sim.error = "04"
            assert exchange(port, b"ERR?\r", b":") == b"ERR=04\r:"
        finally:
            port.close()


# -- BenQ: benqprojector over the pseudo-terminal ------------------------------------------


def test_benq_client_finds_the_prompt_and_queries():
    run(_benq_client_finds_the_prompt_and_queries(), 60)


async def _benq_client_finds_the_prompt_and_queries():
    clock = Clock()
    with BenQSim(clock=clock) as sim:
        client = BenQProjector(BenQSerialConnection(sim.path, 9600))
        assert await client.connect()
        try:
            assert client.has_prompt is True  # it sent a CR and found the '>' prompt
            assert client.model == "MW560"  # modelname=? answered, not "Unsupported item"
            assert client.power_status == BenQProjector.POWERSTATUS_OFF
            assert await client.send_command("ltim") == "1200"
            assert await client.send_raw_command("*sour=?#") == "*Block item#"  # no source in standby
            assert await client.send_raw_command("*freeze=?#") == "*Unsupported item#"
            assert await client.turn_on()
            assert sim.power == "warming"
            assert await client.send_command("sour") == "hdmi"
            assert await client.send_raw_command("*pow=off#") == "*Block item#"  # not during the warm-up
            clock.s += sim.warm_s
            assert await client.send_command("pow") == "on"
            # Every command went after a prompt: a CR, then the command and its CR.
            assert all(f.startswith(b"\r") and f.endswith(b"#\r") for f in sim.frames)
        finally:
            await client.disconnect()


# -- BenQ: the bytes on the wire -------------------------------------------------------------


def test_benq_wire_bytes():
    clock = Clock()
    with BenQSim(clock=clock) as sim:
        port = serial.serial_for_url(sim.path, baudrate=9600, timeout=0.05)
        try:
            assert exchange(port, b"\r", b">") == b">"
            # As a TK700STi answers: prompt, echo as typed and its CR, then the answer on its own line.
            assert exchange(port, b"\r*pow=?#\r", b"#\r\n") == b">*pow=?#\r\r\n*POW=OFF#\r\n"
            assert exchange(port, b"\r*modelname=?#\r", b"#\r\n") == b">*modelname=?#\r\r\n*MODELNAME=MW560#\r\n"
            assert exchange(port, b"\r*sour=?#\r", b"#\r\n") == b">*sour=?#\r\r\n*Block item#\r\n"
            assert exchange(port, b"\r*POW=ON#\r", b"#\r\n") == b">*POW=ON#\r\r\n*POW=ON#\r\n"
            assert exchange(port, b"\r*pow=off#\r", b"#\r\n") == b">*pow=off#\r\r\n*Block item#\r\n"
            assert exchange(port, b"\r*sour=?#\r", b"#\r\n") == b">*sour=?#\r\r\n*SOUR=HDMI#\r\n"
            assert exchange(port, b"\r*ltim=?#\r", b"#\r\n") == b">*ltim=?#\r\r\n*LTIM=1200#\r\n"
            assert exchange(port, b"\r*blah=?#\r", b"#\r\n") == b">*blah=?#\r\r\n*Unsupported item#\r\n"
            assert exchange(port, b"\rpow=?\r", b"#\r\n") == b">pow=?\r\r\n*Illegal format#\r\n"
            assert sim.frames[:2] == [b"\r\r*pow=?#\r", b"\r*modelname=?#\r"]
        finally:
            port.close()

