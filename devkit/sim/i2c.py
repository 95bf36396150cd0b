"""A simulated I2C bus with byte-level models of the kit chips.

`SimI2C` has the methods of MicroPython's `machine.I2C` that the firmware
uses (scan, writeto, readfrom_into, readfrom_mem_into,
readfrom_mem, writeto_mem) and records every transfer in `log`, so a test can
assert frames. A missing or refusing device raises OSError as the ESP32 port
does: ENODEV for an address nobody acknowledges, ETIMEDOUT for a device that
hangs. Device models answer what the datasheets say the chips answer:

- `SCD4xModel` (0x62): 16-bit commands, words with CRC-8, a measurement
  every 5 s in periodic mode, NACK on a read with nothing to read;
- `BME280Model` (0x76/0x77): registers with a real calibration set, raw values
  found so that Bosch's floating-point formulas give the chosen T, P, RH
  (so the firmware's integer formulas are checked, not echoed);
- `AHT20Model` (0x38): status, calibration command, 80 ms conversion with the
  busy bit, CRC;
- `BH1750Model` (0x23/0x5C): opcodes, power, continuous and one-time modes;
- `EEPROM24C02` (0x50): 256 bytes, 8-byte page writes that wrap within the
  page, a 5 ms write cycle during which it acknowledges nothing.

Fault injection per device: `fault = "nack"` (still seen by a scan, every
transfer times out), `"gone"` (not seen at all), `"crc"` (corrupt CRC),
`"busy"` (AHT20 stays busy, SCD4x never has data). Kits come and go as a
group: `bus.attach(SimKit("air-co2-01"))` (or `SimKit("air-co2", 1)`),
`bus.detach()`.
"""

from __future__ import annotations

import errno
import time
from collections import deque
from collections.abc import Callable

from firmware.crc8 import crc8
from hardware.kits import catalogue_kit, id_image, kit_type, load_catalogue, make_id


def _nack() -> OSError:
    return OSError(errno.ENODEV, "NACK")


class Device:
    name = "device"

    def __init__(self, address: int) -> None:
        self.address = address
        self.fault: str | None = None
        self.bus: SimI2C | None = None

    def now(self) -> int:
        return self.bus.now() if self.bus is not None else 0

    def acks(self) -> bool:
        """Does the device acknowledge its address (what a scan sees)?"""
        return self.fault != "gone"

    def write(self, data: bytes) -> None:  # one write transfer, after the address
        raise _nack()

    def read(self, n: int) -> bytes:  # one read transfer
        raise _nack()


def _words(*words: int) -> bytes:
    out = bytearray()
    for w in words:
        pair = bytes([w >> 8 & 0xFF, w & 0xFF])
        out += pair + bytes([crc8(pair)])
    return bytes(out)


class SCD4xModel(Device):
    name = "scd4x"
    INTERVAL_MS = 5000

    def __init__(self, address: int = 0x62, co2: int = 600, t: float = 21.0, rh: float = 45.0) -> None:
        super().__init__(address)
        self.co2, self.t, self.rh = co2, t, rh
        self.periodic = False
        self._since = 0
        self._taken = 0  # measurements read so far in this periodic run
        self._answer: bytes | None = None
        self.commands: list[int] = []

    def _available(self) -> int:
        if not self.periodic or self.fault == "busy":
            return 0
        return (self.now() - self._since) // self.INTERVAL_MS

    def write(self, data: bytes) -> None:
        if not data:
            return
        if len(data) < 2:
            raise _nack()
        cmd = data[0] << 8 | data[1]
        self.commands.append(cmd)
        self._answer = None
        if cmd == 0x21B1:  # start_periodic_measurement
            if self.periodic:
                raise _nack()  # only a few commands are accepted while measuring
            self.periodic, self._since, self._taken = True, self.now(), 0
        elif cmd == 0x3F86:  # stop_periodic_measurement
            self.periodic = False
        elif cmd == 0xE4B8:  # get_data_ready_status: low 11 bits != 0 when ready
            self._answer = _words(0x8006 if self._available() > self._taken else 0x8000)
        elif cmd == 0xEC05:  # read_measurement
            if self._available() > self._taken:
                self._taken = self._available()
                t_raw = round((self.t + 45) * 65535 / 175)
                rh_raw = round(self.rh * 65535 / 100)
                self._answer = _words(int(self.co2), t_raw, rh_raw)
        elif cmd == 0x3682 and not self.periodic:  # get_serial_number
            self._answer = _words(0x1234, 0x5678, 0x9ABC)
        else:
            raise _nack()
        if self._answer is not None and self.fault == "crc":
            self._answer = bytes(self._answer[:-1]) + bytes([self._answer[-1] ^ 0xFF])

    def read(self, n: int) -> bytes:
        if self._answer is None:
            raise _nack()  # no data: the sensor NACKs the read
        data, self._answer = self._answer[:n], None
        return data


