# Bosch BME280 (temperature, pressure, humidity) and BMP280 (no humidity) at
# I2C 0x76 or 0x77, in normal mode: the chip measures by itself once a
# second, a read only fetches the latest values (8 registers, one burst).
#
# Written here rather than taken from micropython-lib or Adafruit: those
# drivers are CPython-only (Blinka) or allocate per read. The bus comes in the
# constructor; one preallocated buffer serves calibration and data. The
# compensation is Bosch's integer version (BME280 datasheet 4.2.3 and 8.2),
# no floats; pressure needs its 64-bit variant, so a read makes a few short-
# lived long ints on MicroPython (tens of bytes, every 30 s). Values: `t10` 0.1 degC, `p10` 0.1 hPa, `rh10` 0.1 %RH (None
# on a BMP280). A bus error raises OSError; a chip that is neither raises
# ValueError.
from .compat import const

ADDRESSES = (0x76, 0x77)
_CHIP_ID = const(0xD0)
_ID_BME280 = const(0x60)
_ID_BMP280 = const(0x58)
_CALIB_TP = const(0x88)  # 0x88..0xA1: T1..P9, then H1 at 0xA1
_CALIB_H = const(0xE1)  # 0xE1..0xE7: H2..H6
_CTRL_HUM = const(0xF2)
_CTRL_MEAS = const(0xF4)
_CONFIG = const(0xF5)
_DATA = const(0xF7)  # press[3], temp[3], hum[2]
# x1 oversampling for all three, normal mode; standby 1000 ms, filter off:
# the weather-station settings of datasheet 3.5.1, about 1 uA of self-heating.
_OSRS_H = const(0x01)
_MEAS_SLEEP = const(0x24)
_MEAS_NORMAL = const(0x27)
_CONFIG_1S = const(0xA0)
_SKIPPED = const(0x80000)  # what the data registers hold before a measurement


def _u16(b, i):
    return b[i] | b[i + 1] << 8


def _s16(b, i):
    v = b[i] | b[i + 1] << 8
    return v - 65536 if v & 0x8000 else v


def _s8(v):
    return v - 256 if v & 0x80 else v


class BME280:
    name = "bme280"

    def __init__(self, i2c, address=0x76):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(26)
        self._data = memoryview(self._buf)[:8]
        self._one = memoryview(self._buf)[:1]
        self.humidity = False
        self.t10 = self.p10 = self.rh10 = None

    def _write(self, reg, value):
        self._one[0] = value
        self.i2c.writeto_mem(self.address, reg, self._one)

    def start(self):
        """Check the chip, load its calibration, start normal mode."""
        b = self._buf
        self.i2c.readfrom_mem_into(self.address, _CHIP_ID, self._one)
        if b[0] not in (_ID_BME280, _ID_BMP280):
            raise ValueError("chip id 0x%02x" % b[0])
        self.humidity = b[0] == _ID_BME280
        if not self.humidity:
            self.name = "bmp280"
            self._data = memoryview(b)[:6]
        self.i2c.readfrom_mem_into(self.address, _CALIB_TP, b)
        self._t1, self._t2, self._t3 = _u16(b, 0), _s16(b, 2), _s16(b, 4)
        self._p1 = _u16(b, 6)
        self._p = [_s16(b, i) for i in range(8, 24, 2)]  # P2..P9
        if self.humidity:
            self._h1 = b[25]
            self.i2c.readfrom_mem_into(self.address, _CALIB_H, memoryview(b)[:7])
            self._h2, self._h3 = _s16(b, 0), b[2]
            self._h4 = _s8(b[3]) << 4 | (b[4] & 0x0F)
            self._h5 = _s8(b[5]) << 4 | b[4] >> 4
            self._h6 = _s8(b[6])
        # config is only sure to take in sleep mode; ctrl_hum only takes
        # effect with the ctrl_meas write that follows it.
        self._write(_CTRL_MEAS, _MEAS_SLEEP)
        self._write(_CONFIG, _CONFIG_1S)
        if self.humidity:
            self._write(_CTRL_HUM, _OSRS_H)
        self._write(_CTRL_MEAS, _MEAS_NORMAL)

    def measure(self):
        pass  # normal mode: the chip measures on its own

    def read(self):
        """Fetch and compensate the latest values; False before the first
        measurement is done."""
        b = self._buf
        self.i2c.readfrom_mem_into(self.address, _DATA, self._data)
        adc_p = b[0] << 12 | b[1] << 4 | b[2] >> 4
        adc_t = b[3] << 12 | b[4] << 4 | b[5] >> 4
        if adc_t == _SKIPPED:
            return False
        t_fine = self.t_fine(adc_t)
        self.t10 = ((t_fine * 5 + 128 >> 8) + 5) // 10
        self.p10 = (self.pressure(adc_p, t_fine) + 1280) // 2560
        if self.humidity:
            self.rh10 = (self.humidity_q10(b[6] << 8 | b[7], t_fine) * 10 + 512) >> 10
        return True

    # Bosch's formulas, names as in the datasheet.
    def t_fine(self, adc_t):
        t1 = self._t1
        var1 = (((adc_t >> 3) - (t1 << 1)) * self._t2) >> 11
        d = (adc_t >> 4) - t1
        var2 = (((d * d) >> 12) * self._t3) >> 14
        return var1 + var2

    def pressure(self, adc_p, t_fine):
        """Pa*256 (Q24.8), 0 if uncalibrated. The 64-bit version: the
        32-bit one is 3 Pa off on the datasheet's own example."""
        p2, p3, p4, p5, p6, p7, p8, p9 = self._p
        var1 = t_fine - 128000
        var2 = var1 * var1 * p6
        var2 = var2 + ((var1 * p5) << 17)
        var2 = var2 + (p4 << 35)
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * self._p1) >> 33
        if var1 == 0:
            return 0  # avoid a division by zero, as the datasheet does
        p = 1048576 - adc_p
        p = (((p << 31) - var2) * 3125) // var1
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (p7 << 4)

    def humidity_q10(self, adc_h, t_fine):
        """%RH in Q22.10 (47445 is 46.333 %RH)."""
        v = t_fine - 76800
        v = ((((adc_h << 14) - (self._h4 << 20) - (self._h5 * v)) + 16384) >> 15) * (
            ((((((v * self._h6) >> 10) * (((v * self._h3) >> 11) + 32768)) >> 10) + 2097152) * self._h2 + 8192) >> 14
        )
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * self._h1) >> 4)
        v = 0 if v < 0 else v
        v = 419430400 if v > 419430400 else v
        return v >> 12
