# Connected-object kits: a box of I2C sensors that a teacher plugs into the
# board's Qwiic/STEMMA QT socket (docs/kits.md). One cheap bus scan every few
# seconds notices a kit arriving or leaving; on arrival the kit's identity
# EEPROM says which kit it is and probing the known addresses says which
# sensors answer. Driver modules are imported only for sensors present: a
# driver a kit lacks costs no heap. Readings come in a measurement cycle
# (read_s) in two calls 150 ms apart, so no call waits more than ~1 ms and
# the AHT20's 80 ms conversion happens between them.
#
# Pure: the bus is injected (machine.I2C or devkit/sim/i2c.py), events go
# out through `emit(kind, data)` (Events.emit), time comes in as `now`, the
# board's uptime in ms. A sensor failure never raises out of here: it is
# reported once with "kit.fault", dropped from the readings and restarted
# with backoff until it answers again.
#
# Heap: this module stays loaded on a board with ~110 KB shared by
# everything, so it is written small: few functions (each costs its code
# object and bytecode), few distinct names (each costs a qstr), constants as
# const() with a leading underscore (not stored at all).
from .compat import const
from .crc8 import crc8

# Known sensor addresses, in order of precedence when two sensors give the
# same quantity: the BME280's (0x76, 0x77) and AHT20's (0x38) temperature
# before the SCD4x's (0x62), which its own heating lifts; then the BH1750
# (0x23, 0x5C). Bytes rather than (address, name) pairs: one small object.
# The driver for each address is chosen in scan(); hardware/kits (SENSOR_AT)
# and hardware/kits/catalogue.json list the same, tests/test_kits.py checks.
PROBES = b"\x76\x77\x38\x62\x23\x5c"
_EEPROM = const(0x50)  # the identity EEPROM, a 24C02
_EEPROM_BIT = const(0x40)  # after the PROBES bits

# Identity record at address 0 of the 24C02: b"PK", version, n, n ASCII
# characters [a-z0-9-], then CRC-8 (crc8.py) of all the bytes before it.
# hardware/kits writes it (same values there; tests/test_kits.py round-trips).
_ID_VERSION = const(1)
_ID_MAX = const(32)
_ID_BUF = const(37)  # 4 + _ID_MAX + 1

_SETTLE_SCAN_MS = const(500)  # a plug half in: look again soon
_ID_CHECK_MS = const(30000)  # the attached kit's id read again
_SETTLE_READ_MS = const(150)  # measure() to read(): AHT20 needs 80 ms
_FIRST_READ_MS = const(6000)  # the SCD4x's first value comes 5 s after start
_BACKOFF_MAX_MS = const(600000)
_STALE_MAX = const(3)  # cycles without a fresh value before it is a fault
_TICK_MS = const(100)

# slot fields: one small list per sensor rather than a class (heap)
_DRV = const(0)
_STARTED = const(1)
_RETRY_AT = const(2)
_BACKOFF = const(3)
_FAULT = const(4)
_STALE = const(5)

# Pairs of driver attribute and readings key. Form by position: co2 as is,
# t and p to one decimal, rh and lux rounded to a whole number (the
# sensors' accuracy: rh +-2 %, lux +-20 %). A flat tuple: one object.
_FIELDS = const(("co2", "co2", "t10", "t", "p10", "p", "rh10", "rh", "lux10", "lux"))


