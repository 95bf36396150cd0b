"""A gateway whose clock nothing vouches for (a Raspberry Pi after a power
cut during an internet outage) grants nothing that depends on the hour and
gives no board its time; once synchronised, it does both. The real gateway
behind the locked school broker (devkit/school.py), with a synchronisation
source the test controls; and the production source
(edge_gateway/clocksync.py) with its kernel, boot id, RTC and I2C bus faked
at their boundaries."""

from __future__ import annotations

import calendar
import json
import threading

import pytest

from devkit.citybroker import LockedCity, TlsCity
from devkit.school import LockedSchool
from devkit.testing import Board, school_clock, wait_for
from edge_gateway import clocksync
from edge_gateway.clocksync import DS3231, ClockStatus, SystemClock
from edge_gateway.config import Config, ConfigError
from edge_gateway.gateway import Gateway, OverrideError
from protocol.citylink import parse_gateway_state
from protocol.codec import check_cmd

SCHOOL = "0341234a"
GATEWAY_ID = "gw-0341234a"


# the gateway, end to end ----------------------------------------------------------------


@pytest.fixture
def school(tmp_path):
    locked = LockedSchool(school=SCHOOL, gateway_id=GATEWAY_ID, rooms=("cm2-b", "cp-a"),
                          directory=str(tmp_path / "school")).start()
    yield locked
    locked.stop()


@pytest.fixture
def city_broker(tmp_path):
    city = LockedCity.start(tmp_path / "city", schools={SCHOOL: GATEWAY_ID})
    yield city
    city.stop()


def config(school, city_broker, tmp_path):
    return Config.from_dict(school.config(str(tmp_path)) | {
        "city_broker": city_broker.gateway_config(SCHOOL),
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}},
        "policy": {"zone": "C"},
    })


@pytest.mark.broker
def test_unsynchronised_clock_denies_with_a_reason_and_gives_no_time_until_it_is_synchronised(
        school, city_broker, tmp_path):
    synced = threading.Event()  # the kernel's word, as the test decides it
    city = TlsCity(city_broker, SCHOOL).connect()
    # a Tuesday at 09:00 in term time: granted, with the access point, when the clock is trusted
    gw = Gateway(config(school, city_broker, tmp_path), clock=school_clock(), clock_sync=synced.is_set,
                 reconnect_max_s=1, tick_s=0.05).start()
    board = Board(school.host, school.port, SCHOOL, "cm2-b").connect()
    try:
        req = board.request()
        deny = board.cmd_for(req)
        check_cmd(deny)
        assert deny["cmd"] == "deny" and deny["reason"] == "clock_unsynced" and "horloge" in deny["text"]
        assert "now" not in deny  # the board takes its clock from any `now`
        # The birth came before the request, on the same topic: a time command would have come first.
        assert board.times == [] and gw.metrics["time_sent"] == 0
        health = gw.health()
        assert health["clock_synced"] is False and health["ok"] is False and "not synchronised" in health["clock"]
        assert gw.metrics["clock_synced"] == 0
        assert gw.explain("cm2-b").reason == "clock_unsynced"
        assert gw.explain("cm2-b", gw.clock()).grant  # a given time is still explained by the policy
        with pytest.raises(OverrideError, match="clock is not synchronised"):
            gw.check_override({"scope": "school", "effect": "deny", "expires": gw.clock() + 600,
                               "who": "direction", "why": "test"}, gw.clock())
        state = wait_for(lambda: city.gateway_state, what="the gateway's state at the city")
        assert state["online"] is True and state["clock_synced"] is False
        # the city's own parser takes the field (and ignores it: it keeps online and gateway)
        assert parse_gateway_state(SCHOOL, json.dumps(state).encode()).online is True
        assert board.policy is None  # no offline policy for the wrong 48 hours

        synced.set()
        time_cmd = wait_for(lambda: board.times and board.times[0], what="the time, once synchronised")
        assert abs(time_cmd["now"] - gw.clock()) < 5
        wait_for(lambda: gw.health()["ok"], what="healthy")
        wait_for(lambda: city.gateway_state and city.gateway_state.get("clock_synced") is True,
                 what="the city told")
        wait_for(lambda: board.policy, what="the offline policy published")
        req = board.request()
        grant = board.cmd_for(req)
        assert grant["cmd"] == "grant" and grant["ap"] is True and abs(grant["now"] - gw.clock()) < 5
        # counted once committed
        wait_for(lambda: gw.metrics["decisions"] == {"deny": 1, "grant": 1}, what="both decisions counted")
        assert gw.metrics["clock_synced"] == 1

        # A board born from now on gets the time at its birth, as before; the first one not twice.
        other = Board(school.host, school.port, SCHOOL, "cp-a").connect()
        wait_for(lambda: other.times, what="the time at a birth")
        other.close()
        assert len(board.times) == 1

        synced.clear()  # an RTC that stops agreeing, say: refused again
        wait_for(lambda: not gw.health()["clock_synced"], what="unsynchronised again")
        assert board.cmd_for(board.request())["reason"] == "clock_unsynced"
    finally:
        board.close()
        gw.stop()
        city.close()


