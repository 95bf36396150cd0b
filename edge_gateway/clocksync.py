"""Is the gateway's clock right?

A Raspberry Pi has no real-time clock. After a power cut during an internet
outage it boots with the time fake-hwclock saved at its last shutdown, and a
gateway that trusted it would grant or refuse lessons for the wrong hour and
hand that hour to the boards. So the gateway asks, every tick, whether
something vouches for its clock (docs/install.md, "The clock"):

- **NTP, through the kernel.** adjtimex(2), read only (modes 0, no
  privilege needed): the clock is synchronised while the kernel's maximum
  error is under 16 s, the rule of systemd's own `ntp_synced()`, i.e. what
  `timedatectl` shows as "System clock synchronized". Whichever client
  disciplines the clock sets it: systemd-timesyncd (Raspberry Pi OS's
  default), chrony, ntpd. Chosen over /run/systemd/timesync/synchronized
  (timesyncd only) and over running `timedatectl` (a process and D-Bus each
  tick). systemd's `ProtectClock=` would block the call: the gateway's unit
  does not set it.
- **Synchronised earlier in this boot.** Without NTP updates the kernel's
  maximum error grows by 0.5 ms a second and passes 16 s after about nine
  hours, although a clock once set drifts only seconds a day: an ADSL outage
  must not stop the lessons. So once NTP has vouched, the boot's id
  (/proc/sys/kernel/random/boot_id) is written to a latch file beside the
  database, and the clock stays trusted until the next boot, across gateway
  restarts. A boot is exactly what a power cut makes.
- **A battery-backed RTC** (school.toml `[clock] rtc`), when its time agrees
  with the system clock within RTC_AGREE_S: `"kernel"` reads
  /sys/class/rtc/rtc0/since_epoch (a DS3231 with `dtoverlay=i2c-rtc,ds3231`,
  or a Raspberry Pi 5's own RTC with its battery fitted); `"ds3231"` reads a
  DS3231 on I2C bus 1 through Blinka. The RTC keeps UTC, as Linux's does.

Nothing else: a clock that nothing vouches for is not synchronised, and the
gateway then grants nothing that depends on the hour (edge_gateway/rules.py,
`clock_unsynced`) and sends no `time` command."""

from __future__ import annotations

import argparse
import calendar
import ctypes
import ctypes.util
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from common.files import write_atomic

log = logging.getLogger(__name__)

NTP_MAX_ERROR_US = 16_000_000  # the kernel's NTP_PHASE_LIMIT: past it, no NTP update for hours
RTC_AGREE_S = 300.0  # an RTC and the clock it set drift apart by seconds a day; lessons need minutes
RTC_READ_EVERY_S = 60.0  # an I2C transfer each time: not every tick
MIN_PLAUSIBLE = 1735689600.0  # 2025-01-01: an RTC showing earlier has lost its time (dead battery)
RTC_CHOICES = ("none", "kernel", "ds3231")
BOOT_ID = "/proc/sys/kernel/random/boot_id"
SYSFS_RTC = "/sys/class/rtc/rtc0"


@dataclass(frozen=True)
class ClockStatus:
    synced: bool
    source: str  # what vouches: "ntp", "ntp-this-boot", "rtc", "injected"; "none" when nothing does
    detail: str  # one sentence, for /healthz and the log


# NTP, through the kernel -------------------------------------------------------------


class _Timex(ctypes.Structure):
    # struct timex as the plain `adjtimex` symbol takes it: every field a C
    # long (32 bits on armhf, 64 on arm64), padded like the kernel's.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_reserved", ctypes.c_int * 11), ("_slack", ctypes.c_char * 64)]


_libc: Any = None


