"""The projector driver end to end against the simulated projectors: Epson and
BenQ over a pseudo-terminal through pyserial, PJLink over TCP. The simulators
and the driver's `now` share one simulated clock that the test moves a second
at a time, so a 30 s warm-up passes in a fraction of a second and an exchange
takes no simulated time, however loaded the machine. No test asserts a
wall-clock duration. Also: table validation, and the copies of the board
tables in tests/portable/test_projector.py."""

import json

import pytest
import serial

from devkit.sim.projector import BenQSim, EpsonSim, PJLinkSim
from firmware.projector import Projector, SerialLink, open_link
from hardware.projectors import MS, TableError, board_table, compact, describe_fault, load_table, names, validate
from tests.helpers import run
from tests.portable import test_projector as portable


def short_replies(table, ms=300):
    """A silent projector would make each exchange wait reply_ms of real time."""
    table = dict(table, p=list(table["p"]))
    table["p"][MS:MS + 5] = [ms] * 5
    return table


class SimClock:
    """Simulated seconds, for a simulator (its `clock`) and the driver's `now`:
    moved by Rig.until only. Whole seconds, so the lamp's float arithmetic
    meets the driver's integer milliseconds exactly."""

    def __init__(self):
        self.s = 0

    def __call__(self):
        return self.s


class Rig:
    def __init__(self, sim, clock, table, link, **kw):
        self.sim = sim
        self.clock = clock
        self.events = []
        self.p = Projector(table, link, lambda kind, data: self.events.append((kind, data)), **kw)

    def kinds(self, kind):
        return [d for k, d in self.events if k == kind]

    async def until(self, check, sim_s=600):
        """Step the driver on the simulated clock, a second at a time, until
        check() holds."""
        end = self.clock.s + sim_s
        while self.clock.s < end:
            await self.p.step(self.sim.now_ms())
            if check():
                return
            self.clock.s += 1
        raise AssertionError("not reached in %d simulated s; state %s, events %s" % (sim_s, self.p.state, self.events))


@pytest.fixture
def epson():
    clock = SimClock()
    with EpsonSim(clock=clock) as sim:
        port = serial.serial_for_url(sim.path, baudrate=9600, timeout=0)
        yield Rig(sim, clock, short_replies(board_table("epson-escvp21")), SerialLink(port), poll_s=10)
        port.close()


@pytest.fixture
def benq():
    clock = SimClock()
    with BenQSim(clock=clock) as sim:
        port = serial.serial_for_url(sim.path, baudrate=9600, timeout=0)
        yield Rig(sim, clock, short_replies(board_table("benq")), SerialLink(port), poll_s=10)
        port.close()


def pjlink_rig(sim, clock, password=None):
    table = short_replies(board_table("pjlink"))
    table["port"] = sim.port
    return Rig(sim, clock, table, open_link(table, host="127.0.0.1", password=password), poll_s=10)


# -- tables -------------------------------------------------------------------


def test_every_table_loads_and_the_portable_copies_match():
    assert names() == ["benq", "epson-escvp21", "pjlink"]
    for name in names():
        assert portable.TABLES[name] == board_table(name), "update tests/portable/test_projector.py for " + name
        json.dumps(board_table(name))  # what goes to the board as projector.json


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t["commands"].update(dim={"send": "X"}), "epson.json.commands.dim: unknown command"),
        (lambda t: t["commands"].pop("power"), "epson.json.commands: command 'power' missing"),
        (lambda t: t["states"].update({"06": "sleeping"}), "epson.json.states.06: unknown state 'sleeping'"),
        (lambda t: t.update(transport="usb"), "epson.json.transport: 'usb' is not one of"),
        (lambda t: t.pop("timings"), "epson.json: key 'timings' missing"),
        (lambda t: t["commands"]["lamp"].pop("reply"), "epson.json.commands.lamp: key 'reply' missing"),
        (lambda t: t["outcomes"].update({"NAK": "maybe"}), "epson.json.outcomes.'NAK': 'maybe'"),
        (lambda t: t["serial"].update(baud=0), "epson.json.serial.baud: must be > 0"),
        (lambda t: t["states"].update({"0 1": "on"}), "epson.json.states.'0 1': a state code is the reply's value"),
        (lambda t: t["states"].update({"0:1": "on"}), "epson.json.states.'0:1': a state code is the reply's value"),
    ],
)
def test_validation_names_file_and_key(change, message):
    table = load_table("epson-escvp21")
    change(table)
    with pytest.raises(TableError) as e:
        validate(table, "epson.json")
    assert message in str(e.value)


