"""Board profiles: pin maps as validated data.

A profile (`<name>.json` here) says which GPIO does what on one board model.
Loading it checks the pins against the chip's datasheet facts (`CHIPS`), so a
wrong pin is refused on the technician's laptop, with the file and the key,
instead of browning out a board in a classroom. The firmware gets the
validated profile without its notes (`board_json`), as `board.json`; the
tables stay here, on the CPython side, where RAM is free.
"""

from __future__ import annotations

import json
from pathlib import Path

BOARDS_DIR = Path(__file__).parent


class ProfileError(ValueError):
    pass


def _gpios(*ranges: tuple[int, int]) -> frozenset[int]:
    return frozenset(n for lo, hi in ranges for n in range(lo, hi + 1))


# Datasheet facts per MCU. `reserved` maps a GPIO to why no profile may use it
# (flash, console, radio); `strapping` pins are sampled at reset, so whatever
# hangs on them must leave them at their boot level (allowed only with a
# `strapping_ok` reason); `boot_active` pins toggle or sit high during boot
# and must never carry the access-point relay.
CHIPS: dict[str, dict] = {
    # ESP32 datasheet (v4.x) ch. 2 "Pin definitions", 2.4 "Strapping pins";
    # ESP-IDF EMAC docs for the RMII pins and clock.
    "esp32": {
        # GPIO 20, 24 and 28-31 are not bonded out.
        "valid": _gpios((0, 19), (21, 23), (25, 27), (32, 39)),
        "input_only": _gpios((34, 39)),
        "no_pull": _gpios((34, 39)),  # no internal pull-up/down on 34-39
        "strapping": frozenset({0, 2, 5, 12, 15}),
        "reserved": {**{n: "wired to the SPI flash" for n in range(6, 12)},
                     1: "UART0 TX, the REPL console", 3: "UART0 RX, the REPL console"},
        "boot_active": frozenset({0, 1, 2, 3, 5, 12, 14, 15}),  # strapping, console, GPIO14 PWM at boot
        # RMII data lines are fixed in the IO_MUX: taken whenever the EMAC runs.
        "rmii": {19: "RMII TXD0", 21: "RMII TX_EN", 22: "RMII TXD1", 25: "RMII RXD0", 26: "RMII RXD1",
                 27: "RMII CRS_DV"},
        "ref_clk": {"in": frozenset({0}), "out": frozenset({0, 16, 17})},
        # WROVER modules wire GPIO16/17 to their PSRAM (ESP32-WROVER-E datasheet).
        "quad_psram": {16: "wired to the PSRAM (WROVER module)", 17: "wired to the PSRAM (WROVER module)"},
        "uplinks": ("lan", "lan_spi", "wlan"),
        "uart_ids": (1, 2), "i2c_ids": (0, 1), "spi_ids": (1, 2),
    },
    # ESP32-S3 datasheet ch. 2 "Pins": GPIO 22-25 do not exist; 26-32 go to the
    # in-package/module flash, 33-37 to octal PSRAM (R8 modules); 19/20 are USB.
    "esp32s3": {
        "valid": _gpios((0, 21), (26, 48)),
        "input_only": frozenset(),
        "no_pull": frozenset(),
        "strapping": frozenset({0, 3, 45, 46}),
        "reserved": {**{n: "wired to the SPI flash" for n in range(26, 33)},
                     19: "USB D-", 20: "USB D+", 43: "UART0 TX, the REPL console", 44: "UART0 RX, the REPL console"},
        "octal_psram": {n: "wired to the octal PSRAM" for n in range(33, 38)},
        "boot_active": frozenset({0, 3, 43, 45, 46}),
        "uplinks": ("lan_spi", "wlan"),  # no Ethernet MAC on the S3: only an SPI MAC+PHY
        "uart_ids": (1, 2), "i2c_ids": (0, 1), "spi_ids": (1, 2),
    },
    # RP2040 datasheet 1.4.3 (GPIO functions): UART/I2C signals sit on fixed
    # pins; flash is on dedicated QSPI pads. The Pico W wires 23/24/25/29 to
    # the CYW43439 radio (Pico W datasheet 2.1 / 3.1).
    "rp2040": {
        "valid": _gpios((0, 29)),
        "input_only": frozenset(),
        "no_pull": frozenset(),
        "strapping": frozenset(),
        "reserved": {23: "CYW43 power (WL_ON)", 24: "CYW43 SPI data / IRQ", 25: "CYW43 SPI chip select",
                     29: "CYW43 SPI clock (and VSYS/3 ADC)"},
        "boot_active": frozenset(),
        "uplinks": ("wlan",),  # MicroPython's network.LAN(spi=) is esp32-only
        "uart_ids": (0, 1), "i2c_ids": (0, 1), "spi_ids": (0, 1),
    },
}

