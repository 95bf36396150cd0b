"""Board profiles are validated data: every shipped profile loads, and each
rule refuses a crafted profile with a message that names the file and key."""

from __future__ import annotations

import copy
import json

import pytest

from hardware.boards import (
    BOARDS_DIR,
    ProfileError,
    board_json,
    load_profile,
    load_profile_file,
    profile_names,
    validate_profile,
)

SHIPPED = ["esp32s3-w5500", "olimex-esp32-poe", "pico-w", "wt32-eth01"]


def test_the_four_profiles_are_shipped():
    assert profile_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads(name):
    profile = load_profile(name)
    assert profile["name"] == name
    assert {"button", "led", "ap_relay"} <= set(profile["pins"])
    assert profile["pins"]["ap_relay"].get("active_low") is False


@pytest.mark.parametrize("name", SHIPPED)
def test_board_json_strips_prose_and_keeps_what_the_firmware_reads(name):
    out = board_json(name)
    text = json.dumps(out)
    for word in ('"note"', '"notes"', '"strapping_ok"', '"title"'):
        assert word not in text
    profile = load_profile(name)
    assert out["pins"]["ap_relay"]["pin"] == profile["pins"]["ap_relay"]["pin"]
    assert out["uplink"] == profile["uplink"]
    assert set(out) <= set(profile) and out["pins"].keys() == profile["pins"].keys()


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="unknown board profile 'nope'.*olimex-esp32-poe"):
        load_profile("nope")


def _write(tmp_path, profile, name=None):
    name = name or profile["name"]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(profile))
    return path


def _shipped(name):
    return json.loads((BOARDS_DIR / f"{name}.json").read_text())


def _rejects(tmp_path, profile, message, name=None):
    path = _write(tmp_path, profile, name)
    with pytest.raises(ProfileError) as e:
        load_profile_file(path)
    assert str(e.value).startswith(f"{path.name}: "), e.value
    assert message in str(e.value), e.value
    return str(e.value)


def test_a_crafted_copy_of_a_shipped_profile_loads_from_a_path(tmp_path):
    profile = _shipped("wt32-eth01")
    assert load_profile_file(_write(tmp_path, profile)) == profile


def test_input_only_pin_cannot_drive_an_output(tmp_path):
    p = _shipped("wt32-eth01")
    p["pins"]["led"]["pin"] = 35
    msg = _rejects(tmp_path, p, "pins.led.pin")
    assert msg == "wt32-eth01.json: pins.led.pin: GPIO 35 is input-only, cannot drive an output"


@pytest.mark.parametrize("section, key", [("uart", "tx"), ("i2c", "sda"), ("i2c", "scl")])
def test_input_only_pin_cannot_be_a_bus_output(tmp_path, section, key):
    p = _shipped("olimex-esp32-poe")
    p[section][key] = 39
    _rejects(tmp_path, p, f"{section}.{key}: GPIO 39 is input-only")


def test_uart_rx_may_be_input_only(tmp_path):
    p = _shipped("olimex-esp32-poe")
    assert p["uart"]["rx"] == 36
    load_profile_file(_write(tmp_path, p))


@pytest.mark.parametrize("name, edit, message", [
    ("olimex-esp32-poe", lambda p: p["pins"]["led"].update(pin=33), "pins.ap_relay.pin: GPIO 33 already used by pins.led.pin"),
    ("olimex-esp32-poe", lambda p: p["pins"]["led"].update(pin=23), "pins.led.pin: GPIO 23 already used by lan.mdc"),
    ("olimex-esp32-poe", lambda p: p["pins"]["led"].update(pin=21), "pins.led.pin: GPIO 21 already used by the EMAC (RMII TX_EN)"),
    ("olimex-esp32-poe", lambda p: p["uart"].update(tx=13), "i2c.sda: GPIO 13 already used by uart.tx"),
    ("esp32s3-w5500", lambda p: p["i2c"].update(scl=12), "i2c.scl: GPIO 12 already used by spi.sck"),
    ("esp32s3-w5500", lambda p: p["pins"]["button"].update(pin=14), "pins.button.pin: GPIO 14 already used by lan.int"),
])
def test_duplicate_pins_across_roles(tmp_path, name, edit, message):
    p = _shipped(name)
    edit(p)
    _rejects(tmp_path, p, message)


