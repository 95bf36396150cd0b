# Kit sensor drivers, CRC and the kit identity record: run under CPython
# (pytest) and in the real MicroPython VM (tests/test_fw_vm.py). Plain
# asserts only. The bus is a byte-recording fake: tests assert the exact
# frames the datasheets give.
from firmware.aht20 import AHT20
from firmware.bh1750 import BH1750
from firmware.bme280 import BME280
from firmware.crc8 import crc8
from firmware.kit import Kit, parse_id
from firmware.scd4x import SCD4x

from ._util import raises


class FakeBus:
    """machine.I2C as the drivers use it. Records ("w", addr, bytes) for
    writes and ("r", addr, n) for reads; answers reads from a queue per
    address (a queued exception is raised instead); NACKs the writes listed
    in `refuse` once each."""

    def __init__(self, present=()):
        self.present = list(present)
        self.log = []
        self.answers = {}
        self.refuse = []

    def answer(self, addr, *chunks):
        self.answers.setdefault(addr, []).extend(chunks)

    def scan(self):
        return list(self.present)

    def writeto(self, addr, buf):
        frame = (addr, bytes(buf))
        self.log.append(("w",) + frame)
        if frame in self.refuse:
            self.refuse.remove(frame)
            raise OSError(19)

    def readfrom_into(self, addr, buf):
        self.log.append(("r", addr, len(buf)))
        data = self.answers[addr].pop(0)
        if isinstance(data, Exception):
            raise data
        assert len(data) == len(buf), (len(data), len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def readfrom_mem_into(self, addr, memaddr, buf):
        self.log.append(("w", addr, bytes([memaddr])))
        self.readfrom_into(addr, buf)

    def writeto_mem(self, addr, memaddr, buf):
        self.writeto(addr, bytes([memaddr]) + bytes(buf))


def words(*ws):
    out = bytearray()
    for w in ws:
        pair = bytes([w >> 8, w & 0xFF])
        out += pair + bytes([crc8(pair)])
    return bytes(out)


# -- CRC-8 ------------------------------------------------------------------
def test_crc8_sensirion_vector():
    assert crc8(b"\xbe\xef") == 0x92  # Sensirion's own example
    assert crc8(b"") == 0xFF
    frame = b"\x00\xbe\xef\x92"
    assert crc8(frame, 1, 3) == frame[3]  # a window, without slicing


# -- SCD4x -------------------------------------------------------------------
def test_scd4x_frames_and_datasheet_example():
    bus = FakeBus()
    s = SCD4x(bus)
    s.start()
    assert bus.log == [("w", 0x62, b"\x21\xb1")]
    bus.log.clear()
    bus.answer(0x62, b"\x80\x06" + bytes([crc8(b"\x80\x06")]))
    s.measure()
    assert bus.log == [("w", 0x62, b"\xe4\xb8"), ("r", 0x62, 3)]
    bus.log.clear()
    # SCD4x datasheet, read_measurement example: 500 ppm, 25 degC, 37 %RH
    bus.answer(0x62, b"\x01\xf4\x33\x66\x67\xa2\x5e\xb9\x3c")
    assert s.read() is True
    assert bus.log == [("w", 0x62, b"\xec\x05"), ("r", 0x62, 9)]
    assert (s.co2, s.t10, s.rh10) == (500, 250, 370)


def test_scd4x_not_ready_reads_nothing():
    bus = FakeBus()
    s = SCD4x(bus)
    bus.answer(0x62, words(0x8000))  # low 11 bits zero: no data yet
    s.measure()
    assert s.read() is False
    assert bus.log[-1] == ("r", 0x62, 3) and s.co2 is None


def test_scd4x_bad_crc_is_rejected():
    bus = FakeBus()
    s = SCD4x(bus)
    bus.answer(0x62, words(0x8006))
    s.measure()
    frame = bytearray(words(800, 0x6667, 0x5EB9))
    frame[5] ^= 0x01
    bus.answer(0x62, bytes(frame))
    raises(ValueError, s.read)
    assert s.co2 is None


def test_scd4x_already_measuring_counts_as_started():
    bus = FakeBus()
    s = SCD4x(bus)
    bus.refuse.append((0x62, b"\x21\xb1"))
    bus.answer(0x62, words(0x8000))
    s.start()
    assert bus.log == [("w", 0x62, b"\x21\xb1"), ("w", 0x62, b"\xe4\xb8"), ("r", 0x62, 3)]


# -- BME280 ------------------------------------------------------------------
# The BMP280 datasheet's worked example (3.12): T = 25.08 degC, p = 100653 Pa.
EXAMPLE_TP = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
EXAMPLE_H = (75, 362, 0, 313, 50, 30)


def calibration_bytes():
    b = bytearray()
    for v in EXAMPLE_TP:
        b += bytes([v & 0xFF, (v >> 8) & 0xFF])
    b += bytes([0, EXAMPLE_H[0]])  # 0xA0 unused, 0xA1 H1
    h2, h3, h4, h5, h6 = EXAMPLE_H[1:]
    h = bytes([h2 & 0xFF, h2 >> 8, h3, h4 >> 4, (h4 & 0x0F) | (h5 & 0x0F) << 4, h5 >> 4, h6])
    return bytes(b), h


def data_bytes(adc_p, adc_t, adc_h):
    return bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4,
                  adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4, adc_h >> 8, adc_h & 0xFF])


