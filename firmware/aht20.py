# Aosong AHT20 temperature and humidity sensor (I2C 0x38). A measurement
# takes 80 ms, so it is split in two calls: measure() triggers it, read()
# fetches it at least 80 ms later; neither waits.
#
# Written here rather than taken from micropython-lib or Adafruit: those
# drivers are CPython-only (Blinka) or allocate per read and sleep 80 ms
# inside it. The bus comes in the constructor, the buffer is preallocated,
# the frame's CRC is checked. Values: `t10` 0.1 degC, `rh10` 0.1 %RH. A bus
# error raises OSError, a bad CRC ValueError.
from .crc8 import crc8


class AHT20:
    name = "aht20"

    def __init__(self, i2c, address=0x38):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(7)  # status, 20-bit RH, 20-bit T, CRC
        self._pending = False
        self.t10 = self.rh10 = None

    def start(self):
        """Calibrate if the status (bit 3) says it is not calibrated (the
        datasheet wants 10 ms before the first trigger; the first measure()
        comes later than that)."""
        self.i2c.readfrom_into(self.address, memoryview(self._buf)[:1])
        if not self._buf[0] & 0x08:
            self.i2c.writeto(self.address, b"\xbe\x08\x00")

    def measure(self):
        self.i2c.writeto(self.address, b"\xac\x33\x00")  # trigger
        self._pending = True

    def read(self):
        """True when a finished measurement was stored; False when none was
        triggered or the sensor is still busy (then read again later)."""
        if not self._pending:
            return False
        b = self._buf
        self.i2c.readfrom_into(self.address, b)
        if b[0] & 0x80:  # busy
            return False
        self._pending = False
        if crc8(b, 0, 6) != b[6]:
            raise ValueError("crc")
        # raw / 2**20 scaled to tenths, rewritten so that products stay below
        # 2**30 (small ints, no heap): 1000 / 2**20 == 125 / 2**17.
        self.rh10 = ((b[1] << 12 | b[2] << 4 | b[3] >> 4) * 125 + (1 << 16)) >> 17
        self.t10 = ((((b[3] & 0x0F) << 16 | b[4] << 8 | b[5]) * 125 + (1 << 15)) >> 16) - 500
        return True
