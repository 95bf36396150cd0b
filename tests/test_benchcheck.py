"""`preau bench` (edge_gateway/benchcheck) against the simulated board: the
real firmware in SimClassroom, wired to the checks through
devkit/sim/benchwire.py as a Raspberry Pi's GPIO lines, projector port and
console are wired to a real board. A healthy board passes every check; each
fault makes its own check fail with its reason and fix."""

from __future__ import annotations

import io

import pytest

from devkit.brokers import free_port
from devkit.sim.benchwire import SimBenchWire
from devkit.sim.i2c import SimKit
from edge_gateway.benchcheck.checks import CHECKS, check_board, classify
from edge_gateway.benchcheck.projector import BenchProjector
from tests.helpers import run

SCHOOL = "0341234a"


def offline_config(**extra) -> dict:
    """A board on the bench with no gateway nor broker in reach: its broker's
    port has nobody listening, so it runs on its offline policy."""
    return {"school": SCHOOL, "room": "cm2-b", "broker": "127.0.0.1", "port": free_port(),
            "projector": "epson-escvp21"} | extra


def bench(config: dict, tmp_path, **wiring):
    """Run every check on a simulated board wired as `wiring` says; the sheet."""
    wiring.setdefault("kit", SimKit("air-co2-01"))

    async def scenario():
        wire = SimBenchWire(config, storage=str(tmp_path / "flash"), **wiring)
        try:
            return await check_board(wire, projector="epson-escvp21"), wire
        finally:
            await wire.close()

    return run(scenario(), timeout=240)


def failed(sheet) -> dict[str, str]:
    return {name: r.reason for name, r in sheet.results.items() if not r.ok}


@pytest.mark.broker
def test_a_healthy_board_on_the_school_broker_passes_every_check(mosquitto, tmp_path):
    """Its broker in reach but no gateway: the LED says idle, a press waits
    3 s for an answer and starts a session alone."""
    config = {"school": mosquitto.school, "room": "cm2-b", "projector": "epson-escvp21"} \
        | mosquitto.board_config("cm2-b")
    sheet, wire = bench(config, tmp_path)
    assert failed(sheet) == {}, sheet.render()
    assert sheet.ok and set(sheet.results) == set(CHECKS)
    assert "air-co2-01" in sheet.results["kit"].reason
    assert "idle" in sheet.results["led"].reason  # its broker is there: idle, not offline
    assert "alone" in sheet.results["button"].reason  # no gateway: the offline policy's session
    assert "switched it on" in sheet.results["projector"].reason
    assert wire.sim.boots[-1].reset_cause() == 1 and not wire.sim.relay  # left running, relay off


def test_a_relay_module_that_is_on_at_boot_fails_relay_at_boot(tmp_path):
    sheet, _ = bench(offline_config(), tmp_path, relay_module="active_low")
    bad = failed(sheet)
    assert "relay_at_boot" in bad and "after reset 1" in bad["relay_at_boot"], sheet.render()
    assert "relay_line" in bad  # driven on, read off: the module is the wrong way round
    assert "kit" not in bad and "button" not in bad
    assert "active-low" in sheet.results["relay_at_boot"].fix


def test_a_dead_projector_port_fails_the_projector_check_only(tmp_path):
    sheet, _ = bench(offline_config(), tmp_path, projector_wired=False)
    bad = failed(sheet)
    assert set(bad) == {"projector"}, sheet.render()
    assert "nothing came from the board's projector port" in bad["projector"]
    assert "TX to RX" in sheet.results["projector"].fix


def test_no_kit_on_the_bus_fails_the_kit_check(tmp_path):
    sheet, _ = bench(offline_config(), tmp_path, kit=None)
    bad = failed(sheet)
    assert set(bad) == {"kit"}, sheet.render()
    assert "found no device" in bad["kit"]
    assert "Qwiic" in sheet.results["kit"].fix


def test_a_kit_with_a_blank_eeprom_is_named_as_such(tmp_path):
    sheet, _ = bench(offline_config(), tmp_path, kit=SimKit("air-co2-01", eeprom="blank"))
    assert set(failed(sheet)) == {"kit"}, sheet.render()
    assert "blank" in sheet.results["kit"].reason and "0x62" in sheet.results["kit"].reason


def test_a_button_that_never_reaches_the_board_fails_button_and_long_press(tmp_path):
    sheet, _ = bench(offline_config(), tmp_path, button_wired=False)
    bad = failed(sheet)
    assert set(bad) == {"button", "long_press"}, sheet.render()
    assert "did not reach GPIO 34" in bad["button"]
    assert "not checked" in bad["long_press"]
    out = sheet.render()
    assert "FAIL  button" in out and "fix:" in out and "5/7 checks passed" in out