def test_the_board_uart_is_8n1():
    table = load_table("epson-escvp21")
    table["serial"]["parity"] = "even"
    validate(table, "epson.json")  # a valid table...
    with pytest.raises(TableError, match="epson-escvp21.json.serial: the board opens its UART 8N1"):
        compact(table, "epson-escvp21")  # ...that the board cannot drive


def test_board_form_is_flat():
    """No text on the board beyond frames, prefixes and patterns: one list of
    strings and ints, the transport beside it."""
    for name in names():
        board = board_table(name)
        assert set(board) in ({"io", "baud", "p"}, {"io", "port", "p"})
        assert all(isinstance(x, (str, int)) for x in board["p"])


def test_describe_fault_gives_the_table_texts():
    assert describe_fault("epson-escvp21", "err:04") == "high internal temperature"
    assert describe_fault("epson-escvp21", "err:0E") == "power supply unit error"
    assert describe_fault("epson-escvp21", "err:2F") == "error 2F"
    assert describe_fault("pjlink", "err:020000") == "lamp error"
    assert describe_fault("pjlink", "err:020100") == "lamp error, cover warning"
    assert describe_fault("pjlink", "err:002000") == "temperature error"
    assert describe_fault("pjlink", "err:ERR4") == "error ERR4"
    for fault in ("no reply", "bad reply", "auth", "projector failure", "unsupported on", "driver KeyError"):
        assert describe_fault("benq", fault) == fault


def test_unknown_table_lists_the_known_ones():
    with pytest.raises(TableError, match="known: benq, epson-escvp21, pjlink"):
        load_table("sony")


# -- Epson over a pseudo-terminal ----------------------------------------------


def test_epson_on_warm_up_off_with_a_queued_wish(epson):
    run(_epson_on_warm_up_off_with_a_queued_wish(epson), 20)


async def _epson_on_warm_up_off_with_a_queued_wish(epson):
    r, sim = epson, epson.sim
    r.p.want(True, sim.now_ms())
    await r.until(lambda: r.p.state == "warming")
    assert sim.frames[:5] == [b"PWR?\r", b"PWR ON\r", b"PWR?\r", b"LAMP?\r", b"ERR?\r"]
    r.p.want(False, sim.now_ms())  # the lesson ended during the warm-up
    await r.until(lambda: r.p.state == "cooling")
    await r.until(lambda: r.p.state == "off")
    # One PWR OFF: sent during the warm-up the sim would have answered ERR
    # and the driver would have sent it again.
    assert sim.frames.count(b"PWR OFF\r") == 1 and sim.frames.count(b"PWR ON\r") == 1
    off_at = sim.frames.index(b"PWR OFF\r")
    assert sim.frames[off_at - 1] == b"PWR?\r"  # asked first, then sent
    # The off went in the cycle that first saw the lamp warm: "on" never lasted a poll.
    assert [d["state"] for d in r.kinds("projector.changed")] == ["warming", "cooling", "off"]
    assert r.kinds("projector.changed")[0]["lamp_h"] == 1200
    assert r.kinds("projector.fault") == []


def test_epson_power_on_waits_for_the_cool_down(epson):
    run(_epson_power_on_waits_for_the_cool_down(epson), 20)


async def _epson_power_on_waits_for_the_cool_down(epson):
    r, sim = epson, epson.sim
    assert sim.remote(True)
    await r.until(lambda: r.p.state == "on")
    r.p.want(True, sim.now_ms())
    r.p.want(False, sim.now_ms())
    await r.until(lambda: r.p.state == "cooling")
    r.p.want(True, sim.now_ms())  # next lesson straight away
    await r.until(lambda: r.p.state == "warming")
    # The sim answers ERR to a PWR ON sent while cooling, and the driver would
    # send it again: one PWR ON, the one after the cool-down.
    assert sim.frames.count(b"PWR ON\r") == 1
    assert r.kinds("projector.fault") == []


def test_epson_error_code_and_lamp_hours(epson):
    run(_epson_error_code_and_lamp_hours(epson), 20)


