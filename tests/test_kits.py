"""Kits on the simulated I2C bus (devkit/sim/i2c.py): plug and unplug with
the kit's identity, the CO2 hint with hysteresis, failing sensors reported
once and recovered, and the catalogue and EEPROM tooling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.sim.i2c import EEPROM24C02, MODELS, SimI2C, SimKit
from firmware.events import Events
from firmware.kit import PROBES, Kit, parse_id
from hardware.kits import (
    ID_MAX,
    SENSOR_AT,
    TYPE_MAX,
    CatalogueError,
    catalogue_kit,
    id_image,
    kit_type,
    load_catalogue,
    main,
    make_id,
    split_id,
    write_image,
)
from protocol import codec

REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def uptime_ms(self) -> int:
        return self.now

    def time(self):
        return None


class Room:
    """A board's kit socket: the real Kit on a SimI2C, events through the
    real Events queue, time stepped by the test."""

    def __init__(self, **kw) -> None:
        self.clock = Clock()
        self.bus = SimI2C(clock=lambda: self.clock.now)
        self.events = Events(1, self.clock)
        self.kit = Kit(self.bus, self.events.emit, **kw)

    def run(self, ms: int, step: int = 100) -> None:
        end = self.clock.now + ms
        while self.clock.now < end:
            self.clock.now += step
            self.kit.scan(self.clock.now)
            self.kit.read(self.clock.now)

    def log(self) -> list[tuple[str, dict]]:
        for evt in self.events.queue:
            codec.check_evt(evt)  # every event is one the protocol knows
        return [(e["type"], e["data"]) for e in self.events.queue]


def test_attach_and_detach_with_identity():
    room = Room()
    room.bus.attach(SimKit("climate-01"))
    room.run(4000)
    assert room.log() == [("kit.attached", {"kit": "climate-01", "sensors": ["bme280", "scd4x", "bh1750"]})]
    room.run(7000)
    assert room.kit.readings == {"t": 21.0, "p": 1013.2, "rh": 45, "co2": 600, "lux": 300}
    room.bus.detach()
    room.run(7000)
    assert room.log()[-1] == ("kit.detached", {"kit": "climate-01"})
    assert room.kit.kit is None and room.kit.readings == {} and room.kit.sensors == []


@pytest.mark.parametrize("eeprom, reason", [("blank", "blank"), ("corrupt", "bad_crc"), (None, "no_eeprom")])
def test_unidentified_kit_is_reported_with_a_reason(eeprom, reason):
    room = Room()
    room.bus.attach(SimKit("weather-01", eeprom=eeprom))
    room.run(4000)
    assert room.log() == [("kit.attached", {"kit": "unknown", "sensors": ["bme280"], "reason": reason})]
    room.run(7000)
    assert room.kit.readings["t"] == 21.0


def test_kit_swap_between_scans_is_a_detach_then_an_attach():
    room = Room()
    room.bus.attach(SimKit("light-01"))
    room.run(4000)
    room.bus.attach(SimKit("air-co2", 2))  # pulled and replaced within one scan
    room.run(4000)
    assert [kind for kind, _ in room.log()] == ["kit.attached", "kit.detached", "kit.attached"]
    assert room.log()[-1][1]["kit"] == "air-co2-02"


def test_swap_for_a_kit_of_the_same_type_is_seen_by_its_identity():
    room = Room()
    room.bus.attach(SimKit("air-co2", 1))
    room.run(4000)
    room.bus.attach(SimKit("air-co2", 2))  # same sensors at the same addresses, swapped within one scan
    room.run(4000)
    assert [kind for kind, _ in room.log()] == ["kit.attached"]  # the addresses alone cannot tell
    room.run(30000)  # the identity EEPROM is read again every 30 s
    assert room.log()[1:] == [("kit.detached", {"kit": "air-co2-01"}),
                              ("kit.attached", {"kit": "air-co2-02", "sensors": ["scd4x"]})]
    room.run(60000)
    assert len(room.log()) == 3  # the same kit stays attached, read after read


def test_unknown_device_is_ignored():
    room = Room()
    room.bus.add(EEPROM24C02(address=0x57))  # an address no kit uses
    room.run(10000)
    assert room.log() == [] and room.kit.kit is None
    room.bus.attach(SimKit("light-01"))
    room.run(10000)
    assert room.log()[0][1]["sensors"] == ["bh1750"]


def test_co2_alert_with_hysteresis():
    room = Room(co2_alert_ppm=1000, hysteresis_ppm=100, read_s=30)
    kit = room.bus.attach(SimKit("air-co2-01"))
    room.run(10000)
    for co2 in (990, 1000, 1050, 950, 901, 899, 950, 1200):
        kit.scd4x.co2 = co2
        room.run(30000)
    alerts = [data for kind, data in room.log() if kind == "air.alert"]
    assert alerts == [{"co2": 1000, "on": True}, {"co2": 899, "on": False}, {"co2": 1200, "on": True}]
    assert room.kit.air_alert is True
    room.bus.detach()
    room.run(4000)
    assert room.kit.air_alert is False
    assert room.log()[-1] == ("air.alert", {"co2": 1200, "on": False, "reason": "detached"})


@pytest.mark.parametrize("fault, error", [("nack", "i2c errno 110"), ("crc", "crc"), ("busy", "no data")])
def test_failing_sensor_reported_once_retried_and_recovered(fault, error):
    room = Room(read_s=30, retry_s=30)
    kit = room.bus.attach(SimKit("thermo-01"))
    room.run(10000)
    assert room.kit.readings == {"t": 21.0, "rh": 45}
    kit.aht20.fault = fault
    room.run(600000)  # ten minutes of failing reads and restarts
    faults = [data for kind, data in room.log() if kind == "kit.fault"]
    assert faults == [{"sensor": "aht20", "error": error}]
    assert room.kit.readings == {}  # no stale values
    kit.aht20.fault = None
    kit.aht20.t = 23.5
    room.run(700000)  # the backoff is at most 10 min
    assert room.kit.readings == {"t": 23.5, "rh": 45}
    assert room.kit.kit == "thermo-01"  # a fault is not an unplug


def test_backoff_spaces_the_restarts():
    room = Room(read_s=30, retry_s=30)
    kit = room.bus.attach(SimKit("air-co2-01"))
    room.run(10000)
    kit.scd4x.fault = "nack"
    room.bus.log.clear()
    room.run(20 * 60000)
    starts = [i for i, (op, addr, data) in enumerate(room.bus.log) if op == "w" and data == b"\x21\xb1"]
    # 30 s, 60 s, 120 s, 240 s, 480 s: five restarts in twenty minutes,
    # where a fixed 30 s retry would make forty.
    assert 4 <= len(starts) <= 6, len(starts)


def test_sensor_failing_at_attach_is_reported_after_the_attach():
    room = Room()
    kit = SimKit("climate-01")
    kit.bme280.fault = "nack"
    room.bus.attach(kit)
    room.run(4000)
    kinds = [kind for kind, _ in room.log()]
    assert kinds == ["kit.attached", "kit.fault"]
    room.run(7000)
    assert "co2" in room.kit.readings and "p" not in room.kit.readings


def test_bad_crc_never_reaches_the_readings():
    room = Room()
    kit = room.bus.attach(SimKit("air-co2-01"))
    room.run(10000)
    assert room.kit.readings["co2"] == 600
    kit.scd4x.fault = "crc"
    kit.scd4x.co2 = 5000
    room.run(60000)
    assert room.kit.readings == {} and not room.kit.air_alert


def test_aht20_needing_calibration_gets_it():
    room = Room()
    kit = SimKit("thermo-01")
    kit.aht20.calibrated = False
    room.bus.attach(kit)
    room.run(10000)
    assert kit.aht20.calibrated and room.kit.readings == {"t": 21.0, "rh": 45}


def test_bmp280_in_a_bme280_kit_reports_what_it_has():
    room = Room()
    kit = SimKit("weather-01")
    kit.bme280.chip_id = 0x58
    kit.bme280._reset()
    room.bus.attach(kit)
    room.run(10000)
    assert room.log()[0][1]["sensors"] == ["bmp280"]
    assert room.kit.readings == {"t": 21.0, "p": 1013.2}


def test_run_task_steps_the_same_logic():
    import asyncio

    room = Room()
    room.bus.attach(SimKit("light-01"))

    async def sleep_ms(ms):
        room.clock.now += ms
        await asyncio.sleep(0)

    async def main():
        task = asyncio.create_task(room.kit.run(sleep_ms, room.clock.uptime_ms))
        while room.clock.now < 10000:
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(main())
    assert room.kit.readings == {"lux": 300}


def test_drivers_load_only_for_sensors_present():
    code = (
        "import sys\n"
        "from firmware.kit import Kit\n"
        "from devkit.sim.i2c import SimI2C, SimKit\n"
        "bus = SimI2C(clock=lambda: 0)\n"
        "bus.attach(SimKit('light-01'))\n"
        "kit = Kit(bus, lambda kind, data: None)\n"
        "kit.scan(0); kit.scan(500)\n"
        "print(sorted(m for m in sys.modules if m.startswith('firmware.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert json.loads(out.replace("'", '"')) == ["firmware.bh1750", "firmware.compat", "firmware.crc8", "firmware.kit"]


# -- the identity EEPROM ------------------------------------------------------
def test_id_image_round_trips_through_the_firmware_parser():
    image = id_image("climate-07")
    assert len(image) == 256 and image.startswith(b"PK\x01\x0aclimate-07")
    assert parse_id(bytearray(image[:37])) == ("climate-07", None)
    longest = "k" * ID_MAX  # the tool's limit is the firmware's
    assert parse_id(bytearray(id_image(longest)[:37])) == (longest, None)
    with pytest.raises(ValueError):
        id_image("Climate Kit")
    with pytest.raises(ValueError):
        id_image("k" * (ID_MAX + 1))


# -- kit ids: one per physical kit ----------------------------------------------
def test_a_kit_id_is_its_type_and_its_number():
    assert make_id("air-co2", 3) == "air-co2-03"
    assert make_id("climate", 117) == "climate-117"
    assert split_id("air-co2-03") == ("air-co2", 3)
    assert kit_type("air-co2-03") == "air-co2" and kit_type("light-10") == "light"
    # Not of the form type-NN: an EEPROM written before kits had numbers.
    for old in ("air-co2", "light", "light-1", "light-007", "light-00", "-05", "Light-05", "k" * 30 + "-05"):
        assert kit_type(old) is None, old
        with pytest.raises(ValueError):
            split_id(old)
    for kind, number in (("air-co2", 0), ("air-co2", -1), ("air-co2", True), ("air co2", 1), ("k" * TYPE_MAX, 1000)):
        with pytest.raises(ValueError):
            make_id(kind, number)
    longest = make_id("k" * TYPE_MAX, 99)
    assert len(longest) == ID_MAX and kit_type(longest) == "k" * TYPE_MAX
    assert catalogue_kit("climate-02")["sensors"] == ["scd4x", "bme280", "bh1750"]
    for bad in ("sgp30-01", "climate"):
        with pytest.raises(ValueError):
            catalogue_kit(bad)


def test_every_catalogue_type_makes_ids_that_read_back():
    for kind in load_catalogue()["kits"]:
        kit_id = make_id(kind, 42)
        assert kit_type(kit_id) == kind
        assert parse_id(bytearray(id_image(kit_id)[:37])) == (kit_id, None)


def test_sim_kit_takes_the_id_or_type_and_number():
    a, b = SimKit("air-co2-03"), SimKit("air-co2", 4)
    assert (a.id, a.type, b.id, b.type) == ("air-co2-03", "air-co2", "air-co2-04", "air-co2")
    assert [d.__class__.__name__ for d in a.devices] == ["SCD4xModel", "EEPROM24C02"]
    assert parse_id(bytearray(b.eeprom.mem[:37])) == ("air-co2-04", None)
    for bad in (("air-co2",), ("sgp30-01",), ("sgp30", 1), ("air-co2", 0)):
        with pytest.raises(ValueError):
            SimKit(*bad)


def test_two_kits_of_one_type_are_told_apart():
    room = Room()
    room.bus.attach(SimKit("air-co2", 1))
    room.run(4000)
    room.bus.detach()
    room.run(4000)
    room.bus.attach(SimKit("air-co2", 2))
    room.run(4000)
    assert [(kind, data["kit"]) for kind, data in room.log() if kind.startswith("kit.")] == [
        ("kit.attached", "air-co2-01"), ("kit.detached", "air-co2-01"), ("kit.attached", "air-co2-02")]


def test_image_tool_writes_a_numbered_id_and_refuses_unknown_types(capsys):
    assert main(["image", "air-co2", "3"]) == 0
    out = capsys.readouterr().out
    record = id_image("air-co2-03").rstrip(b"\xff")
    assert repr(record) in out
    assert main(["image", "air-co2-03"]) == 0
    assert capsys.readouterr().out == out
    for argv in (["image", "sgp30", "1"], ["image", "sgp30-01"], ["image", "air-co2"], ["image", "air-co2", "0"],
                 ["image", "air-co2", "x"], ["image", "Air-co2", "1"]):
        assert main(argv) == 1, argv
        assert "error:" in capsys.readouterr().err
    assert main(["image"]) == 2 and main(["image", "air-co2", "1", "2"]) == 2
    listed = subprocess.run([sys.executable, "-m", "hardware.kits", "list"], capture_output=True, text=True, check=True,
                            cwd=REPO).stdout
    assert [line.split()[0] for line in listed.splitlines()] == list(load_catalogue()["kits"])


def test_technician_writes_an_id_page_by_page():
    t = [0]
    bus = SimI2C(clock=lambda: t[0])
    eeprom = bus.add(EEPROM24C02())

    def sleep_ms(ms):
        t[0] += ms

    write_image(bus, id_image("a-rather-long-kit-name-0123456"), sleep_ms)
    assert parse_id(bytearray(eeprom.mem[:37])) == ("a-rather-long-kit-name-0123456", None)
    writes = [data for op, addr, data in bus.log if op == "w" and len(data) > 1]
    assert all(len(d) == 9 and d[0] % 8 == 0 for d in writes)  # word address + one page


def test_eeprom_page_write_wraps_within_its_page():
    t = [0]
    bus = SimI2C(clock=lambda: t[0])
    eeprom = bus.add(EEPROM24C02())
    bus.writeto_mem(0x50, 6, b"ABCD")
    assert bytes(eeprom.mem[:8]) == b"CD\xff\xff\xff\xffAB"
    with pytest.raises(OSError):  # busy in its write cycle
        bus.readfrom_mem(0x50, 0, 1)
    assert 0x50 not in bus.scan()
    t[0] += 5
    assert bus.readfrom_mem(0x50, 6, 4) == b"AB\xff\xff"


# -- the catalogue ------------------------------------------------------------
def test_catalogue_agrees_with_the_firmware_probes():
    cat = load_catalogue()
    probed = {(address, SENSOR_AT[address]) for address in PROBES}
    assert len(probed) == len(PROBES) == len(SENSOR_AT)
    listed = {(a, name) for name, s in cat["sensors"].items() for a in s["addresses"]}
    assert listed == probed


@pytest.mark.parametrize("address", list(PROBES))
def test_firmware_attaches_the_listed_sensor_at_each_probed_address(address):
    room = Room()
    name = SENSOR_AT[address]
    room.bus.add(MODELS[name](address=address))
    room.run(4000)
    assert room.log() == [("kit.attached", {"kit": "unknown", "sensors": [name], "reason": "no_eeprom"})]


def test_catalogue_errors_name_the_key(tmp_path):
    bad = tmp_path / "kits.json"
    cat = json.loads((REPO / "hardware" / "kits" / "catalogue.json").read_text())
    cat["kits"]["Bad Kit"] = {"title": "x", "sensors": ["scd4x"]}
    bad.write_text(json.dumps(cat))
    with pytest.raises(CatalogueError, match="kits.Bad Kit"):
        load_catalogue(bad)
    del cat["kits"]["Bad Kit"]
    cat["kits"]["air-co2"]["sensors"] = ["sgp30"]
    bad.write_text(json.dumps(cat))
    with pytest.raises(CatalogueError, match="unknown sensor 'sgp30'"):
        load_catalogue(bad)
    cat["kits"]["air-co2"]["sensors"] = ["scd4x"]
    # A type must leave room for its number and not look like a kit id.
    for kind in ("sensor-2", "k" * (TYPE_MAX + 1), "light-"):
        cat["kits"][kind] = {"title": "x", "sensors": ["bh1750"]}
        bad.write_text(json.dumps(cat))
        with pytest.raises(CatalogueError, match=f"kits.{kind}"):
            load_catalogue(bad)
        del cat["kits"][kind]


def test_a_damaged_identity_read_does_not_detach_the_kit():
    room = Room()
    kit = room.bus.attach(SimKit("air-co2", 1))
    room.run(4000)
    good = bytes(kit.eeprom.mem)
    kit.eeprom.mem[6] ^= 0x10  # a glitch: the record fails its CRC on the next check
    room.run(31000)
    kit.eeprom.mem[:] = good
    room.run(31000)
    assert [kind for kind, _ in room.log()] == ["kit.attached"]
    assert room.kit.kit == "air-co2-01"