def ntp_synced() -> tuple[bool, str]:
    """(synchronised, why) from the kernel's own account (adjtimex, read only)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    tx = _Timex()  # modes 0: read, change nothing
    if _libc.adjtimex(ctypes.byref(tx)) < 0:
        err = ctypes.get_errno()
        return False, f"adjtimex failed ({os.strerror(err)}): the kernel's synchronisation status is unknown"
    if tx.maxerror < NTP_MAX_ERROR_US:
        return True, f"synchronised by NTP (maximum error {tx.maxerror / 1e6:.3f} s)"
    return False, "the kernel's clock is not synchronised by NTP"


# a DS3231 over I2C (Blinka) ------------------------------------------------------------


class I2CBus(Protocol):
    """What Blinka's busio.I2C offers (and a test's fake)."""

    def try_lock(self) -> bool: ...
    def unlock(self) -> None: ...
    def writeto(self, address: int, buffer: bytes) -> None: ...
    def writeto_then_readfrom(self, address: int, buffer_out: bytes, buffer_in: bytearray) -> None: ...


def _bcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


def _to_bcd(n: int) -> int:
    return ((n // 10) << 4) | (n % 10)


class DS3231:
    """The DS3231's clock registers (datasheet: 0x00-0x06 time in BCD,
    0x0F status, bit 7 OSF: the oscillator stopped, the time is lost)."""

    ADDRESS = 0x68
    _TIME = 0x00
    _STATUS = 0x0F
    _OSF = 0x80

    def __init__(self, i2c: I2CBus, address: int = ADDRESS) -> None:
        self.i2c = i2c
        self.address = address

    def _locked(self, work: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + 1.0
        while not self.i2c.try_lock():
            if time.monotonic() > deadline:
                raise OSError("I2C bus busy")
            time.sleep(0.001)
        try:
            return work()
        finally:
            self.i2c.unlock()

    def read(self) -> float | None:
        """Unix seconds, or None when the oscillator stopped since it was set."""
        regs = bytearray(7)
        status = bytearray(1)

        def work() -> None:
            self.i2c.writeto_then_readfrom(self.address, bytes([self._STATUS]), status)
            self.i2c.writeto_then_readfrom(self.address, bytes([self._TIME]), regs)

        self._locked(work)
        if status[0] & self._OSF:
            return None
        hour_reg = regs[2]
        if hour_reg & 0x40:  # 12-hour mode (set by another tool): bit 5 is PM
            hour = _bcd(hour_reg & 0x1F) % 12 + (12 if hour_reg & 0x20 else 0)
        else:
            hour = _bcd(hour_reg & 0x3F)
        year = 2000 + _bcd(regs[6]) + (100 if regs[5] & 0x80 else 0)
        return float(calendar.timegm((year, _bcd(regs[5] & 0x1F), _bcd(regs[4] & 0x3F), hour,
                                      _bcd(regs[1] & 0x7F), _bcd(regs[0] & 0x7F), 0, 0, 0)))

    def write(self, at: float) -> None:
        """Set the time (UTC, 24-hour mode) and clear OSF."""
        t = time.gmtime(int(at))
        if not 2000 <= t.tm_year <= 2099:
            raise ValueError(f"the DS3231 keeps years 2000 to 2099, not {t.tm_year}")
        regs = bytes([self._TIME, _to_bcd(t.tm_sec), _to_bcd(t.tm_min), _to_bcd(t.tm_hour), t.tm_wday + 1,
                      _to_bcd(t.tm_mday), _to_bcd(t.tm_mon), _to_bcd(t.tm_year - 2000)])
        status = bytearray(1)

        def work() -> None:
            self.i2c.writeto(self.address, regs)
            self.i2c.writeto_then_readfrom(self.address, bytes([self._STATUS]), status)
            self.i2c.writeto(self.address, bytes([self._STATUS, status[0] & ~self._OSF & 0xFF]))

        self._locked(work)


def blinka_i2c() -> I2CBus:
    """The Pi's I2C bus 1 through Blinka (`pip install preau[pi]`), imported
    only when a DS3231 is configured."""
    try:
        board = importlib.import_module("board")
    except ImportError as e:
        raise OSError(f"Blinka is not installed ({e}): pip install 'preau[pi]'") from None
    return board.I2C()


# the system's clock, as the gateway trusts it ---------------------------------------------


class SystemClock:
    """The production source: call it (off the loop: it may read I2C) for a ClockStatus."""

    def __init__(self, rtc: str = "none", latch_file: str | None = None, *,
                 ntp: Callable[[], tuple[bool, str]] = ntp_synced, boot_id_file: str = BOOT_ID,
                 sysfs_rtc: str = SYSFS_RTC, i2c: Callable[[], I2CBus] = blinka_i2c,
                 now: Callable[[], float] = time.time) -> None:
        if rtc not in RTC_CHOICES:
            raise ValueError(f"rtc: one of {', '.join(RTC_CHOICES)}, not {rtc!r}")
        self.rtc = rtc
        self.latch_file = latch_file
        self._ntp = ntp
        self._boot_id_file = boot_id_file
        self._sysfs_rtc = sysfs_rtc
        self._i2c = i2c
        self._now = now
        self._latched = False
        self._rtc_seen: tuple[float, ClockStatus] | None = None  # (when read, what it said)
        self._ds3231: DS3231 | None = None

    def boot_id(self) -> str | None:
        try:
            with open(self._boot_id_file) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def _latch(self) -> None:
        self._latched = True
        boot = self.boot_id()
        if self.latch_file is None or boot is None:
            return
        try:
            write_atomic(self.latch_file, boot + "\n")
        except OSError as e:
            log.warning("clock: could not write %s (%s): a restart before NTP answers again will wait for it",
                        self.latch_file, e)

    def _latched_this_boot(self) -> bool:
        if self._latched:
            return True
        boot = self.boot_id()
        if self.latch_file is None or boot is None:
            return False
        try:
            with open(self.latch_file) as f:
                return f.read().strip() == boot
        except OSError:
            return False

    def read_rtc(self) -> float | None:
        """The RTC's time, or None when it has lost it."""
        if self.rtc == "kernel":
            with open(os.path.join(self._sysfs_rtc, "since_epoch")) as f:  # the driver refuses a stopped RTC
                return float(f.read().strip())
        if self._ds3231 is None:
            self._ds3231 = DS3231(self._i2c())
        return self._ds3231.read()

    def _rtc_status(self) -> ClockStatus:
        now = self._now()
        if self._rtc_seen is not None and now - self._rtc_seen[0] < RTC_READ_EVERY_S and now >= self._rtc_seen[0]:
            return self._rtc_seen[1]
        try:
            at = self.read_rtc()
        except (OSError, ValueError) as e:
            status = ClockStatus(False, "none", f"the RTC ({self.rtc}) cannot be read: {e}")
        else:
            now = self._now()
            if at is None or at < MIN_PLAUSIBLE:
                status = ClockStatus(False, "none", f"the RTC ({self.rtc}) has lost the time (battery?)")
            elif abs(at - now) > RTC_AGREE_S:
                status = ClockStatus(False, "none", f"the system clock and the RTC ({self.rtc}) differ by "
                                                    f"{at - now:+.0f} s: neither is trusted")
            else:
                status = ClockStatus(True, "rtc", f"kept by the RTC ({self.rtc}, {at - now:+.0f} s)")
        self._rtc_seen = (now, status)
        return status

    def __call__(self) -> ClockStatus:
        synced, why = self._ntp()
        if synced:
            if not self._latched:
                self._latch()
            return ClockStatus(True, "ntp", why)
        if self._latched_this_boot():
            return ClockStatus(True, "ntp-this-boot", "synchronised by NTP earlier in this boot; "
                                                      "running on its own since")
        if self.rtc != "none":
            status = self._rtc_status()
            if status.synced:
                return status
            return ClockStatus(False, "none", f"{why}, and {status.detail}")
        return ClockStatus(False, "none", f"{why} since this boot, and no RTC is configured")


