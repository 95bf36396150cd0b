# Rohm BH1750 ambient light sensor (I2C 0x23 with ADDR low, 0x5C with ADDR
# high), continuous high-resolution mode: 1 lx steps, a new value every
# 120 ms (180 ms at most), so a read is a plain 2-byte fetch.
#
# Written here rather than taken from micropython-lib or Adafruit: those
# drivers are CPython-only (Blinka) or allocate per read. The bus comes in the
# constructor, the buffer is preallocated. Value: `lux10` in 0.1 lx. A bus
# error raises OSError.


class BH1750:
    name = "bh1750"

    def __init__(self, i2c, address=0x23):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(2)
        self.lux10 = None

    def start(self):
        self.i2c.writeto(self.address, b"\x01")  # power on
        self.i2c.writeto(self.address, b"\x10")  # continuous high resolution

    def measure(self):
        pass  # continuous mode: the sensor measures on its own

    def read(self):
        b = self._buf
        self.i2c.readfrom_into(self.address, b)
        # lux = raw / 1.2 (datasheet, MTreg at its default 69): tenths are
        # raw * 25 / 3, rounded.
        self.lux10 = ((b[0] << 8 | b[1]) * 25 + 1) // 3
        return True
