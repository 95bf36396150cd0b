"""firmware/board.py on the simulated `machine`, for every shipped profile:
the relay is driven off first, the optional buses, the uplinks (against a
recording `network`), and a watchdog that really resets a hung board."""

from __future__ import annotations

import asyncio
import threading
import time
import types

import pytest

from devkit.sim.machine import SimMachine, SimSPI
from firmware.board import Board
from hardware.boards import load_profile, profile_names

PROFILES = profile_names()


class FakeClock:
    """Simulator time the test advances; read from the watchdog's thread too."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def machines():
    made: list[SimMachine] = []

    def make(**kw) -> SimMachine:
        m = SimMachine(**kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop_watchdogs()


def _board(name, machine):
    profile = load_profile(name)
    b = profile["pins"]["button"]
    machine.inputs[b["pin"]] = 1 if b.get("active_low", True) else 0
    return Board(profile, machine=machine), profile


def _wait(condition, what, limit_s=10.0):
    # Bounded wait for another thread; a deadline, not a timing assertion.
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


@pytest.mark.parametrize("name", PROFILES)
def test_relay_is_driven_off_first_at_construction(name, machines):
    m = machines()
    board, profile = _board(name, m)
    relay_pin = profile["pins"]["ap_relay"]["pin"]
    assert m.history[0][1:] == (relay_pin, 0), "the relay is the first pin driven, and off"
    assert not board.relay()
    board.set_relay(True)
    assert board.relay() and m.output(relay_pin) == 1
    board.set_relay(False)
    assert [lvl for _, p, lvl in m.history if p == relay_pin] == [0, 1, 0]


@pytest.mark.parametrize("name", PROFILES)
def test_button_and_led_follow_their_polarity(name, machines):
    m = machines()
    board, profile = _board(name, m)
    b = profile["pins"]["button"]
    assert not board.button_pressed()
    m.set_input(b["pin"], 0 if b.get("active_low", True) else 1)
    assert board.button_pressed()
    board.set_led(True)
    assert m.output(profile["pins"]["led"]["pin"]) == (0 if profile["pins"]["led"].get("active_low") else 1)


@pytest.mark.parametrize("name", PROFILES)
def test_uart_and_i2c_are_built_from_the_profile(name, machines):
    m = machines()
    board, profile = _board(name, m)
    with pytest.raises(OSError, match="no UART wired"):
        board.uart()
    m.uart = object()
    m.i2c = object()
    assert board.uart() is m.uart
    assert board.i2c() is m.i2c
    u, c = profile["uart"], profile["i2c"]
    args, kw = m.uart_args
    assert args == (u["id"],) and kw["baudrate"] == 9600 and (kw["bits"], kw["parity"], kw["stop"]) == (8, None, 1)
    assert (kw["tx"].id, kw["rx"].id, kw["timeout"]) == (u["tx"], u["rx"], 0)
    args, kw = m.i2c_args
    assert args == (c["id"],) and (kw["scl"].id, kw["sda"].id, kw["freq"]) == (c["scl"], c["sda"], c["freq"])


def test_no_uart_or_i2c_in_the_profile_gives_none(machines):
    profile = load_profile("pico-w")
    del profile["uart"], profile["i2c"]
    m = machines()
    m.inputs[profile["pins"]["button"]["pin"]] = 1
    board = Board(profile, machine=m)
    assert board.uart() is None and board.i2c() is None


class FakeNIC:
    def __init__(self, kind, args, kw):
        self.kind, self.args, self.kw = kind, args, kw
        self.calls: list[tuple] = []
        self.connected = False

    def active(self, on=None):
        self.calls.append(("active", on))

    def connect(self, ssid, password):
        self.calls.append(("connect", ssid, password))

    def isconnected(self):
        return self.connected


@pytest.fixture
def network(monkeypatch):
    made: list[FakeNIC] = []
    mod = types.ModuleType("network")
    mod.PHY_LAN8720 = 1
    mod.PHY_W5500 = 102
    mod.STA_IF = 0
    mod.LAN = lambda *a, **kw: made.append(FakeNIC("LAN", a, kw)) or made[-1]
    mod.WLAN = lambda *a, **kw: made.append(FakeNIC("WLAN", a, kw)) or made[-1]
    monkeypatch.setitem(__import__("sys").modules, "network", mod)
    return made


@pytest.mark.parametrize("name", ["olimex-esp32-poe", "wt32-eth01"])
def test_rmii_lan_uplink(name, machines, network):
    m = machines()
    board, profile = _board(name, m)
    assert not board.uplink_up()
    nic = board.start_uplink()
    lan = profile["lan"]
    assert nic.kind == "LAN" and ("active", True) in nic.calls
    kw = nic.kw
    assert (kw["mdc"].id, kw["mdio"].id, kw["power"].id, kw["ref_clk"].id) == (
        lan["mdc"], lan["mdio"], lan["power"], lan["ref_clk"])
    assert kw["phy_addr"] == lan["phy_addr"] and kw["phy_type"] == 1
    assert kw["ref_clk_mode"] == (m.Pin.OUT if lan["ref_clk_mode"] == "out" else m.Pin.IN)
    assert not board.uplink_up()
    nic.connected = True
    assert board.uplink_up()


def test_w5500_uplink_over_spi(machines, network):
    m = machines()
    board, profile = _board("esp32s3-w5500", m)
    nic = board.start_uplink()
    s, lan = profile["spi"], profile["lan"]
    spi = nic.kw["spi"]
    assert isinstance(spi, SimSPI) and spi.args == (s["id"],)
    assert (spi.kwargs["sck"].id, spi.kwargs["mosi"].id, spi.kwargs["miso"].id) == (s["sck"], s["mosi"], s["miso"])
    assert (nic.kw["cs"].id, nic.kw["int"].id, nic.kw["phy_type"], nic.kw["phy_addr"]) == (lan["cs"], lan["int"], 102, 0)
    # the W5500 was taken through a reset pulse, and left out of reset
    assert [lvl for _, p, lvl in m.history if p == lan["rst"]] == [0, 1]


def test_wifi_station_uplink_needs_credentials(machines, network):
    m = machines()
    board, _ = _board("pico-w", m)
    with pytest.raises(OSError, match="needs an ssid"):
        board.start_uplink()
    nic = board.start_uplink(ssid="ecole-admin", password="secret")
    assert nic.kind == "WLAN" and nic.args == (0,)
    assert nic.calls == [("active", True), ("connect", "ecole-admin", "secret")]


# --- the watchdog ------------------------------------------------------------

def test_watchdog_fires_while_the_event_loop_is_blocked(machines):
    m = machines()  # the real monotonic clock: the loop is really stuck
    board, profile = _board("olimex-esp32-poe", m)
    resets: list[SimMachine] = []
    m.on_reset = resets.append
    relay_pin, led_pin = profile["pins"]["ap_relay"]["pin"], profile["pins"]["led"]["pin"]
    marks: dict[str, float] = {}

    async def firmware():
        board.set_relay(True)
        board.set_led(True)
        # The hang starts as the watchdog does: feeding it on a real clock
        # would race its 50 ms on a busy machine (feeding is the next test's,
        # on a simulated clock).
        marks["hang"] = m.clock()
        board.wdt(50)
        # A blocking call on the loop, bounded so a broken watchdog fails the
        # test instead of hanging it.
        while not m.wdt_fired and m.clock() - marks["hang"] < 10:
            time.sleep(0.01)
        marks["back"] = m.clock()
        board.set_relay(True)  # the dead firmware's next write goes nowhere

    asyncio.run(firmware())
    assert m.wdt_fired and resets == [m]
    assert marks["hang"] <= m.wdt_fired_at <= marks["back"], "fired while the loop was blocked"
    assert m.output(relay_pin) == 0 and m.output(led_pin) == 0 and not board.relay()
    assert all(level == 0 for level in m.outputs.values())
    fired = [(p, lvl) for t, p, lvl in m.history if t == m.wdt_fired_at]
    assert (relay_pin, 0) in fired and (led_pin, 0) in fired
    assert m.history[-1][2] == 0, "nothing driven after the reset"


def test_fed_watchdog_stays_quiet_and_fires_once_starved(machines):
    clock = FakeClock()
    m = machines(clock=clock)
    board, profile = _board("pico-w", m)
    fired = threading.Event()
    m.on_reset = lambda machine: fired.set()
    board.set_relay(True)
    wdt = board.wdt(100)
    for _ in range(300):  # 3 s of simulator time, fed every 10 ms
        clock.advance(0.010)
        wdt.feed()
        time.sleep(0.0005)  # let the watchdog's thread look
    assert not m.wdt_fired and board.relay()
    clock.advance(0.101)
    assert fired.wait(10), "the starved watchdog did not fire"
    assert m.wdt_fired and m.output(profile["pins"]["ap_relay"]["pin"]) == 0
    assert m.wdt_fired_at == clock.now


def test_a_watchdog_cannot_be_restarted_or_reconfigured(machines):
    m = machines(clock=FakeClock())
    board, _ = _board("wt32-eth01", m)
    first = board.wdt(1000)
    assert board.wdt(60000) is first and first.timeout == 1000


def test_reset_cause_after_a_watchdog_reset(machines):
    m = machines(reset_cause=SimMachine.WDT_RESET)
    board, _ = _board("esp32s3-w5500", m)
    assert board.reset_cause() == "watchdog"
