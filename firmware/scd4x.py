# Sensirion SCD40/SCD41 CO2 sensor (I2C 0x62), periodic mode: one reading
# every 5 s, made by the sensor itself.
#
# Written here rather than taken from micropython-lib or Adafruit: those
# drivers are CPython-only (Blinka) or allocate a buffer per read. This one
# takes the bus in its constructor (machine.I2C or hardware/sim/i2c.py),
# keeps two preallocated buffers, checks every word's CRC, and never waits
# more than the 1 ms the sensor needs between a command and its answer.
# Values are integers: `co2` ppm, `t10` 0.1 degC, `rh10` 0.1 %RH; None until
# the first reading. A bus error raises OSError, a bad CRC ValueError.
from .compat import const, sleep_ms
from .crc8 import crc8

ADDRESS = const(0x62)
_START_PERIODIC = const(0x21B1)
_READ_MEASUREMENT = const(0xEC05)
_DATA_READY = const(0xE4B8)
_STOP_PERIODIC = const(0x3F86)


class SCD4x:
    name = "scd4x"

    def __init__(self, i2c, address=ADDRESS):
        self.i2c = i2c
        self.address = address
        self._cmd = bytearray(2)
        self._buf = bytearray(9)  # 3 words, each followed by its CRC
        self._word0 = memoryview(self._buf)[:3]  # the data-ready answer
        self._ready = False
        self.co2 = self.t10 = self.rh10 = None

    def _command(self, cmd, answer_len=0):
        b = self._cmd
        b[0] = cmd >> 8
        b[1] = cmd & 0xFF
        self.i2c.writeto(self.address, b)
        if answer_len:
            sleep_ms(1)  # execution time of a read command (datasheet 3.5)
            buf = self._buf
            self.i2c.readfrom_into(self.address, self._word0 if answer_len == 3 else buf)
            for i in range(0, answer_len, 3):
                if crc8(buf, i, i + 2) != buf[i + 2]:
                    raise ValueError("crc")

    def _word(self, i):
        return self._buf[3 * i] << 8 | self._buf[3 * i + 1]

    def start(self):
        """Start periodic measurement. After a board reset the sensor may
        still be measuring and refuses the command (NACK): answering the
        data-ready query proves it runs, so that counts as started. (Stopping
        it first would cost a 500 ms wait.)"""
        try:
            self._command(_START_PERIODIC)
        except OSError:
            self._command(_DATA_READY, 3)

    def stop(self):
        self._command(_STOP_PERIODIC)  # the sensor ignores commands for 500 ms after

    def measure(self):
        """First half of a reading: is a new measurement waiting?"""
        self._command(_DATA_READY, 3)
        self._ready = self._word(0) & 0x7FF != 0

    def read(self):
        """Second half: fetch the measurement measure() saw. True when new
        values were stored; False when none was waiting (the sensor NACKs a
        read without data)."""
        if not self._ready:
            return False
        self._ready = False
        self._command(_READ_MEASUREMENT, 9)
        self.co2 = self._word(0)
        # 175 * raw / 65535 in tenths, kept below 2**30: small ints, no heap.
        self.t10 = (1750 * self._word(1) + 32767) // 65535 - 450
        self.rh10 = (1000 * self._word(2) + 32767) // 65535
        return True