def test_strapping_pin_needs_a_reason(tmp_path):
    p = _shipped("wt32-eth01")
    del p["strapping_ok"]["lan.ref_clk"]
    _rejects(tmp_path, p, "lan.ref_clk: GPIO 0 is a strapping pin")
    p = _shipped("olimex-esp32-poe")
    p["strapping_ok"]["lan.power"] = "  "
    _rejects(tmp_path, p, "lan.power: GPIO 12 is a strapping pin")
    p = _shipped("esp32s3-w5500")
    p["pins"]["led"]["pin"] = 46
    _rejects(tmp_path, p, "pins.led.pin: GPIO 46 is a strapping pin")


def test_strapping_ok_must_name_a_strapping_pin_of_the_profile(tmp_path):
    p = _shipped("pico-w")
    p["strapping_ok"] = {"pins.led.pin": "no reason"}
    _rejects(tmp_path, p, "strapping_ok.pins.led.pin: GPIO 15 is not a strapping pin on rp2040")
    p["strapping_ok"] = {"lan.power": "stale"}
    _rejects(tmp_path, p, "strapping_ok.lan.power: names no pin of this profile")


@pytest.mark.parametrize("name, pin, message", [
    ("olimex-esp32-poe", 7, "GPIO 7 is reserved: wired to the SPI flash"),
    ("olimex-esp32-poe", 1, "GPIO 1 is reserved: UART0 TX, the REPL console"),
    ("olimex-esp32-poe", 20, "GPIO 20 does not exist on esp32"),
    ("esp32s3-w5500", 23, "GPIO 23 does not exist on esp32s3"),
    ("esp32s3-w5500", 30, "GPIO 30 is reserved: wired to the SPI flash"),
    ("esp32s3-w5500", 35, "GPIO 35 is reserved: wired to the octal PSRAM"),
    ("esp32s3-w5500", 19, "GPIO 19 is reserved: USB D-"),
    ("pico-w", 25, "GPIO 25 is reserved: CYW43 SPI chip select"),
    ("pico-w", 30, "GPIO 30 does not exist on rp2040"),
])
def test_flash_console_radio_and_missing_pins(tmp_path, name, pin, message):
    p = _shipped(name)
    p["pins"]["led"]["pin"] = pin
    _rejects(tmp_path, p, f"pins.led.pin: {message}")


def test_octal_psram_pins_free_on_a_quad_psram_module(tmp_path):
    p = _shipped("esp32s3-w5500")
    p["psram"] = "quad"
    p["pins"]["led"]["pin"] = 35
    load_profile_file(_write(tmp_path, p))


def test_access_point_relay_must_be_off_when_undriven(tmp_path):
    p = _shipped("olimex-esp32-poe")
    p["pins"]["ap_relay"]["active_low"] = True
    _rejects(tmp_path, p, "pins.ap_relay.active_low: an active-low relay")
    p = _shipped("wt32-eth01")
    p["pins"]["ap_relay"]["pin"] = 14  # PWM during boot
    _rejects(tmp_path, p, "pins.ap_relay.pin: GPIO 14 is driven or pulled high during boot")
    p = _shipped("wt32-eth01")
    p["pins"]["ap_relay"]["pin"] = 15
    p["strapping_ok"]["pins.ap_relay.pin"] = "a reason is not enough for the relay"
    _rejects(tmp_path, p, "pins.ap_relay.pin: GPIO 15 is driven or pulled high during boot")


def test_no_internal_pull_on_esp32_input_only_pins(tmp_path):
    p = _shipped("olimex-esp32-poe")
    p["pins"]["button"]["pull"] = "up"
    _rejects(tmp_path, p, "pins.button.pull: GPIO 34 has no internal pull-up")


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(mcu="esp8266"), "mcu: unknown MCU 'esp8266'"),
    (lambda p: p.update(colour="red"), "colour: unknown key"),
    (lambda p: p["pins"]["led"].update(colour="red"), "pins.led.colour: unknown key"),
    (lambda p: p["lan"].update(speed=100), "lan.speed: unknown key"),
    (lambda p: p["uart"].update(baud=9600), "uart.baud: unknown key"),
    (lambda p: p["pins"].update(buzzer={"pin": 2}), "pins.buzzer: unknown key"),
    (lambda p: p["pins"].pop("ap_relay"), "pins.ap_relay: missing"),
    (lambda p: p["pins"]["button"].pop("pin"), "pins.button.pin: missing"),
    (lambda p: p.pop("uplink"), "uplink: missing"),
    (lambda p: p.pop("lan"), "lan: missing (uplink 'lan' needs it)"),
    (lambda p: p["lan"].pop("mdc"), "lan.mdc: missing"),
    (lambda p: p["i2c"].pop("freq"), "i2c.freq: missing"),
    (lambda p: p["i2c"].update(freq=5), "i2c.freq: expected an integer 10000-1000000, got 5"),
    (lambda p: p["uart"].update(id=0), "uart.id: expected one of 1, 2 on esp32, got 0"),
    (lambda p: p["pins"]["led"].update(pin="32"), "pins.led.pin: expected an integer 0-99, got '32'"),
    (lambda p: p["pins"]["led"].update(active_low="no"), "pins.led.active_low: expected true or false"),
    (lambda p: p.update(uplink="cellular"), "uplink: expected one of lan, lan_spi, wlan, got 'cellular'"),
    (lambda p: p["lan"].update(ref_clk=4), "lan.ref_clk: the RMII clock out can only be on GPIO 0, 16, 17, not 4"),
    (lambda p: p["lan"].update(phy="W5500"), "lan.phy: expected an RMII PHY"),
])
def test_rejections_name_the_key(tmp_path, edit, message):
    p = _shipped("olimex-esp32-poe")
    edit(p)
    _rejects(tmp_path, p, message)