UPLINKS = ("lan", "lan_spi", "wlan")
RMII_PHYS = ("LAN8720", "IP101", "RTL8201", "DP83848", "KSZ8041", "KSZ8081")

_TOP_KEYS = {"name", "title", "mcu", "module", "psram", "uplink", "lan", "spi", "pins", "uart", "i2c",
             "strapping_ok", "note"}
_ROLES = ("button", "led", "ap_relay")
_ROLE_KEYS = {"pin", "active_low", "pull", "note"}
# Section -> (pin keys that drive a line, pin keys that only read, other keys).
# I2C lines are open drain, driven low by the chip: outputs too.
_SECTIONS = {
    "uart": (("tx",), ("rx",), {"id", "notes"}),
    "i2c": (("scl", "sda"), (), {"id", "freq", "notes"}),
    "spi": (("sck", "mosi"), ("miso",), {"id", "baudrate", "notes"}),
    "lan_rmii": (("mdc", "mdio", "power"), (), {"phy", "phy_addr", "ref_clk", "ref_clk_mode", "notes"}),
    "lan_spi": (("cs", "rst"), ("int",), {"phy", "phy_addr", "notes"}),
}


def _fail(where: str, key: str, message: str) -> None:
    raise ProfileError(f"{where}: {key}: {message}")


def _check_keys(where: str, prefix: str, obj: object, allowed: set[str], required: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict):
        _fail(where, prefix, f"expected an object, got {obj!r}")
    assert isinstance(obj, dict)
    for key in obj:
        if key not in allowed:
            _fail(where, f"{prefix}.{key}" if prefix else key, "unknown key")
    for key in required:
        if key not in obj:
            _fail(where, f"{prefix}.{key}" if prefix else key, "missing")
    return obj


