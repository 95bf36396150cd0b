"""Connected-object kits: the catalogue (catalogue.json, validated) and the
kit identity EEPROM image that firmware/kit.py reads.

The catalogue lists kit TYPES ("air-co2"). Every physical kit has its own id,
its serial: the type, a dash and a number of two digits or more ("air-co2-03"),
so that a city with several CO2 kits tells them apart. That id is what the
EEPROM holds and what the board reports; the type is the part before the
last "-NN" (`kit_type`).

The identity record sits at address 0 of a 24C02 (I2C 0x50, 256 bytes,
8-byte pages): b"PK", version 1, length n (1..32), n ASCII characters
[a-z0-9-], CRC-8 (poly 0x31, init 0xFF) of everything before it; the rest of
the memory stays 0xFF.

A technician writes a kit's EEPROM from a board's REPL:

    python -m hardware.kits image air-co2 3        # kit "air-co2-03": prints the MicroPython lines
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from firmware.crc8 import crc8
from firmware.kit import PROBES

# The record as firmware/kit.py reads it (there as const() names, which
# cost no board RAM and so cannot be imported): tests/test_kits.py
# round-trips images through the firmware's parser.
EEPROM = 0x50
ID_VERSION = 1
ID_MAX = 32
# The sensor firmware/kit.py attaches at each of its PROBES addresses;
# tests/test_kits.py plugs each one in and checks.
SENSOR_AT = {0x76: "bme280", 0x77: "bme280", 0x38: "aht20", 0x62: "scd4x", 0x23: "bh1750", 0x5C: "bh1750"}
CATALOGUE = Path(__file__).with_name("catalogue.json")
NAME = re.compile(r"^[a-z0-9-]{1,%d}$" % ID_MAX)
# A kit's id: its type, "-", its number (at least two digits, no extra
# leading zero: "air-co2-03", "air-co2-117").
SERIAL = re.compile(r"^([a-z0-9-]+)-(0[1-9]|[1-9][0-9]+)$")
TYPE_MAX = ID_MAX - 3  # a type leaves room for "-NN"
PAGE = 8
SIZE = 256
WRITE_CYCLE_MS = 5  # 24C02 datasheet: t_WR max


class CatalogueError(ValueError):
    pass


def load_catalogue(path: Path = CATALOGUE) -> dict:
    """The catalogue, checked: kit ids fit the EEPROM record, every sensor is
    one the firmware probes for, at the addresses it probes."""
    where = path.name
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise CatalogueError(f"{where}: not valid JSON ({e})") from e
    probed: dict[str, list[int]] = {}
    for address in PROBES:
        probed.setdefault(SENSOR_AT[address], []).append(address)
    sensors = data.get("sensors")
    kits = data.get("kits")
    if not isinstance(sensors, dict) or not isinstance(kits, dict):
        raise CatalogueError(f"{where}: needs objects 'sensors' and 'kits'")
    for name, sensor in sensors.items():
        try:
            addresses = [int(a, 16) for a in sensor["addresses"]]
        except (KeyError, TypeError, ValueError) as e:
            raise CatalogueError(f"{where}: sensors.{name}.addresses: hex strings expected") from e
        if name not in probed:
            raise CatalogueError(f"{where}: sensors.{name}: firmware/kit.py does not probe for it")
        if sorted(addresses) != sorted(probed[name]):
            raise CatalogueError(f"{where}: sensors.{name}.addresses differ from firmware/kit.py PROBES")
        sensor["addresses"] = addresses
    for kit_id, kit in kits.items():
        if not NAME.match(kit_id) or len(kit_id) > TYPE_MAX:
            raise CatalogueError(f"{where}: kits.{kit_id}: a kit type must be 1-{TYPE_MAX} of a-z 0-9 -")
        if re.search(r"-[0-9]+$", kit_id) or kit_id.startswith("-") or kit_id.endswith("-"):
            # "sensor-2-05" would read back as type "sensor-2"... or not.
            raise CatalogueError(f"{where}: kits.{kit_id}: a kit type must not end in a dash or in -<digits>")
        names = kit.get("sensors")
        if not isinstance(names, list) or not names:
            raise CatalogueError(f"{where}: kits.{kit_id}.sensors: a non-empty list expected")
        for name in names:
            if name not in sensors:
                raise CatalogueError(f"{where}: kits.{kit_id}.sensors: unknown sensor {name!r}")
        if len(set(names)) != len(names):
            raise CatalogueError(f"{where}: kits.{kit_id}.sensors: a sensor twice (same address)")
    return data


def make_id(kind: str, number: int) -> str:
    """A kit's id from its type and number: ("air-co2", 3) -> "air-co2-03".
    Checks the form only; `catalogue_kit` checks the type is known."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"kit number {number!r}: an integer >= 1 expected")
    kit_id = f"{kind}-{number:02d}"
    if not NAME.match(kit_id) or kit_type(kit_id) != kind:
        raise ValueError(f"kit {kind!r} number {number}: the id {kit_id!r} is not 1-{ID_MAX} of a-z 0-9 -"
                         " ending in -NN")
    return kit_id