def parse_id(buf):
    """(kit id, None), or (None, reason) for a blank or damaged record."""
    if buf[0] & buf[1] & buf[2] == 0xFF:
        return None, "blank"
    if buf[0] << 8 | buf[1] != 0x504B:  # b"PK"
        return None, "bad_magic"
    if buf[2] != _ID_VERSION:
        return None, "bad_version"
    n = buf[3]
    if not 0 < n <= _ID_MAX or 4 + n >= len(buf):
        return None, "bad_length"
    if crc8(buf, 0, 4 + n) != buf[4 + n]:
        return None, "bad_crc"
    name = bytes(buf[4:4 + n])
    for c in name:
        if not (0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c == 0x2D):
            return None, "bad_name"
    return name.decode(), None


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
        self._mask = self._seen = 0  # addresses of the attached kit, at the last scan
        self._unsettled = False  # the last scan differed from the one before
        self._next_scan = self._next_measure = self._next_id = 0
        self._read_at = -1  # when measure() was done: the read() half is due

    def scan(self, now):
        """Look for a kit arriving or leaving; a no-op between scans."""
        if now < self._next_scan:
            return
        self._next_scan = now + self.scan_ms
        try:
            found = self.i2c.scan()
        except OSError:
            return
        mask = _EEPROM_BIT if _EEPROM in found else 0
        for i in range(6):
            if PROBES[i] in found:
                mask |= 1 << i
        # Act on what two scans in a row agree on: contacts bounce while a
        # plug goes in.
        seen, self._seen = self._seen, mask
        self._unsettled = mask != seen
        if self._unsettled:
            self._next_scan = now + _SETTLE_SCAN_MS
            return
        old = self._mask
        swapped = False
        if mask == old:
            if not old & _EEPROM_BIT or now < self._next_id:
                return
            # The same addresses may be another kit of the same type,
            # swapped between two scans: its EEPROM says (every 30 s).
            self._next_id = now + _ID_CHECK_MS
            kit, reason = self._read_id()
            # Only a valid other id, or a blank record, is another kit: a
            # damaged read (a bus glitch, a bad CRC) is no reason to detach.
            if kit == self.kit or not (kit or reason == "blank") or (not kit and self.kit == "unknown"):
                return
            swapped = True
        # Fewer addresses than attached is a sensor in trouble, which the
        # reads report; new ones mean another kit: detach, then attach.
        if old and (swapped or not mask or mask & ~old):
            kit = self.kit
            self.kit = self.reason = None
            self._slots = []
            self.sensors = []
            self._mask = old = 0
            co2 = self.readings.get("co2", 0)
            self.readings = {}
            self.emit("kit.detached", {"kit": kit})
            if self.air_alert:
                self.air_alert = False
                self.emit("air.alert", {"co2": co2, "on": False, "reason": "detached"})
        if not mask or old:
            return
        self._mask = mask
        i2c = self.i2c
        kit, self.reason = self._read_id() if mask & _EEPROM_BIT else (None, "no_eeprom")
        self.kit = kit or "unknown"
        self._next_id = now + _ID_CHECK_MS
        slots = self._slots = []
        sensors = self.sensors = []
        faults = []
        for i in range(6):
            if mask >> i & 1:
                # A driver is imported here, for a sensor that answers.
                a = PROBES[i]
                if a == 0x62:
                    from .scd4x import SCD4x as cls
                elif a > 0x70:
                    from .bme280 import BME280 as cls
                elif a == 0x38:
                    from .aht20 import AHT20 as cls
                else:
                    from .bh1750 import BH1750 as cls
                slot = [cls(i2c, a), False, now, self.retry_ms, False, 0]
                slots.append(slot)
                faults.append(self._step(slot, now, -1))  # start()
                sensors.append(slot[_DRV].name)  # after start(): a BME280 socket may hold a BMP280
        data = {"kit": self.kit, "sensors": sensors}
        if self.kit == "unknown":
            data["reason"] = self.reason
        self.emit("kit.attached", data)
        for fault in faults:
            if fault:
                self.emit("kit.fault", fault)
        self._next_measure = now + _FIRST_READ_MS
        self._read_at = -1

    def _read_id(self):
        """(kit id, None), or (None, why): the record blank or damaged, or
        "read_error" when the EEPROM did not answer."""
        buf = bytearray(_ID_BUF)
        try:
            self.i2c.readfrom_mem_into(_EEPROM, 0, buf)
        except OSError:
            return None, "read_error"
        return parse_id(buf)

    def read(self, now):
        """Run the measurement cycle; returns the latest readings: co2 (ppm),
        t (degC, one decimal), rh (%), p (hPa, one decimal), lux."""
        at = self._read_at
        if at < 0:
            if not self._slots or now < self._next_measure:
                return self.readings
            # A scan right before the cycle: a kit being pulled out is seen
            # as leaving, not as every sensor failing at once (unless scan()
            # has just looked, at this very tick).
            if self._next_scan - now not in (self.scan_ms, _SETTLE_SCAN_MS):
                self._next_scan = now
                self.scan(now)
        if not self._slots or self._unsettled or now < at:
            return self.readings
        if at < 0:  # first half: measure(), or start() a sensor due for a retry
            self._next_measure = now + self.read_ms
            self._read_at = now + _SETTLE_READ_MS
        else:  # second half: read()
            self._read_at = -1
        for slot in self._slots:
            fault = self._step(slot, now, at)
            if fault:
                self.emit("kit.fault", fault)
        if at < 0:
            return self.readings
        out = {}
        for slot in self._slots:
            if not slot[_FAULT]:
                for i in range(0, 10, 2):
                    v = getattr(slot[_DRV], _FIELDS[i], None)
                    key = _FIELDS[i + 1]
                    if v is not None and key not in out:
                        out[key] = v if i == 0 else (v / 10 if i < 6 else (v + 5) // 10)
        self.readings = out
        # The "air the room" hint, with hysteresis; without a CO2 value it
        # stays as it was.
        co2 = out.get("co2")
        if co2 is not None and (co2 < self.co2_off if self.air_alert else co2 >= self.co2_on):
            self.air_alert = not self.air_alert
            self.emit("air.alert", {"co2": co2, "on": self.air_alert})
        return out

    def _step(self, slot, now, at):
        """One driver call: start() when the sensor is due for a (re)start,
        else measure() (at < 0) or read() (at >= 0). A failure drops its
        values and restarts it later with backoff; returns the kit.fault
        data the first time, so that it is reported once."""
        d = slot[_DRV]
        try:
            if not slot[_STARTED]:
                if at < 0 and now >= slot[_RETRY_AT]:
                    d.start()
                    slot[_STARTED] = True
                return None
            if at < 0:
                d.measure()
                return None
            if d.read():
                slot[_STALE] = 0
                slot[_FAULT] = False  # recovered
                slot[_BACKOFF] = self.retry_ms
                return None
            slot[_STALE] += 1
            if slot[_STALE] < _STALE_MAX:
                return None
            error = "no data"
        except (OSError, ValueError) as e:
            # OSError: ENODEV 19 no answer, ETIMEDOUT 110 hung; ValueError:
            # "crc", "chip id 0x..".
            error = "i2c errno %s" % (e.args[0] if e.args else "?") if isinstance(e, OSError) else str(e)
        slot[_STARTED] = False
        slot[_STALE] = 0
        slot[_RETRY_AT] = now + slot[_BACKOFF]
        slot[_BACKOFF] = min(slot[_BACKOFF] * 2, _BACKOFF_MAX_MS)
        if slot[_FAULT]:
            return None
        slot[_FAULT] = True
        return {"sensor": d.name, "error": error}

    async def run(self, sleep_ms, uptime_ms):
        """The app's task: `sleep_ms` an async sleep in ms, `uptime_ms` the
        board clock (Clock.uptime_ms)."""
        while True:
            now = uptime_ms()
            self.scan(now)
            self.read(now)
            await sleep_ms(_TICK_MS)