def test_a_clock_given_to_the_gateway_is_its_own_reference_and_the_systems_is_checked(mosquitto, tmp_path):
    """Tests, benches and the demo run a school clock: it counts as
    synchronised. Production's clock (time.time) gets the system's source."""
    base = mosquitto.config(str(tmp_path)) | {"rooms": {"cm2-b": {}}, "policy": {"zone": "C"}}
    demo = Gateway(Config.from_dict(base), clock=school_clock())
    assert demo.clock_status.synced and demo.clock_status.source == "injected"
    production = Gateway(Config.from_dict(base | {"db": str(tmp_path / "prod.sqlite")}))
    assert isinstance(production._clock_sync, SystemClock)
    assert production.clock_status.source in ("ntp", "ntp-this-boot", "none")
    for gw in (demo, production):
        assert gw.journal is not None
        gw.journal.stop()


# the production source ---------------------------------------------------------------------


class Kernel:
    def __init__(self) -> None:
        self.synced = False

    def __call__(self) -> tuple[bool, str]:
        return self.synced, "synchronised by NTP" if self.synced else "the kernel's clock is not synchronised by NTP"


def boot(tmp_path, boot_id: str) -> str:
    path = tmp_path / "boot_id"
    path.write_text(boot_id + "\n")
    return str(path)


def test_ntp_latches_for_the_rest_of_the_boot_across_restarts_not_across_boots(tmp_path):
    kernel = Kernel()
    latch = str(tmp_path / "state" / "clock-synced-boot")
    source = SystemClock(latch_file=latch, ntp=kernel, boot_id_file=boot(tmp_path, "boot-1"))
    assert source() == ClockStatus(False, "none", "the kernel's clock is not synchronised by NTP since this boot, "
                                                  "and no RTC is configured")
    kernel.synced = True
    assert source().source == "ntp"
    # nine hours without an NTP answer (an ADSL outage): the kernel says unsynchronised, the clock is fine
    kernel.synced = False
    assert source().source == "ntp-this-boot"
    restarted = SystemClock(latch_file=latch, ntp=kernel, boot_id_file=boot(tmp_path, "boot-1"))
    assert restarted().synced  # the gateway restarted: same boot
    after_power_cut = SystemClock(latch_file=latch, ntp=kernel, boot_id_file=boot(tmp_path, "boot-2"))
    assert not after_power_cut().synced


def test_the_real_kernel_is_asked_without_privilege():
    synced, why = clocksync.ntp_synced()
    assert isinstance(synced, bool) and why


def rtc_dir(tmp_path, since_epoch: str | None):
    d = tmp_path / "rtc0"
    d.mkdir(exist_ok=True)
    if since_epoch is not None:
        (d / "since_epoch").write_text(since_epoch + "\n")
    return str(d)


NOW = 1796300000.0


def test_a_kernel_rtc_vouches_only_when_it_agrees_with_the_clock(tmp_path):
    def source(since_epoch):
        return SystemClock("kernel", None, ntp=Kernel(), boot_id_file=boot(tmp_path, "b"),
                           sysfs_rtc=rtc_dir(tmp_path, since_epoch), now=lambda: NOW)

    assert source(str(int(NOW) + 20))() == ClockStatus(True, "rtc", "kept by the RTC (kernel, +20 s)")
    # fake-hwclock's time from the last shutdown, a week ago, against a working RTC
    late = source(str(int(NOW) + 7 * 86400))()
    assert not late.synced and "differ by +604800 s" in late.detail
    assert "lost the time" in source("946684800")().detail  # a dead battery: 2000-01-01
    (tmp_path / "rtc0" / "since_epoch").unlink()
    assert "cannot be read" in SystemClock("kernel", None, ntp=Kernel(), sysfs_rtc=str(tmp_path / "rtc0"),
                                           boot_id_file=boot(tmp_path, "b"))().detail


