# Connected-object kits: a box of I2C sensors that a teacher plugs into the
# board's Qwiic/STEMMA QT socket (docs/kits.md). One cheap bus scan every few
# seconds notices a kit arriving or leaving; on arrival the kit's identity
# EEPROM says which kit it is and probing the known addresses says which
# sensors answer. Driver modules are imported only for sensors present: a
# driver a kit lacks costs no heap. Readings come in a measurement cycle
# (read_s) in two calls 150 ms apart, so no call waits more than ~1 ms and
# the AHT20's 80 ms conversion happens between them.
#
# Pure: the bus is injected (machine.I2C or hardware/sim/i2c.py), events go
# out through `emit(kind, data)` (Events.emit), time comes in as `now`, the
# board's uptime in ms. A sensor failure never raises out of here: it is
# reported once with "kit.fault", dropped from the readings and restarted
# with backoff until it answers again.
from .compat import const
from .crc8 import crc8

# Known addresses, in order of precedence when two sensors give the same
# quantity: the BME280's and AHT20's temperature before the SCD4x's, which
# its own heating lifts. hardware/kits/catalogue.json lists the same.
PROBES = ((0x76, "bme280"), (0x77, "bme280"), (0x38, "aht20"), (0x62, "scd4x"), (0x23, "bh1750"), (0x5C, "bh1750"))
EEPROM = const(0x50)
_EEPROM_BIT = const(0x40)  # after the PROBES bits

# Identity record at address 0 of the 24C02: b"PK", version, n, n ASCII
# characters [a-z0-9-], then CRC-8 (crc8.py) of all the bytes before it.
ID_VERSION = const(1)
ID_MAX = const(32)
_ID_BUF = const(37)  # 4 + ID_MAX + 1

_SETTLE_SCAN_MS = const(500)  # a plug half in: look again soon
_SETTLE_READ_MS = const(150)  # measure() to read(): AHT20 needs 80 ms
_FIRST_READ_MS = const(6000)  # the SCD4x's first value comes 5 s after start
_BACKOFF_MAX_MS = const(600000)
_STALE_MAX = const(3)  # cycles without a fresh value before it is a fault

# slot fields: one small list per sensor rather than a class (heap)
_DRV = const(0)
_STARTED = const(1)
_RETRY_AT = const(2)
_BACKOFF = const(3)
_FAULT = const(4)
_STALE = const(5)
_TICK_MS = const(100)

# driver attribute, readings key, form: 0 as is, 1 one decimal, 2 rounded
# to a whole number (the sensors' accuracy: rh +-2 %, lux +-20 %)
_FIELDS = (("co2", "co2", 0), ("t10", "t", 1), ("p10", "p", 1), ("rh10", "rh", 2), ("lux10", "lux", 2))


def parse_id(buf):
    """(kit id, None), or (None, reason) for a blank or damaged record."""
    if buf[0] == 0xFF and buf[1] == 0xFF and buf[2] == 0xFF:
        return None, "blank"
    if buf[0] != 0x50 or buf[1] != 0x4B:  # b"PK"
        return None, "bad_magic"
    if buf[2] != ID_VERSION:
        return None, "bad_version"
    n = buf[3]
    if not 1 <= n <= ID_MAX or 4 + n >= len(buf):
        return None, "bad_length"
    if crc8(buf, 0, 4 + n) != buf[4 + n]:
        return None, "bad_crc"
    for i in range(4, 4 + n):
        c = buf[i]
        if not (0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c == 0x2D):
            return None, "bad_name"
    return bytes(buf[4:4 + n]).decode(), None


def _driver(name, i2c, address):
    if name == "scd4x":
        from . import scd4x

        return scd4x.SCD4x(i2c, address)
    if name == "bme280":
        from . import bme280

        return bme280.BME280(i2c, address)
    if name == "aht20":
        from . import aht20

        return aht20.AHT20(i2c, address)
    from . import bh1750

    return bh1750.BH1750(i2c, address)


def _describe(e):
    if isinstance(e, OSError):  # ENODEV 19: no answer; ETIMEDOUT 110: hung
        return "i2c errno %s" % (e.args[0] if e.args else "?")
    return str(e)  # "crc", "chip id 0x..."