async def _epson_error_code_and_lamp_hours(epson):
    r, sim = epson, epson.sim
    sim.set_lamp_hours(1200.99)  # the next hour after 36 lit simulated seconds
    sim.error = "04"
    await r.until(lambda: r.p.errors)
    assert r.kinds("projector.fault") == [{"error": "err:04"}]
    assert describe_fault("epson-escvp21", r.p.errors[0]) == "high internal temperature"
    r.p.want(True, sim.now_ms())
    await r.until(lambda: r.p.lamp_h is not None and r.p.lamp_h >= 1201, sim_s=4000)
    assert r.kinds("projector.fault") == [{"error": "err:04"}]  # once


def test_epson_silent_then_garbled(epson):
    run(_epson_silent_then_garbled(epson), 20)


async def _epson_silent_then_garbled(epson):
    r, sim = epson, epson.sim
    await r.until(lambda: r.p.state == "off")
    sim.silent = True
    await r.until(lambda: r.p.state == "unknown")
    assert r.kinds("projector.fault") == [{"error": "no reply"}]
    sim.silent = False
    sim.garble = 1
    await r.until(lambda: "bad reply" in r.p.errors)
    await r.until(lambda: r.p.state == "off" and not r.p.errors)
    assert [d["error"] for d in r.kinds("projector.fault")] == ["no reply", "bad reply"]


def test_epson_remote_on_outside_a_session_goes_to_standby(epson):
    run(_epson_remote_on_outside_a_session_goes_to_standby(epson), 20)


async def _epson_remote_on_outside_a_session_goes_to_standby(epson):
    r, sim = epson, epson.sim
    r.p.standby_ms = 120000
    sim.remote(True)
    await r.until(lambda: r.p.state == "warming")
    seen_on = sim.now_ms()
    await r.until(lambda: b"PWR OFF\r" in sim.frames)
    assert sim.now_ms() - seen_on >= 120000 - 10000  # simulated time, not wall clock


# -- BenQ over a pseudo-terminal -----------------------------------------------


def test_benq_frames_echo_and_block_item(benq):
    run(_benq_frames_echo_and_block_item(benq), 20)


async def _benq_frames_echo_and_block_item(benq):
    r, sim = benq, benq.sim
    r.p.want(True, sim.now_ms())
    await r.until(lambda: r.p.state == "on")
    assert sim.frames[:4] == [b"\r*pow=?#\r", b"\r*pow=on#\r", b"\r*pow=?#\r", b"\r*ltim=?#\r"]
    assert r.p.lamp_h == 1200
    # BenQ reports ON while warming; an off sent now would get *Block item#.
    assert sim.switch(False) is False
    r.p.want(False, sim.now_ms())
    await r.until(lambda: r.p.state == "off")
    assert sim.frames.count(b"\r*pow=off#\r") == 1
    assert r.kinds("projector.fault") == []


def test_benq_refusal_keeps_the_wish(benq):
    run(_benq_refusal_keeps_the_wish(benq), 20)


async def _benq_refusal_keeps_the_wish(benq):
    r, sim = benq, benq.sim
    sim.warm_s = 10000  # a long warm-up, so the refusal below is certain
    sim.remote(True)
    await r.until(lambda: r.p.state == "on")
    r.p._hold = 0  # as if the driver had missed the change: the projector must refuse
    r.p.want(False, sim.now_ms())
    await r.p.step(sim.now_ms())
    assert sim.frames[-3:-1] == [b"\r*pow=off#\r", b"\r*pow=?#\r"] or sim.frames[-4:-2] == [b"\r*pow=off#\r", b"\r*pow=?#\r"]
    assert r.p.target == "off"  # refused (*Block item#): kept
    sim.warm_s = 30
    await r.until(lambda: r.p.state == "off")
    assert r.kinds("projector.fault") == []


# -- PJLink over TCP ---------------------------------------------------------------


def test_pjlink_with_password():
    run(_pjlink_with_password(), 20)


async def _pjlink_with_password():
    clock = SimClock()
    with PJLinkSim(clock=clock, password="JBMIAProjectorLink") as sim:
        r = pjlink_rig(sim, clock, password="JBMIAProjectorLink")
        r.p.want(True, sim.now_ms())
        await r.until(lambda: r.p.state == "warming")
        assert sim.frames[:3] == [b"%1POWR ?\r", b"%1POWR 1\r", b"%1POWR ?\r"]
        assert sim.auth_failures == 0
        await r.until(lambda: r.p.state == "on")
        r.p.want(False, sim.now_ms())
        await r.until(lambda: r.p.state == "off")
        assert [d["state"] for d in r.kinds("projector.changed")] == ["warming", "on", "cooling", "off"]
        sim.erst = "002000"
        await r.until(lambda: r.p.errors)
        assert r.kinds("projector.fault") == [{"error": "err:002000"}]
        assert describe_fault("pjlink", "err:002000") == "temperature error"