def started_bme280(chip=0x60):
    bus = FakeBus()
    tp, h = calibration_bytes()
    bus.answer(0x76, bytes([chip]), tp)
    if chip == 0x60:
        bus.answer(0x76, h)
    s = BME280(bus)
    s.start()
    return bus, s


def test_bme280_start_frames():
    bus, s = started_bme280()
    assert bus.log == [
        ("w", 0x76, b"\xd0"), ("r", 0x76, 1),
        ("w", 0x76, b"\x88"), ("r", 0x76, 26),
        ("w", 0x76, b"\xe1"), ("r", 0x76, 7),
        ("w", 0x76, b"\xf4\x24"),  # sleep first: config only sticks in sleep mode
        ("w", 0x76, b"\xf5\xa0"),
        ("w", 0x76, b"\xf2\x01"),  # ctrl_hum before the ctrl_meas that applies it
        ("w", 0x76, b"\xf4\x27"),
    ]
    assert s.name == "bme280" and s.humidity
    assert s._cal == EXAMPLE_TP + EXAMPLE_H  # T1..P9, H1..H6 (H4, H5 share a byte)


def test_bme280_datasheet_example():
    bus, s = started_bme280()
    t_fine, p, _ = s.compensate(519888, 415148, 0x6000)
    assert t_fine == 128422
    assert (t_fine * 5 + 128) >> 8 == 2508  # 25.08 degC
    assert (p + 128) >> 8 == 100653  # Pa
    bus.answer(0x76, data_bytes(415148, 519888, 0x6000))
    assert s.read() is True
    assert bus.log[-2:] == [("w", 0x76, b"\xf7"), ("r", 0x76, 8)]
    assert (s.t10, s.p10) == (251, 10065)


def test_bme280_humidity_matches_the_float_formula():
    _, s = started_bme280()
    h1, h2, h3, h4, h5, h6 = EXAMPLE_H
    for adc_h in (24000, 28215, 32000):
        var = 128422 - 76800.0  # Bosch's floating-point version (datasheet 8.1)
        var = (adc_h - (h4 * 64.0 + h5 / 16384.0 * var)) * (
            h2 / 65536.0 * (1.0 + h6 / 67108864.0 * var * (1.0 + h3 / 67108864.0 * var)))
        rh = var * (1.0 - h1 * var / 524288.0)
        t_fine, _, h = s.compensate(519888, 415148, adc_h)
        assert t_fine == 128422 and abs(h / 1024 - rh) < 0.05, (adc_h, rh)


def test_bme280_skipped_measurement_is_not_a_reading():
    bus, s = started_bme280()
    bus.answer(0x76, data_bytes(0x80000, 0x80000, 0x8000))
    assert s.read() is False and s.t10 is None


def test_bmp280_has_no_humidity():
    bus, s = started_bme280(chip=0x58)
    assert s.name == "bmp280" and not s.humidity
    assert ("w", 0x76, b"\xf2\x01") not in bus.log
    bus.answer(0x76, data_bytes(415148, 519888, 0)[:6])
    assert s.read() is True
    assert bus.log[-1] == ("r", 0x76, 6) and s.rh10 is None and s.t10 == 251


def test_bme280_wrong_chip_is_refused():
    bus = FakeBus()
    bus.answer(0x76, b"\x55")
    e = raises(ValueError, BME280(bus).start)
    assert "0x55" in str(e)


# -- AHT20 -------------------------------------------------------------------
def aht20_frame(rh_raw, t_raw, status=0x18):
    b = bytes([status, rh_raw >> 12, (rh_raw >> 4) & 0xFF, (rh_raw & 0xF) << 4 | t_raw >> 16,
               (t_raw >> 8) & 0xFF, t_raw & 0xFF])
    return b + bytes([crc8(b)])