class Kit:
    def __init__(self, i2c, emit, co2_alert_ppm=1000, hysteresis_ppm=100, read_s=30, scan_s=3, retry_s=30):
        self.i2c = i2c
        self.emit = emit
        self.co2_on = co2_alert_ppm
        self.co2_off = co2_alert_ppm - hysteresis_ppm
        self.read_ms = read_s * 1000
        self.scan_ms = scan_s * 1000
        self.retry_ms = retry_s * 1000
        self.kit = None  # kit id, "unknown", or None when no kit is plugged
        self.reason = None  # why an attached kit is "unknown"
        self.sensors = []
        self.readings = {}
        self.air_alert = False  # the LED's "air the room" hint
        self._slots = []
        self._mask = 0  # addresses of the attached kit
        self._seen = 0  # addresses at the last scan
        self._unsettled = False  # the last scan differed from the one before
        self._next_scan = 0
        self._next_measure = 0
        self._read_at = -1

    # -- plug and unplug --------------------------------------------------
    def scan(self, now):
        """Look for a kit arriving or leaving; a no-op between scans."""
        if now < self._next_scan:
            return
        self._next_scan = now + self.scan_ms
        try:
            found = self.i2c.scan()
        except OSError:
            return
        mask = _EEPROM_BIT if EEPROM in found else 0
        for i in range(len(PROBES)):
            if PROBES[i][0] in found:
                mask |= 1 << i
        # Act on what two scans in a row agree on: contacts bounce while a
        # plug goes in.
        seen, self._seen = self._seen, mask
        self._unsettled = mask != seen
        if self._unsettled:
            self._next_scan = now + _SETTLE_SCAN_MS
            return
        if mask == self._mask:
            return
        # Fewer addresses than attached is a sensor in trouble, which the
        # reads report; new ones mean another kit.
        if self._mask and (not mask or mask & ~self._mask):
            self._detach()
        if mask and not self._mask:
            self._attach(mask, now)

    def _attach(self, mask, now):
        self._mask = mask
        kit = None
        if mask & _EEPROM_BIT:
            buf = bytearray(_ID_BUF)
            try:
                self.i2c.readfrom_mem_into(EEPROM, 0, buf)
                kit, self.reason = parse_id(buf)
            except OSError:
                self.reason = "read_error"
        else:
            self.reason = "no_eeprom"
        self.kit = kit or "unknown"
        self._slots = [
            [_driver(PROBES[i][1], self.i2c, PROBES[i][0]), False, now, self.retry_ms, False, 0]
            for i in range(len(PROBES))
            if mask >> i & 1
        ]
        errors = [(slot, self._start(slot)) for slot in self._slots]
        # names after start(): a BME280 socket may hold a BMP280
        self.sensors = [slot[_DRV].name for slot in self._slots]
        data = {"kit": self.kit, "sensors": self.sensors}
        if kit is None:
            data["reason"] = self.reason
        self.emit("kit.attached", data)
        for slot, error in errors:
            if error:
                self._fault(slot, now, error)
        self._next_measure = now + _FIRST_READ_MS
        self._read_at = -1

    def _detach(self):
        kit = self.kit
        self.kit = self.reason = None
        self._slots = []
        self.sensors = []
        self._mask = 0
        co2 = self.readings.get("co2", 0)
        self.readings = {}
        self.emit("kit.detached", {"kit": kit})
        if self.air_alert:
            self.air_alert = False
            self.emit("air.alert", {"co2": co2, "on": False, "reason": "detached"})

    # -- readings ---------------------------------------------------------
    def read(self, now):
        """Run the measurement cycle; returns the latest readings: co2 (ppm),
        t (degC, one decimal), rh (%), p (hPa, one decimal), lux."""
        if self._slots and self._read_at < 0 and now >= self._next_measure:
            # A scan right before the cycle: a kit being pulled out is seen
            # as leaving, not as every sensor failing at once.
            self._next_scan = now
            self.scan(now)
        slots = self._slots
        if not slots or self._unsettled:
            return self.readings
        if self._read_at >= 0:
            if now >= self._read_at:
                self._read_at = -1
                for slot in slots:
                    self._read(slot, now)
                self.readings = self._collect()
                self._check_air()
        elif now >= self._next_measure:
            self._next_measure = now + self.read_ms
            for slot in slots:
                if slot[_STARTED]:
                    try:
                        slot[_DRV].measure()
                    except (OSError, ValueError) as e:
                        self._fault(slot, now, _describe(e))
                elif now >= slot[_RETRY_AT]:
                    error = self._start(slot)
                    if error:
                        self._fault(slot, now, error)
            self._read_at = now + _SETTLE_READ_MS
        return self.readings

    def _start(self, slot):
        """None once started, else what went wrong."""
        try:
            slot[_DRV].start()
        except (OSError, ValueError) as e:
            return _describe(e)
        slot[_STARTED] = True
        return None

    def _read(self, slot, now):
        if not slot[_STARTED]:
            return
        try:
            if slot[_DRV].read():
                slot[_STALE] = 0
                slot[_FAULT] = False  # recovered
                slot[_BACKOFF] = self.retry_ms
                return
        except (OSError, ValueError) as e:
            self._fault(slot, now, _describe(e))
            return
        slot[_STALE] += 1
        if slot[_STALE] >= _STALE_MAX:
            self._fault(slot, now, "no data")

    def _fault(self, slot, now, error):
        """Report once, drop its values, restart it later (backoff)."""
        slot[_STARTED] = False
        slot[_STALE] = 0
        if not slot[_FAULT]:
            slot[_FAULT] = True
            self.emit("kit.fault", {"sensor": slot[_DRV].name, "error": error})
        slot[_RETRY_AT] = now + slot[_BACKOFF]
        slot[_BACKOFF] = min(slot[_BACKOFF] * 2, _BACKOFF_MAX_MS)

    def _collect(self):
        out = {}
        for slot in self._slots:
            if not slot[_FAULT]:
                for attr, key, form in _FIELDS:
                    v = getattr(slot[_DRV], attr, None)
                    if v is not None and key not in out:
                        out[key] = v / 10 if form == 1 else ((v + 5) // 10 if form == 2 else v)
        return out

    def _check_air(self):
        co2 = self.readings.get("co2")
        if co2 is None:
            return  # no CO2 value: the hint stays as it was
        if self.air_alert:
            if co2 >= self.co2_off:
                return
        elif co2 < self.co2_on:
            return
        self.air_alert = not self.air_alert
        self.emit("air.alert", {"co2": co2, "on": self.air_alert})

    # -- the task ---------------------------------------------------------
    async def run(self, sleep_ms, uptime_ms):
        """The app's task: `sleep_ms` an async sleep in ms, `uptime_ms` the
        board clock (Clock.uptime_ms)."""
        while True:
            now = uptime_ms()
            self.scan(now)
            self.read(now)
            await sleep_ms(_TICK_MS)