class FakeDS3231Bus:
    """Blinka's busio.I2C, byte for byte, with a DS3231 behind it."""

    def __init__(self, regs: bytes, status: int = 0) -> None:
        self.mem = bytearray(0x13)
        self.mem[0:7] = regs
        self.mem[0x0F] = status
        self.locked = False
        self.writes: list[bytes] = []

    def try_lock(self) -> bool:
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self) -> None:
        self.locked = False

    def writeto(self, address: int, buffer: bytes) -> None:
        assert address == 0x68 and self.locked
        self.writes.append(bytes(buffer))
        self.mem[buffer[0]:buffer[0] + len(buffer) - 1] = buffer[1:]

    def writeto_then_readfrom(self, address: int, buffer_out: bytes, buffer_in: bytearray) -> None:
        assert address == 0x68 and self.locked
        start = buffer_out[0]
        buffer_in[:] = self.mem[start:start + len(buffer_in)]


def test_ds3231_read_and_written_in_bcd_and_its_stopped_oscillator_means_no_time():
    # 2026-11-24 08:00:05 UTC, a Tuesday (day register 3), 24-hour mode
    bus = FakeDS3231Bus(bytes([0x05, 0x00, 0x08, 0x03, 0x24, 0x11, 0x26]))
    rtc = DS3231(bus)
    assert rtc.read() == calendar.timegm((2026, 11, 24, 8, 0, 5, 0, 0, 0))
    bus.mem[2] = 0x40 | 0x20 | 0x08  # 12-hour mode, PM, 8 o'clock: 20:00
    assert rtc.read() == calendar.timegm((2026, 11, 24, 20, 0, 5, 0, 0, 0))
    bus.mem[0x0F] = 0x80  # OSF: the oscillator stopped since it was set
    assert rtc.read() is None
    rtc.write(calendar.timegm((2027, 1, 2, 13, 45, 30, 0, 0, 0)))
    assert bus.writes[0] == bytes([0x00, 0x30, 0x45, 0x13, 0x06, 0x02, 0x01, 0x27])  # a Saturday: day 6
    assert (bus.mem[0x0F] & 0x80) == 0 and not bus.locked
    assert rtc.read() == calendar.timegm((2027, 1, 2, 13, 45, 30, 0, 0, 0))


def test_a_ds3231_through_blinka_is_read_once_a_minute(tmp_path):
    at = calendar.timegm((2026, 11, 24, 8, 0, 5, 0, 0, 0))
    bus = FakeDS3231Bus(bytes([0x05, 0x00, 0x08, 0x03, 0x24, 0x11, 0x26]))
    reads = []
    original = bus.writeto_then_readfrom

    def counted(address, out, into):
        reads.append(out[0])
        original(address, out, into)

    bus.writeto_then_readfrom = counted  # type: ignore[method-assign]
    now = [at + 3.0]
    source = SystemClock("ds3231", None, ntp=Kernel(), i2c=lambda: bus, boot_id_file=boot(tmp_path, "b"),
                         now=lambda: now[0])
    assert source() == ClockStatus(True, "rtc", "kept by the RTC (ds3231, -3 s)")
    n = len(reads)
    now[0] += 30
    assert source().synced and len(reads) == n  # an I2C transfer each time: not every tick
    now[0] = at + 400  # a minute later for the cache, and the system clock ran away from the RTC
    status = source()
    assert not status.synced and len(reads) > n and "differ by -400 s" in status.detail


def test_clock_configuration_is_checked(mosquitto, tmp_path):
    base = mosquitto.config(str(tmp_path)) | {"rooms": {"cm2-b": {}}, "policy": {"zone": "C"}}
    assert Config.from_dict(base).clock_rtc == "none"
    assert Config.from_dict(base | {"clock": {"rtc": "kernel"}}).clock_rtc == "kernel"
    with pytest.raises(ConfigError, match='clock.rtc: expected "none" or "kernel" or "ds3231", got "yes"'):
        Config.from_dict(base | {"clock": {"rtc": "yes"}}, source="school.toml")
    with pytest.raises(ConfigError, match="clock.ntp: unknown key"):
        Config.from_dict(base | {"clock": {"ntp": "pool.ntp.org"}}, source="school.toml")