# -- the pieces, without a board ------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [
    ("idle", "idle"), ("offline", "offline"), ("waiting", "waiting"), ("alone", "alone"),
    ("on", "on"), ("fault", "fault"), ("denied", "denied"),
])
@pytest.mark.parametrize("phase_ms", range(0, 3000, 250))
def test_the_led_patterns_of_the_board_are_told_apart(mode, expected, phase_ms):
    """Over the bench's 3.2 s look, whatever the pattern's phase, with the
    firmware's 50 ms ticker setting the LED and the bench's 2 ms sampling."""
    from firmware.led import level

    samples = [(t / 1000, bool(level(mode, (t + phase_ms) // 50 * 50))) for t in range(0, 3200, 2)]
    assert classify(samples) == expected


@pytest.mark.parametrize("phase_ms", range(0, 200, 20))
def test_a_press_is_told_by_one_second_of_fast_blink(phase_ms):
    from firmware.led import level

    def look(mode):
        return classify([(t / 1000, bool(level(mode, (t + phase_ms) // 50 * 50))) for t in range(0, 1000, 2)])

    assert look("waiting") == "waiting"
    assert look("offline") != "waiting" and look("denied") != "waiting"


def test_the_bench_answers_as_an_epson_projector_and_knows_the_board_s_frames():
    p = BenchProjector("epson-escvp21", clock=lambda: 1.0)
    assert p.receive(b"PWR?\r") == b"PWR=04\r:"
    assert p.receive(b"PWR ON\r") == b":" and p.on
    assert p.receive(b"PWR?\rLAMP?\r") == b"PWR=01\r:LAMP=1200\r:"
    assert p.heard("on") and p.heard("power") and not p.heard("off")
    assert p.receive(b"\x7f?Z\r") == b"ERR\r:" and p.noise == bytearray(b"\x7f?Z\r")


def test_the_bench_answers_as_a_benq_projector():
    p = BenchProjector("benq")
    assert p.receive(b"\r") == b">"
    assert p.receive(b"*pow=?#\r") == b"*pow=?#\r\r\n*POW=OFF#\r\n"
    assert p.receive(b"\r*pow=on#\r") == b">*pow=on#\r\r\n*POW=ON#\r\n"
    assert p.heard("power") and p.heard("on")


def test_pjlink_is_not_played_on_a_serial_port():
    with pytest.raises(ValueError, match="network"):
        BenchProjector("pjlink")


class FakeLine:
    """digitalio.DigitalInOut as Blinka has it, recording what the bench does."""

    def __init__(self, pin):
        self.pin, self.value, self.mode, self.drive, self.pull = pin, False, None, None, None

    def switch_to_output(self, value=False, drive_mode=None):
        self.mode, self.value, self.drive = "out", value, drive_mode

    def switch_to_input(self, pull=None):
        self.mode, self.pull = "in", pull

    def deinit(self):
        self.mode = None


def test_the_pi_wire_drives_the_button_open_drain_and_reads_the_profile_s_polarities(monkeypatch):
    import sys
    import types

    from edge_gateway.benchcheck.blinka import BlinkaWire
    from hardware.boards import load_profile

    digitalio = types.SimpleNamespace(DigitalInOut=FakeLine, DriveMode=types.SimpleNamespace(OPEN_DRAIN="od"),
                                      Pull=types.SimpleNamespace(DOWN="down"))
    pins = types.SimpleNamespace(**{f"D{n}": n for n in range(28)})
    monkeypatch.setitem(sys.modules, "digitalio", digitalio)
    monkeypatch.setitem(sys.modules, "board", pins)
    wire = BlinkaWire(load_profile("olimex-esp32-poe"), console="loop://", projector_port="loop://")
    button, relay, led = wire._lines
    assert (button.pin, button.mode, button.drive, button.value) == (17, "out", "od", True)  # released: let go
    wire.press()
    assert button.value is False  # pulled low: the board's pull-up loses
    wire.release()
    assert button.value is True
    assert (relay.pin, relay.pull) == (27, "down") and (led.pin, led.mode) == (22, "in")
    relay.value, led.value = True, True
    assert wire.relay() and wire.led()
    assert wire.projector_port is not None
    run(wire.close())
    assert all(line.mode is None for line in (button, relay, led))


def test_without_blinka_the_command_says_how_to_install_it(monkeypatch):
    import builtins

    from preau.cli import main

    real_import = builtins.__import__

    def no_blinka(name, *args, **kwargs):
        if name in ("board", "digitalio"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_blinka)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["bench", "--console", "loop://", "--projector-port", "loop://"]) == 1
    assert "pip install 'preau[pi]'" in err.getvalue()


def test_a_board_that_cannot_be_reset_again_still_gets_its_sheet(tmp_path):
    """The console or the reset line gives up before the last boot: the
    sheet still prints, with the check it could not make said so."""

    class FlakyReset(SimBenchWire):
        resets = 0

        async def reset(self) -> None:
            FlakyReset.resets += 1
            if FlakyReset.resets > 1:
                raise OSError("the console stopped answering")
            await super().reset()

    async def scenario():
        wire = FlakyReset(offline_config(), storage=str(tmp_path / "flash"), kit=SimKit("air-co2-01"))
        try:
            return await check_board(wire, projector="epson-escvp21")
        finally:
            await wire.close()

    sheet = run(scenario(), timeout=240)
    bad = failed(sheet)
    assert set(bad) == {"relay_at_boot"}, sheet.render()
    assert "could not be reset again" in bad["relay_at_boot"] and "--reset-gpio" in sheet.results["relay_at_boot"].fix