class AHT20Model(Device):
    name = "aht20"
    CONVERSION_MS = 80

    def __init__(self, address: int = 0x38, t: float = 21.0, rh: float = 45.0, calibrated: bool = True) -> None:
        super().__init__(address)
        self.t, self.rh = t, rh
        self.calibrated = calibrated
        self._busy_until = -1
        self._data = bytes(5)

    def _status(self) -> int:
        busy = self.fault == "busy" or self.now() < self._busy_until
        return (0x80 if busy else 0) | (0x08 if self.calibrated else 0) | 0x10

    def write(self, data: bytes) -> None:
        if data == b"\xbe\x08\x00":
            self.calibrated = True
        elif data == b"\xac\x33\x00":
            self._busy_until = self.now() + self.CONVERSION_MS
            rh = min(round(self.rh / 100 * (1 << 20)), (1 << 20) - 1)
            t = min(round((self.t + 50) / 200 * (1 << 20)), (1 << 20) - 1)
            self._data = bytes([rh >> 12, rh >> 4 & 0xFF, (rh & 0x0F) << 4 | t >> 16, t >> 8 & 0xFF, t & 0xFF])
        elif data == b"\xba":  # soft reset
            self._busy_until = -1
        elif data:
            raise _nack()

    def read(self, n: int) -> bytes:
        frame = bytearray([self._status()]) + self._data
        frame.append(crc8(frame) ^ (0xFF if self.fault == "crc" else 0))
        return bytes(frame[:n])