def split_id(kit_id: str) -> tuple[str, int]:
    """("air-co2", 3) for "air-co2-03"; ValueError for anything that is not a
    kit id of the form type-NN."""
    match = SERIAL.match(kit_id) if isinstance(kit_id, str) and NAME.match(kit_id) else None
    if match is None:
        raise ValueError(f"kit id {kit_id!r}: expected <type>-<number>, e.g. 'air-co2-03' "
                         f"(1-{ID_MAX} of a-z 0-9 -)")
    return match.group(1), int(match.group(2))


def kit_type(kit_id: str) -> str | None:
    """The catalogue type of a kit id ("air-co2" for "air-co2-03"), None when
    the id is not of the form type-NN (an EEPROM written before kits had
    numbers, or by hand)."""
    try:
        return split_id(kit_id)[0]
    except ValueError:
        return None


def catalogue_kit(kit_id: str, catalogue: dict | None = None) -> dict:
    """The catalogue entry of a kit by its id ("air-co2-03"); ValueError when
    the id has no number or its type is not in the catalogue."""
    kind, _ = split_id(kit_id)
    kits = (catalogue or load_catalogue())["kits"]
    if kind not in kits:
        raise ValueError(f"kit id {kit_id!r}: type {kind!r} is not in {CATALOGUE.name} "
                         f"({', '.join(kits)})")
    return kits[kind]


def id_image(kit_id: str) -> bytes:
    """The EEPROM's 256 bytes for `kit_id`."""
    if not NAME.match(kit_id):
        raise ValueError(f"kit id {kit_id!r}: 1-{ID_MAX} of a-z 0-9 -")
    record = bytearray(b"PK" + bytes([ID_VERSION, len(kit_id)]) + kit_id.encode())
    record.append(crc8(record))
    return bytes(record) + b"\xff" * (SIZE - len(record))


def write_image(i2c, image: bytes, sleep_ms: Callable[[int], None] = lambda ms: time.sleep(ms / 1000),
                address: int = EEPROM) -> None:
    """Write `image` page by page (a write past a page's end would wrap onto
    its start), waiting out each write cycle by acknowledge polling; skips
    pages already right. `i2c` is a machine.I2C or devkit/sim/i2c.SimI2C."""
    current = bytearray(len(image))
    i2c.readfrom_mem_into(address, 0, current)
    for start in range(0, len(image), PAGE):
        page = image[start:start + PAGE]
        if current[start:start + PAGE] == page:
            continue
        i2c.writeto_mem(address, start, page)
        for _ in range(20):  # the chip NACKs until its write cycle ends
            sleep_ms(WRITE_CYCLE_MS // 5 or 1)
            try:
                i2c.writeto(address, b"")
                break
            except OSError:
                continue
        else:
            raise OSError(f"EEPROM at 0x{address:02x} did not finish writing page {start}")


def repl_lines(kit_id: str) -> str:
    """MicroPython to paste at a board's REPL (I2C pins from the board
    profile) to write the kit's EEPROM."""
    record = id_image(kit_id).rstrip(b"\xff")
    return "\n".join([
        "import time",
        "from machine import I2C, Pin",
        "i2c = I2C(0, scl=Pin(SCL), sda=Pin(SDA), freq=100000)  # SCL, SDA: the board's Qwiic pins",
        f"rec = {record!r} + b'\\xff' * {PAGE - len(record) % PAGE if len(record) % PAGE else 0}",
        f"for a in range(0, len(rec), {PAGE}):",
        f"    i2c.writeto_mem(0x{EEPROM:02x}, a, rec[a:a + {PAGE}]); time.sleep_ms(10)",
        f"print(i2c.readfrom_mem(0x{EEPROM:02x}, 0, len(rec)) == rec)",
    ])


USAGE = "usage: python -m hardware.kits list | image <type> <number> | image <type>-<NN>"


def main(argv: list[str]) -> int:
    if not (argv == ["list"] or (len(argv) in (2, 3) and argv[0] == "image")):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        catalogue = load_catalogue()
        if argv[0] == "list":
            for kind, kit in catalogue["kits"].items():
                print(f"{kind:12} {', '.join(kit['sensors']):28} {kit['title']}")
            return 0
        if len(argv) == 3:
            try:
                number = int(argv[2], 10)
            except ValueError:
                raise ValueError(f"kit number {argv[2]!r}: an integer >= 1 expected") from None
            if argv[1] not in catalogue["kits"]:
                raise ValueError(f"kit type {argv[1]!r} is not in {CATALOGUE.name} ({', '.join(catalogue['kits'])})")
            kit_id = make_id(argv[1], number)
        else:
            kit_id = argv[1]
            if kit_id in catalogue["kits"]:
                raise ValueError(f"{kit_id!r} is a kit type: give the kit's number too "
                                 f"(image {kit_id} 3 writes {kit_id}-03)")
        catalogue_kit(kit_id, catalogue)
        print(f"# kit {kit_id}", file=sys.stderr)
        print(repl_lines(kit_id))
    except ValueError as e:  # CatalogueError included
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