def _int(where: str, key: str, value: object, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        _fail(where, key, f"expected an integer {lo}-{hi}, got {value!r}")
    assert isinstance(value, int)
    return value


def validate_profile(profile: object, where: str) -> dict:
    """Check a parsed profile against its chip's facts; return it unchanged.

    `where` names the file in every message (`wt32-eth01.json: pins.led.pin:
    GPIO 35 is input-only, cannot drive an output`)."""
    p = _check_keys(where, "", profile, _TOP_KEYS, ("name", "mcu", "uplink", "pins"))
    if not isinstance(p["name"], str) or not p["name"]:
        _fail(where, "name", f"expected a non-empty string, got {p['name']!r}")
    chip = CHIPS.get(p["mcu"])
    if chip is None:
        _fail(where, "mcu", f"unknown MCU {p['mcu']!r} (known: {', '.join(sorted(CHIPS))})")
    assert chip is not None
    reserved = dict(chip["reserved"])
    if "psram" in p:
        kinds = {"esp32s3": ("quad", "octal"), "esp32": ("quad",)}.get(p["mcu"], ())
        if p["psram"] not in kinds:
            _fail(where, "psram", f"expected one of {list(kinds)} on an {p['mcu']}, got {p['psram']!r}")
        if p["psram"] == "octal":
            reserved.update(chip["octal_psram"])
        elif p["mcu"] == "esp32":
            reserved.update(chip["quad_psram"])
    uplink = p["uplink"]
    if uplink not in UPLINKS:
        _fail(where, "uplink", f"expected one of {', '.join(UPLINKS)}, got {uplink!r}")
    if uplink not in chip["uplinks"]:
        _fail(where, "uplink", f"{uplink!r} is not possible on {p['mcu']} (possible: {', '.join(chip['uplinks'])})")
    strapping_ok = p.get("strapping_ok", {})
    if not isinstance(strapping_ok, dict):
        _fail(where, "strapping_ok", "expected an object {\"<key>\": \"<reason>\"}")

    used: dict[int, str] = {}  # GPIO -> the key that took it
    outputs: list[tuple[str, int]] = []

    def take(key: str, pin: object, output: bool) -> int:
        n = _int(where, key, pin, 0, 99)
        if n not in chip["valid"]:
            _fail(where, key, f"GPIO {n} does not exist on {p['mcu']}")
        if n in reserved:
            _fail(where, key, f"GPIO {n} is reserved: {reserved[n]}")
        if n in chip["strapping"]:
            reason = strapping_ok.get(key)
            if not isinstance(reason, str) or not reason.strip():
                _fail(where, key, f"GPIO {n} is a strapping pin, sampled at reset; "
                                  f"give strapping_ok.{key} a reason why the board keeps its boot level")
        if output and n in chip["input_only"]:
            _fail(where, key, f"GPIO {n} is input-only, cannot drive an output")
        if n in used:
            _fail(where, key, f"GPIO {n} already used by {used[n]}")
        used[n] = key
        if output:
            outputs.append((key, n))
        return n

    # The board's own uplink takes its pins first: they are soldered.
    lan = p.get("lan")
    if uplink in ("lan", "lan_spi") and lan is None:
        _fail(where, "lan", f"missing (uplink {uplink!r} needs it)")
    if uplink != "lan_spi" and "spi" in p:
        _fail(where, "spi", "only an uplink 'lan_spi' uses an SPI bus")
    if uplink == "wlan" and lan is not None:
        _fail(where, "lan", "an uplink 'wlan' has no lan section")
    if uplink == "lan":
        outs, ins, other = _SECTIONS["lan_rmii"]
        _check_keys(where, "lan", lan, set(outs) | set(ins) | other, ("phy", "phy_addr", "mdc", "mdio", "ref_clk",
                                                                       "ref_clk_mode"))
        assert isinstance(lan, dict)
        if lan["phy"] not in RMII_PHYS:
            _fail(where, "lan.phy", f"expected an RMII PHY ({', '.join(RMII_PHYS)}), got {lan['phy']!r}")
        _int(where, "lan.phy_addr", lan["phy_addr"], 0, 31)
        for n, what in chip["rmii"].items():
            used[n] = f"the EMAC ({what})"
        for key in ("mdc", "mdio", "power"):
            if lan.get(key) is not None:
                take(f"lan.{key}", lan[key], output=True)
        mode = lan["ref_clk_mode"]
        if mode not in ("in", "out"):
            _fail(where, "lan.ref_clk_mode", f"expected 'in' or 'out', got {mode!r}")
        clk = take("lan.ref_clk", lan["ref_clk"], output=mode == "out")
        if clk not in chip["ref_clk"][mode]:
            allowed = ", ".join(str(n) for n in sorted(chip["ref_clk"][mode]))
            _fail(where, "lan.ref_clk", f"the RMII clock {mode} can only be on GPIO {allowed}, not {clk}")
    elif uplink == "lan_spi":
        outs, ins, other = _SECTIONS["lan_spi"]
        _check_keys(where, "lan", lan, set(outs) | set(ins) | other, ("phy", "cs", "int"))
        assert isinstance(lan, dict)
        if lan["phy"] != "W5500":
            _fail(where, "lan.phy", f"expected 'W5500' (the SPI MAC+PHY MicroPython supports), got {lan['phy']!r}")
        _int(where, "lan.phy_addr", lan.get("phy_addr", 0), 0, 0)
        _section(where, p, "spi", chip, take, required=("id", "sck", "mosi", "miso"))
        for key in outs:
            if lan.get(key) is not None:
                take(f"lan.{key}", lan[key], output=True)
        take("lan.int", lan["int"], output=False)
        if "baudrate" in p["spi"]:
            _int(where, "spi.baudrate", p["spi"]["baudrate"], 100_000, 80_000_000)

    pins = _check_keys(where, "pins", p["pins"], set(_ROLES), _ROLES)
    for role in _ROLES:
        entry = _check_keys(where, f"pins.{role}", pins[role], _ROLE_KEYS, ("pin",))
        key = f"pins.{role}.pin"
        n = take(key, entry["pin"], output=role != "button")
        if not isinstance(entry.get("active_low", False), bool):
            _fail(where, f"pins.{role}.active_low", f"expected true or false, got {entry['active_low']!r}")
        pull = entry.get("pull")
        if pull not in (None, "up", "down"):
            _fail(where, f"pins.{role}.pull", f"expected null, 'up' or 'down', got {pull!r}")
        if pull is not None and n in chip["no_pull"]:
            _fail(where, f"pins.{role}.pull", f"GPIO {n} has no internal pull-{pull}: fit a resistor, set null")
    relay = pins["ap_relay"]
    # The access point must be off at boot and after any reset, before the
    # firmware runs: an undriven pin must mean "off".
    if relay.get("active_low"):
        _fail(where, "pins.ap_relay.active_low", "an active-low relay turns the access point on while the pin "
                                                 "floats or is low during a reset; drive it active-high with a "
                                                 "pull-down")
    if relay["pin"] in chip["boot_active"]:
        _fail(where, "pins.ap_relay.pin", f"GPIO {relay['pin']} is driven or pulled high during boot: "
                                          "the access point would switch on before the firmware runs")
    if "pull" in relay or "pull" in pins["led"]:
        _fail(where, "pins.ap_relay.pull" if "pull" in relay else "pins.led.pull", "an output has no pull")

    if "uart" in p:
        _section(where, p, "uart", chip, take, required=("id", "tx", "rx"))
    if "i2c" in p:
        _section(where, p, "i2c", chip, take, required=("id", "scl", "sda", "freq"))
        _int(where, "i2c.freq", p["i2c"]["freq"], 10_000, 1_000_000)

    for key in strapping_ok:
        if key not in used.values():
            _fail(where, f"strapping_ok.{key}", "names no pin of this profile")
        n = next(g for g, k in used.items() if k == key)
        if n not in chip["strapping"]:
            _fail(where, f"strapping_ok.{key}", f"GPIO {n} is not a strapping pin on {p['mcu']}")
    return p


def _section(where: str, p: dict, name: str, chip: dict, take, required: tuple[str, ...]) -> None:
    outs, ins, other = _SECTIONS[name]
    if name not in p:
        _fail(where, name, "missing")
    sec = _check_keys(where, name, p.get(name), set(outs) | set(ins) | other, required)
    ids = chip[f"{name}_ids"]
    if sec["id"] not in ids:
        _fail(where, f"{name}.id", f"expected one of {', '.join(map(str, ids))} on {p['mcu']}, got {sec['id']!r}")
    for key in outs + ins:
        if key in sec:
            n = take(f"{name}.{key}", sec[key], output=key in outs)
            if p["mcu"] == "rp2040" and name != "spi":
                _rp2040_function(where, f"{name}.{key}", name, sec["id"], key, n)


def _rp2040_function(where: str, key: str, bus: str, bus_id: int, signal: str, n: int) -> None:
    # RP2040 datasheet 2.19.2 (function select): I2C0/I2C1 alternate every
    # 2 pins, SDA on the even one; UART TX/RX are the first two of each block
    # of 4, and the blocks go UART0, 1, 1, 0, 0, 1, 1, 0.
    if bus == "uart":
        ok = ((n // 4 + 1) // 2) % 2 == bus_id and n % 4 == (0 if signal == "tx" else 1)
    else:
        ok = (n // 2) % 2 == bus_id and n % 2 == (0 if signal == "sda" else 1)
    if not ok:
        _fail(where, key, f"GPIO {n} cannot carry {bus.upper()}{bus_id} {signal.upper()} on rp2040")


def load_profile_file(path: str | Path) -> dict:
    """Read and validate one profile file; errors name the file and the key."""
    path = Path(path)
    try:
        profile = json.loads(path.read_text())
    except OSError as e:
        raise ProfileError(f"{path.name}: cannot read ({e.strerror})") from e
    except ValueError as e:
        raise ProfileError(f"{path.name}: not valid JSON ({e})") from e
    validate_profile(profile, path.name)
    if profile["name"] != path.stem:
        raise ProfileError(f"{path.name}: name: {profile['name']!r} differs from the file name")
    return profile


def load_profile(name: str) -> dict:
    path = BOARDS_DIR / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in BOARDS_DIR.glob("*.json")))
        raise ProfileError(f"unknown board profile {name!r} (known: {known})")
    return load_profile_file(path)


_PROSE = ("note", "notes", "title", "module", "strapping_ok")


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in _PROSE}
    return obj


def board_json(name: str) -> dict:
    """The validated profile as the board needs it (`board.json` on its
    flash): notes and reasons stripped, every line of prose is RAM there."""
    return _strip(load_profile(name))


def profile_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))