class BH1750Model(Device):
    name = "bh1750"

    def __init__(self, address: int = 0x23, lux: float = 300.0) -> None:
        super().__init__(address)
        self.lux = lux
        self.powered = False
        self.mode: int | None = None
        self.mtreg = 69
        self._mode_at = 0
        self._value = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        op = data[0]
        if len(data) != 1:
            raise _nack()
        if op == 0x00:
            self.powered = False
        elif op == 0x01:
            self.powered = True
        elif op == 0x07:
            if self.powered:  # reset clears the data register, only when powered
                self._value = 0
        elif op in (0x10, 0x11, 0x13, 0x20, 0x21, 0x23):
            self.powered, self.mode, self._mode_at = True, op, self.now()
        elif 0x40 <= op <= 0x47:
            self.mtreg = (op & 0x07) << 5 | (self.mtreg & 0x1F)
        elif 0x60 <= op <= 0x7F:
            self.mtreg = (self.mtreg & 0xE0) | (op & 0x1F)
        else:
            raise _nack()

    def read(self, n: int) -> bytes:
        if self.mode is not None and self.powered:
            low_res = self.mode & 0x03 == 0x03
            if self.now() - self._mode_at >= (24 if low_res else 180):
                raw = self.lux * 1.2 * self.mtreg / 69 * (2 if self.mode & 0x0F == 0x01 else 1)
                self._value = min(int(raw) // 4 * 4 if low_res else round(raw), 0xFFFF)
                if self.mode >= 0x20:  # one-time: back to power down
                    self.powered, self.mode = False, None
        return bytes([self._value >> 8, self._value & 0xFF])[:n]


# A real BME280's calibration: T and P are the BMP280 datasheet's worked
# example (section 3.12), H the values of a BME280 on a breakout board.
BME280_CALIBRATION = {
    "T1": 27504, "T2": 26435, "T3": -1000,
    "P1": 36477, "P2": -10685, "P3": 3024, "P4": 2855, "P5": 140, "P6": -7, "P7": 15500, "P8": -14600, "P9": 6000,
    "H1": 75, "H2": 362, "H3": 0, "H4": 313, "H5": 50, "H6": 30,
}


class BME280Model(Device):
    name = "bme280"

    def __init__(self, address: int = 0x76, t: float = 21.0, p_hpa: float = 1013.2, rh: float = 45.0,
                 chip_id: int = 0x60, calibration: dict | None = None) -> None:
        super().__init__(address)
        self.t, self.p_hpa, self.rh = t, p_hpa, rh
        self.chip_id = chip_id
        self.cal = dict(calibration or BME280_CALIBRATION)
        self.regs = bytearray(256)
        self._pointer = 0
        self._reset()

    def _reset(self) -> None:
        c, r = self.cal, self.regs
        r[:] = bytes(256)
        r[0xD0] = self.chip_id
        for i, key in enumerate(["T1", "T2", "T3", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"]):
            r[0x88 + 2 * i:0x8A + 2 * i] = (c[key] & 0xFFFF).to_bytes(2, "little")
        if self.chip_id == 0x60:
            r[0xA1] = c["H1"]
            r[0xE1:0xE3] = (c["H2"] & 0xFFFF).to_bytes(2, "little")
            r[0xE3] = c["H3"]
            r[0xE4] = c["H4"] >> 4 & 0xFF
            r[0xE5] = (c["H4"] & 0x0F) | (c["H5"] & 0x0F) << 4
            r[0xE6] = c["H5"] >> 4 & 0xFF
            r[0xE7] = c["H6"] & 0xFF
        r[0xF7:0xFF] = b"\x80\x00\x00\x80\x00\x00\x80\x00"  # "skipped" until a measurement

    # Bosch's floating-point formulas (BME280 datasheet 8.1): the reference
    # the raw values are found against.
    def _t_fine(self, adc_t: int) -> float:
        c = self.cal
        var1 = (adc_t / 16384.0 - c["T1"] / 1024.0) * c["T2"]
        var2 = (adc_t / 131072.0 - c["T1"] / 8192.0) ** 2 * c["T3"]
        return var1 + var2

    def _pressure(self, adc_p: int, t_fine: float) -> float:
        c = self.cal
        var1 = t_fine / 2.0 - 64000.0
        var2 = var1 * var1 * c["P6"] / 32768.0
        var2 = var2 + var1 * c["P5"] * 2.0
        var2 = var2 / 4.0 + c["P4"] * 65536.0
        var1 = (c["P3"] * var1 * var1 / 524288.0 + c["P2"] * var1) / 524288.0
        var1 = (1.0 + var1 / 32768.0) * c["P1"]
        p = 1048576.0 - adc_p
        p = (p - var2 / 4096.0) * 6250.0 / var1
        return p + (c["P9"] * p * p / 2147483648.0 + p * c["P8"] / 32768.0 + c["P7"]) / 16.0

    def _humidity(self, adc_h: int, t_fine: float) -> float:
        c = self.cal
        h = t_fine - 76800.0
        h = (adc_h - (c["H4"] * 64.0 + c["H5"] / 16384.0 * h)) * (
            c["H2"] / 65536.0 * (1.0 + c["H6"] / 67108864.0 * h * (1.0 + c["H3"] / 67108864.0 * h)))
        return h * (1.0 - c["H1"] * h / 524288.0)

    @staticmethod
    def _solve(f: Callable[[int], float], target: float, hi: int, rising: bool) -> int:
        lo = 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (f(mid) < target) == rising:
                lo = mid
            else:
                hi = mid
        return hi

    def raw(self) -> tuple[int, int, int]:
        """(adc_T, adc_P, adc_H) that the datasheet formulas turn into t, p, rh."""
        adc_t = self._solve(lambda a: self._t_fine(a) / 5120.0, self.t, 1 << 20, True)
        t_fine = int(self._t_fine(adc_t))
        adc_p = self._solve(lambda a: self._pressure(a, t_fine), self.p_hpa * 100, 1 << 20, False)
        adc_h = self._solve(lambda a: self._humidity(a, t_fine), self.rh, 1 << 16, True)
        return adc_t, adc_p, adc_h

    def _measure(self) -> None:
        adc_t, adc_p, adc_h = self.raw()
        meas, hum = self.regs[0xF4], self.regs[0xF2]
        if not meas >> 5:
            adc_t = 0x80000
        if not meas >> 2 & 7:
            adc_p = 0x80000
        r = self.regs
        r[0xF7:0xFD] = bytes([adc_p >> 12, adc_p >> 4 & 0xFF, (adc_p & 0xF) << 4,
                              adc_t >> 12, adc_t >> 4 & 0xFF, (adc_t & 0xF) << 4])
        if self.chip_id == 0x60:
            if not hum & 7:
                adc_h = 0x8000
            r[0xFD:0xFF] = bytes([adc_h >> 8, adc_h & 0xFF])
        else:
            r[0xFD:0xFF] = b"\x00\x00"

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pointer = data[0]
        pairs = [(data[0], data[1])] if len(data) > 1 else []
        rest = data[2:]
        pairs += [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
        for reg, value in pairs:
            if reg == 0xE0:
                if value == 0xB6:
                    self._reset()
            elif reg in (0xF2, 0xF4, 0xF5):
                self.regs[reg] = value

    def read(self, n: int) -> bytes:
        if self.regs[0xF4] & 0x03:  # normal or forced mode: a measurement is there
            self._measure()
            if self.regs[0xF4] & 0x03 != 0x03:
                self.regs[0xF4] &= 0xFC  # forced mode returns to sleep
        out = bytes(self.regs[(self._pointer + i) & 0xFF] for i in range(n))
        self._pointer = (self._pointer + n) & 0xFF
        return out


class EEPROM24C02(Device):
    name = "24c02"
    PAGE = 8
    WRITE_CYCLE_MS = 5

    def __init__(self, address: int = 0x50, image: bytes | None = None) -> None:
        super().__init__(address)
        self.mem = bytearray(image if image is not None else b"\xff" * 256)
        assert len(self.mem) == 256, "a 24C02 holds 256 bytes"
        self._pointer = 0
        self._busy_until = -1

    def acks(self) -> bool:  # nothing is acknowledged during a write cycle
        return super().acks() and self.now() >= self._busy_until

    def write(self, data: bytes) -> None:
        if not data:
            return  # acknowledge polling
        self._pointer = data[0]
        payload = data[1:]
        if payload:
            page = self._pointer & ~(self.PAGE - 1)
            for i, b in enumerate(payload):
                self.mem[page | (self._pointer + i) % self.PAGE] = b
            self._pointer = page | (self._pointer + len(payload)) % self.PAGE
            self._busy_until = self.now() + self.WRITE_CYCLE_MS

    def read(self, n: int) -> bytes:
        out = bytes(self.mem[(self._pointer + i) & 0xFF] for i in range(n))
        self._pointer = (self._pointer + n) & 0xFF
        return out


MODELS = {"scd4x": SCD4xModel, "bme280": BME280Model, "aht20": AHT20Model, "bh1750": BH1750Model}


class SimKit:
    """A kit from hardware/kits/catalogue.json by its id, "air-co2-03" (or
    its type and number, `SimKit("air-co2", 3)`): the sensors of its type at
    their first catalogue address (each as an attribute named after it) and
    its identity EEPROM holding the id: `eeprom` "ok", "blank", "corrupt", or
    None for a kit without one. `sensors` overrides the type's list."""

    def __init__(self, kit_id: str, number: int | None = None, *, eeprom: str | None = "ok",
                 sensors: list[str] | None = None) -> None:
        catalogue = load_catalogue()
        if number is not None:
            kit_id = make_id(kit_id, number)
        self.id = kit_id
        self.type = kit_type(kit_id)
        names = sensors if sensors is not None else catalogue_kit(kit_id, catalogue)["sensors"]
        self.devices: list[Device] = []
        for name in names:
            device = MODELS[name](address=catalogue["sensors"][name]["addresses"][0])
            setattr(self, name, device)
            self.devices.append(device)
        self.eeprom: EEPROM24C02 | None = None
        if eeprom is not None:
            image = bytearray(b"\xff" * 256 if eeprom == "blank" else id_image(kit_id))
            if eeprom == "corrupt":
                image[5] ^= 0x01  # one flipped bit in the name
            self.eeprom = EEPROM24C02(image=bytes(image))
            self.devices.append(self.eeprom)


class SimI2C:
    def __init__(self, clock: Callable[[], int] | None = None, log_size: int = 1000) -> None:
        self.clock = clock or (lambda: int(time.monotonic() * 1000))
        self.devices: dict[int, Device] = {}
        self.kit: SimKit | None = None
        self.log: deque[tuple[str, int, bytes]] = deque(maxlen=log_size)

    def now(self) -> int:
        return self.clock()

    # -- the world --------------------------------------------------------
    def add(self, device: Device) -> Device:
        if device.address in self.devices:
            raise ValueError(f"address 0x{device.address:02x} already taken on the bus")
        device.bus = self
        self.devices[device.address] = device
        return device

    def remove(self, device: Device) -> None:
        if self.devices.get(device.address) is device:
            del self.devices[device.address]
            device.bus = None

    def attach(self, kit: SimKit) -> SimKit:
        """Plug a kit into the Qwiic socket."""
        if self.kit is not None:
            self.detach()
        for device in kit.devices:
            self.add(device)
        self.kit = kit
        return kit

    def detach(self) -> None:
        if self.kit is not None:
            for device in self.kit.devices:
                self.remove(device)
            self.kit = None

    # -- machine.I2C ------------------------------------------------------
    def _device(self, addr: int) -> Device:
        device = self.devices.get(addr)
        if device is None or not device.acks():
            raise _nack()
        if device.fault == "nack":
            raise OSError(errno.ETIMEDOUT, "timed out")
        return device

    def scan(self) -> list[int]:
        return sorted(a for a, d in self.devices.items() if 0x08 <= a <= 0x77 and d.acks())

    def writeto(self, addr: int, buf, stop: bool = True) -> int:
        data = bytes(buf)
        self.log.append(("w", addr, data))
        self._device(addr).write(data)
        return len(data) + 1

    def readfrom_into(self, addr: int, buf, stop: bool = True) -> None:
        data = self._device(addr).read(len(buf))
        self.log.append(("r", addr, data))
        buf[:len(data)] = data

    def readfrom_mem_into(self, addr: int, memaddr: int, buf, *, addrsize: int = 8) -> None:
        self.writeto(addr, bytes([memaddr]), False)
        self.readfrom_into(addr, buf)

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, *, addrsize: int = 8) -> bytes:
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)

    def writeto_mem(self, addr: int, memaddr: int, buf, *, addrsize: int = 8) -> None:
        self.writeto(addr, bytes([memaddr]) + bytes(buf))