def test_pjlink_wrong_password_is_a_fault():
    run(_pjlink_wrong_password_is_a_fault(), 20)


async def _pjlink_wrong_password_is_a_fault():
    clock = SimClock()
    with PJLinkSim(clock=clock, password="right") as sim:
        r = pjlink_rig(sim, clock, password="wrong")
        r.p.want(True, sim.now_ms())
        await r.until(lambda: r.p.errors)
        await r.until(lambda: sim.auth_failures >= 3)
        assert r.kinds("projector.fault") == [{"error": "auth"}]
        assert r.p.state == "unknown" and sim.frames == []


def test_pjlink_silent_failure_and_no_server():
    run(_pjlink_silent_failure_and_no_server(), 20)


async def _pjlink_silent_failure_and_no_server():
    clock = SimClock()
    with PJLinkSim(clock=clock) as sim:
        r = pjlink_rig(sim, clock)
        sim.silent = True
        await r.until(lambda: r.p.errors == ["no reply"])
        sim.silent = False
        sim.failure = True
        await r.until(lambda: "projector failure" in r.p.errors)
        port = sim.port
    table = short_replies(board_table("pjlink"))
    table["port"] = port  # closed now: connection refused is an OSError
    events = []
    p = Projector(table, open_link(table, host="127.0.0.1"), lambda k, d: events.append((k, d)))
    await p.step(0)
    assert events == [("projector.fault", {"error": "no reply"})]


# -- the driver reports what it could not learn ---------------------------------------


def test_power_query_refused_is_a_fault_on_every_protocol():
    run(_power_query_refused_is_a_fault_on_every_protocol(), 30)


async def _power_query_refused_is_a_fault_on_every_protocol():
    """A power query answered "not now" (PJLink ERR3, Epson ERR, BenQ
    *Block item#) leaves the state unknown, sends nothing, and says why:
    `unknown` is never silent."""
    for make, name, busy in ((EpsonSim, "epson-escvp21", "PWR"), (BenQSim, "benq", "pow"),
                             (PJLinkSim, "pjlink", "POWR")):
        clock = SimClock()
        with make(clock=clock) as sim:
            if name == "pjlink":
                r, port = pjlink_rig(sim, clock), None
            else:
                port = serial.serial_for_url(sim.path, baudrate=9600, timeout=0)
                r = Rig(sim, clock, short_replies(board_table(name)), SerialLink(port), poll_s=10)
            await r.until(lambda r=r: r.p.state == "off")
            sim.busy = {busy}
            r.p.want(True, sim.now_ms())
            await r.until(lambda r=r: r.p.state == "unknown")
            assert r.p.errors == ["projector busy"], name
            assert r.kinds("projector.fault") == [{"error": "projector busy"}], name
            assert sim.power == "off", name  # no power command on a state it could not see
            sim.busy = set()
            await r.until(lambda r=r: r.p.state in ("warming", "on"))  # BenQ says ON while warming
            assert r.p.errors == [], name
            if port is not None:
                port.close()


def test_pjlink_lamp_err1_clears_the_lamp_hours():
    run(_pjlink_lamp_err1_clears_the_lamp_hours(), 20)


async def _pjlink_lamp_err1_clears_the_lamp_hours():
    """LAMP=ERR1 (a lamp-less model, or one that stopped answering it) makes
    the lamp hours unknown, not the last ones read."""
    clock = SimClock()
    with PJLinkSim(clock=clock) as sim:
        r = pjlink_rig(sim, clock)
        await r.until(lambda: r.p.lamp_h == 1200)
        sim.lamps = 0
        n = len(sim.frames)
        await r.until(lambda: b"%1LAMP ?\r" in sim.frames[n:])
        assert r.p.lamp_h is None
        assert r.kinds("projector.fault") == []  # a query the model lacks is no fault
        r.p.want(True, sim.now_ms())
        await r.until(lambda: r.p.state == "warming")
        assert r.kinds("projector.changed")[-1] == {"state": "warming"}  # no stale lamp_h