def status_of(value: ClockStatus | bool) -> ClockStatus:
    """A test may inject a plain bool source."""
    if isinstance(value, ClockStatus):
        return value
    return ClockStatus(bool(value), "injected" if value else "none",
                       "synchronised (injected source)" if value else "not synchronised (injected source)")


def latch_file_for(db: str) -> str | None:
    """Where the boot latch lives: beside the database (the gateway may write there)."""
    if db == ":memory:":
        return None
    return os.path.join(os.path.dirname(os.path.abspath(db)), "clock-synced-boot")


# `preau gateway clock` ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="preau gateway clock",
                                description="Is the gateway's clock synchronised, and by what? With a DS3231 "
                                            "read through Blinka: set the system clock from it at boot, or it "
                                            "from a synchronised system clock.")
    p.add_argument("--config", required=True, help="the school's TOML configuration file")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--rtc-to-system", action="store_true",
                     help="set the system clock from the RTC unless NTP already vouches for it (root; at boot)")
    act.add_argument("--system-to-rtc", action="store_true",
                     help="set the RTC from the system clock, which must be synchronised by NTP")
    args = p.parse_args(argv)
    from .config import Config, ConfigError

    try:
        config = Config.load(args.config)
    except ConfigError as e:
        print(f"preau gateway clock: {e}", file=sys.stderr)
        return 2
    source = SystemClock(config.clock_rtc, latch_file_for(config.db))
    try:
        if args.rtc_to_system or args.system_to_rtc:
            if config.clock_rtc == "none":
                print(f"preau gateway clock: {config.source}: clock.rtc is \"none\": no RTC to use", file=sys.stderr)
                return 2
            synced, why = ntp_synced()
            if args.system_to_rtc:
                if not synced:
                    print(f"preau gateway clock: {why}: the RTC is not set from an unsynchronised clock",
                          file=sys.stderr)
                    return 1
                if config.clock_rtc == "kernel":
                    print("preau gateway clock: the kernel's driver keeps its RTC set from NTP by itself "
                          "(or run `hwclock --systohc`)")
                    return 0
                DS3231(blinka_i2c()).write(time.time())
                print("RTC set from the system clock")
                return 0
            if synced:
                print(f"{why}: the system clock is left as it is")
                return 0
            at = source.read_rtc()
            if at is None or at < MIN_PLAUSIBLE:
                print("preau gateway clock: the RTC has lost the time: not used", file=sys.stderr)
                return 1
            time.clock_settime(time.CLOCK_REALTIME, at)
            print(f"system clock set from the RTC: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(at))}")
            return 0
        status = source()
    except OSError as e:
        print(f"preau gateway clock: {e}", file=sys.stderr)
        return 1
    print(f"{'synchronised' if status.synced else 'NOT synchronised'} ({status.source}): {status.detail}")
    return 0 if status.synced else 1