def test_aht20_calibrates_only_when_asked():
    bus = FakeBus()
    bus.answer(0x38, b"\x18")
    AHT20(bus).start()
    assert bus.log == [("r", 0x38, 1)]
    bus = FakeBus()
    bus.answer(0x38, b"\x10")  # calibration bit 3 clear
    AHT20(bus).start()
    assert bus.log == [("r", 0x38, 1), ("w", 0x38, b"\xbe\x08\x00")]


def test_aht20_trigger_then_read_later():
    bus = FakeBus()
    s = AHT20(bus)
    assert s.read() is False and bus.log == []  # nothing triggered
    s.measure()
    assert bus.log == [("w", 0x38, b"\xac\x33\x00")]
    bus.answer(0x38, aht20_frame(0, 0, status=0x98))  # busy
    assert s.read() is False
    bus.answer(0x38, aht20_frame(0x80000, 0x60000))  # 50 %RH, 25 degC
    assert s.read() is True
    assert (s.t10, s.rh10) == (250, 500)
    assert s.read() is False  # consumed


def test_aht20_bad_crc_is_rejected():
    bus = FakeBus()
    s = AHT20(bus)
    s.measure()
    frame = bytearray(aht20_frame(0x80000, 0x60000))
    frame[6] ^= 0xFF
    bus.answer(0x38, bytes(frame))
    raises(ValueError, s.read)
    assert s.t10 is None


# -- BH1750 ------------------------------------------------------------------
def test_bh1750_frames_and_scale():
    bus = FakeBus()
    s = BH1750(bus, 0x5C)
    s.start()
    assert bus.log == [("w", 0x5C, b"\x01"), ("w", 0x5C, b"\x10")]
    bus.answer(0x5C, b"\x01\x2c", b"\x83\x90")
    assert s.read() and s.lux10 == 2500  # 300 / 1.2 = 250 lx
    assert s.read() and s.lux10 == 280667  # 33680 / 1.2 = 28066.7 lx


def test_bus_error_comes_out_as_oserror():
    bus = FakeBus()
    bus.answer(0x23, OSError(110))
    raises(OSError, BH1750(bus).read)


# -- kit identity record ------------------------------------------------------
def record(name, magic=b"PK", version=1):
    b = magic + bytes([version, len(name)]) + name
    return bytearray(b + bytes([crc8(b)]) + b"\xff" * (37 - len(b) - 1))


def test_identity_record_parses():
    assert parse_id(record(b"air-co2-03")) == ("air-co2-03", None)
    assert parse_id(record(b"air-co2")) == ("air-co2", None)  # written before kits had numbers
    assert parse_id(record(b"k" * 32)) == ("k" * 32, None)


def test_identity_record_damage_has_a_reason():
    assert parse_id(bytearray(b"\xff" * 37)) == (None, "blank")
    assert parse_id(record(b"air-co2-03", magic=b"PX")) == (None, "bad_magic")
    assert parse_id(record(b"air-co2-03", version=2)) == (None, "bad_version")
    assert parse_id(record(b"")) == (None, "bad_length")
    long = record(b"k" * 32)
    long[3] = 33
    assert parse_id(long) == (None, "bad_length")
    flipped = record(b"air-co2-03")
    flipped[6] ^= 0x01
    assert parse_id(flipped) == (None, "bad_crc")
    assert parse_id(record(b"Air-CO2-03")) == (None, "bad_name")


# -- the kit, stepped ---------------------------------------------------------
def test_kit_light_sensor_cycle():
    events = []
    bus = FakeBus(present=[0x23, 0x50, 0x10])  # 0x10: a device no kit has
    bus.answer(0x50, bytes(record(b"light-02")))
    kit = Kit(bus, lambda kind, data: events.append((kind, data)), read_s=30)
    kit.scan(0)
    assert events == []  # a plug going in: wait for a second look
    kit.scan(500)
    assert events == [("kit.attached", {"kit": "light-02", "sensors": ["bh1750"]})]
    assert bus.log[-2:] == [("w", 0x23, b"\x01"), ("w", 0x23, b"\x10")]
    bus.answer(0x23, b"\x01\x2c")
    for now in range(1000, 7000, 100):
        kit.read(now)
    assert kit.readings == {"lux": 250}
    bus.present = [0x10]
    kit.scan(10000)
    kit.scan(10500)
    assert events[-1] == ("kit.detached", {"kit": "light-02"})
    assert kit.kit is None and kit.readings == {}