def test_ref_clk_in_only_on_gpio0(tmp_path):
    p = _shipped("wt32-eth01")
    p["lan"]["ref_clk"] = 17
    del p["strapping_ok"]["lan.ref_clk"]
    _rejects(tmp_path, p, "lan.ref_clk: the RMII clock in can only be on GPIO 0, not 17")


def test_uplink_must_exist_on_the_chip(tmp_path):
    p = _shipped("esp32s3-w5500")
    p["uplink"] = "lan"
    _rejects(tmp_path, p, "uplink: 'lan' is not possible on esp32s3")
    p = _shipped("pico-w")
    p["uplink"] = "lan_spi"
    _rejects(tmp_path, p, "uplink: 'lan_spi' is not possible on rp2040")


def test_lan_spi_needs_the_spi_bus(tmp_path):
    p = _shipped("esp32s3-w5500")
    del p["spi"]
    _rejects(tmp_path, p, "spi: missing")
    p = _shipped("esp32s3-w5500")
    p["lan"]["phy"] = "ENC28J60"
    _rejects(tmp_path, p, "lan.phy: expected 'W5500'")


@pytest.mark.parametrize("section, key, pin, message", [
    ("uart", "tx", 2, "uart.tx: GPIO 2 cannot carry UART0 TX on rp2040"),
    ("uart", "tx", 4, "uart.tx: GPIO 4 cannot carry UART0 TX on rp2040"),
    ("i2c", "sda", 6, "i2c.sda: GPIO 6 cannot carry I2C0 SDA on rp2040"),
    ("i2c", "scl", 8, "i2c.scl: GPIO 8 cannot carry I2C0 SCL on rp2040"),
])
def test_rp2040_bus_signals_sit_on_fixed_pins(tmp_path, section, key, pin, message):
    p = _shipped("pico-w")
    p[section][key] = pin
    _rejects(tmp_path, p, message)


@pytest.mark.parametrize("uart_id, tx, rx", [(0, 12, 13), (1, 8, 9), (1, 20, 21)])
def test_rp2040_uart_pins_from_the_datasheet_accepted(tmp_path, uart_id, tx, rx):
    p = _shipped("pico-w")
    p["uart"].update(id=uart_id, tx=tx, rx=rx)
    load_profile_file(_write(tmp_path, p))


def test_file_name_and_profile_name_agree(tmp_path):
    p = _shipped("pico-w")
    _rejects(tmp_path, p, "name: 'pico-w' differs from the file name", name="pico-w2")


def test_bad_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ProfileError, match=r"^broken\.json: not valid JSON"):
        load_profile_file(path)


def test_validate_does_not_modify_the_profile():
    p = _shipped("esp32s3-w5500")
    before = copy.deepcopy(p)
    assert validate_profile(p, "x.json") == before


def test_a_wrover_module_keeps_16_and_17_for_its_psram(tmp_path):
    p = _shipped("wt32-eth01")
    p["psram"] = "quad"  # a WROVER on the board: GPIO16 is not free for the PHY's enable
    _rejects(tmp_path, p, "GPIO 16 is reserved: wired to the PSRAM (WROVER module)")
    p = _shipped("pico-w")
    p["psram"] = "quad"
    _rejects(tmp_path, p, "psram: expected one of [] on an rp2040")
