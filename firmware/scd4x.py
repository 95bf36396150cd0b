# Sensirion SCD40/SCD41 CO2 sensor (I2C 0x62), periodic mode: one reading
# every 5 s, made by the sensor itself.
#
# Written here rather than taken from micropython-lib or Adafruit: those
# drivers are CPython-only (Blinka) or allocate a buffer per read. This one
# takes the bus in its constructor (machine.I2C or devkit/sim/i2c.py),
# keeps one preallocated buffer (and views of it), checks every word's CRC,
# and never waits more than the 1 ms the sensor needs between a command and
# its answer. Values are integers: `co2` ppm, `t10` 0.1 degC, `rh10` 0.1 %RH;
# None until the first reading. A bus error raises OSError, a bad CRC
# ValueError.
from .compat import sleep_ms
from .crc8 import crc8


class SCD4x:
    name = "scd4x"

    def __init__(self, i2c, address=0x62):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(9)  # 3 words, each followed by its CRC; a command in the first 2
        mv = memoryview(self._buf)
        self._views = (mv[:2], mv[:3])  # a command, the data-ready answer
        self._ready = False
        self.co2 = self.t10 = self.rh10 = None

    def _command(self, cmd, n=0):
        """Send a 16-bit command; with n, read its n-byte answer 1 ms later
        (execution time of a read command, datasheet 3.5) and check it."""
        b = self._buf
        b[0] = cmd >> 8
        b[1] = cmd & 0xFF
        self.i2c.writeto(self.address, self._views[0])
        if n:
            sleep_ms(1)
            self.i2c.readfrom_into(self.address, self._views[1] if n == 3 else b)
            for i in range(0, n, 3):
                if crc8(b, i, i + 2) != b[i + 2]:
                    raise ValueError("crc")

    def start(self):
        """Start periodic measurement (0x21B1). After a board reset the
        sensor may still be measuring and refuses the command (NACK):
        answering the data-ready query proves it runs, so that counts as
        started. (Stopping it first would cost a 500 ms wait.)"""
        try:
            self._command(0x21B1)
        except OSError:
            self._command(0xE4B8, 3)

    def stop(self):
        self._command(0x3F86)  # the sensor ignores commands for 500 ms after

    def measure(self):
        """First half of a reading: is a new measurement waiting?
        (get_data_ready_status: low 11 bits of the word not 0)"""
        self._command(0xE4B8, 3)
        b = self._buf
        self._ready = (b[0] << 8 | b[1]) & 0x7FF != 0

    def read(self):
        """Second half: fetch the measurement measure() saw (read_measurement).
        True when new values were stored; False when none was waiting (the
        sensor NACKs a read without data)."""
        if not self._ready:
            return False
        self._ready = False
        self._command(0xEC05, 9)
        b = self._buf
        self.co2 = b[0] << 8 | b[1]
        # 175 * raw / 65535 in tenths, kept below 2**30: small ints, no heap.
        self.t10 = (1750 * (b[3] << 8 | b[4]) + 32767) // 65535 - 450
        self.rh10 = (1000 * (b[6] << 8 | b[7]) + 32767) // 65535
        return True
