# Bosch BME280 (temperature, pressure, humidity) and BMP280 (no humidity) at
# I2C 0x76 or 0x77, in normal mode: the chip measures by itself once a
# second, a read only fetches the latest values (8 registers, one burst).
#
# Written here rather than taken from micropython-lib or Adafruit: those
# drivers are CPython-only (Blinka) or allocate per read. The bus comes in the
# constructor; one preallocated buffer serves calibration and data. The
# compensation is Bosch's integer version (BME280 datasheet 4.2.3 and 8.2),
# no floats; pressure needs its 64-bit variant, so a read makes a few short-
# lived long ints on MicroPython (tens of bytes, every 30 s). Values: `t10`
# 0.1 degC, `p10` 0.1 hPa, `rh10` 0.1 %RH (None on a BMP280). A bus error
# raises OSError; a chip that is neither raises ValueError.
#
# Small on purpose (it stays loaded): the calibration is one tuple unpacked
# by struct, the three formulas are one method.
import struct

# Register writes for start(), as (register, value) pairs: x1 oversampling
# for all three, normal mode; standby 1000 ms, filter off: the weather-station
# settings of datasheet 3.5.1, about 1 uA of self-heating. ctrl_meas goes to
# sleep first (0xF4 0x24) because config (0xF5) is only sure to take in sleep
# mode; ctrl_hum (0xF2, BME280 only) takes effect with the ctrl_meas write that
# follows it (0xF4 0x27, normal mode).
_SETUP = b"\xf4\x24\xf5\xa0\xf2\x01\xf4\x27"


class BME280:
    name = "bme280"

    def __init__(self, i2c, address=0x76):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(26)
        self._data = memoryview(self._buf)[:8]  # press[3], temp[3], hum[2] at 0xF7
        self.humidity = False
        self.t10 = self.p10 = self.rh10 = None

    def start(self):
        """Check the chip (0x60 BME280, 0x58 BMP280), load its calibration,
        start normal mode."""
        i2c, a, b = self.i2c, self.address, self._buf
        mv = memoryview(b)
        i2c.readfrom_mem_into(a, 0xD0, mv[:1])
        if b[0] != 0x60 and b[0] != 0x58:
            raise ValueError("chip id 0x%02x" % b[0])
        h = self.humidity = b[0] == 0x60
        if not h:
            self.name = "bmp280"
            self._data = mv[:6]
        i2c.readfrom_mem_into(a, 0x88, b)
        cal = struct.unpack_from("<HhhHhhhhhhhhxB", b)  # 0x88..0xA1: T1..T3, P1..P9, H1
        h2 = h3 = h4 = h5 = h6 = 0
        if h:
            i2c.readfrom_mem_into(a, 0xE1, mv[:7])
            # 0xE1..0xE7: H2, H3, then H4 and H5 as 12-bit values sharing 0xE5, H6
            h2, h3, e4, e5, e6, h6 = struct.unpack_from("<hBbBbb", b)
            h4 = e4 << 4 | e5 & 0x0F
            h5 = e6 << 4 | e5 >> 4
        self._cal = cal + (h2, h3, h4, h5, h6)
        for i in range(0, 8, 2):
            if h or i != 4:
                i2c.writeto(a, _SETUP[i:i + 2])

    def measure(self):
        pass  # normal mode: the chip measures on its own

    def read(self):
        """Fetch and compensate the latest values; False before the first
        measurement is done."""
        b = self._data
        self.i2c.readfrom_mem_into(self.address, 0xF7, b)
        adc_t = b[3] << 12 | b[4] << 4 | b[5] >> 4
        if adc_t == 0x80000:  # what the registers hold before a measurement
            return False
        h = self.humidity
        t, p, rh = self.compensate(adc_t, b[0] << 12 | b[1] << 4 | b[2] >> 4, b[6] << 8 | b[7] if h else 0)
        self.t10 = ((t * 5 + 128 >> 8) + 5) // 10
        self.p10 = (p + 1280) // 2560
        if h:
            self.rh10 = (rh * 10 + 512) >> 10
        return True

    def compensate(self, adc_t, adc_p, adc_h):
        """Bosch's integer formulas, names as in the datasheet: (t_fine,
        pressure in Pa*256 (Q24.8, 0 if uncalibrated), humidity in %RH*1024
        (Q22.10, 47445 is 46.333 %RH))."""
        t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6 = self._cal
        d = (adc_t >> 4) - t1
        t_fine = ((((adc_t >> 3) - (t1 << 1)) * t2) >> 11) + ((((d * d) >> 12) * t3) >> 14)
        # Pressure: the 64-bit version; the 32-bit one is 3 Pa off on the
        # datasheet's own example.
        v1 = t_fine - 128000
        v2 = v1 * v1 * p6 + ((v1 * p5) << 17) + (p4 << 35)
        v1 = (((1 << 47) + ((v1 * v1 * p3) >> 8) + ((v1 * p2) << 12)) * p1) >> 33
        p = 0
        if v1:  # avoid a division by zero, as the datasheet does
            p = ((((1048576 - adc_p) << 31) - v2) * 3125) // v1
            p = ((p + ((p9 * (p >> 13) * (p >> 13)) >> 25) + ((p8 * p) >> 19)) >> 8) + (p7 << 4)
        v = t_fine - 76800
        v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
            ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
        )
        v -= (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
        return t_fine, p, min(max(v, 0), 419430400) >> 12
