"""The bench's checks of one board, and the pass/fail sheet (docs/benchcheck.md).

The checks see the board only through a `BenchWire`: they press the button
line, read the relay and LED lines, reset the board, answer on its projector
port as the room's projector would, and ask its console. They know the
firmware's rules from docs/board.md (the LED patterns of firmware/led.py, a
long press of 2 s, the offline policy), not its code: the same checks run
against a board on a Raspberry Pi's bench and against the simulated board.

A board on the bench may have no gateway: a short press then waits
`request_timeout_ms` (3 s by default) for an answer and starts a session on
its offline policy ("alone", without the access point when it has no
policy). A gateway that answers is fine too (LED "on"); one that refuses
leaves the long press unchecked, and says so.

Every wait is bounded (`Timing`); a check that cannot run because an
earlier one failed fails with that reason, so the sheet always lists all
checks."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .projector import BenchProjector
from .wire import BenchWire

log = logging.getLogger("preau.bench")

CHECKS = ("relay_at_boot", "led", "projector", "button", "long_press", "relay_line", "kit")

# The sense lines are read every 2 ms: a relay coil needs 5 to 10 ms to pull
# its contacts in, so a shorter glitch powers nothing and a longer one is seen.
SAMPLE_S = 0.002
# The longest LED pattern (idle: a 60 ms blip every 3 s) shows within this.
PATTERN_S = 3.2
# What the board's console prints for the kit probe (KIT_PROBE): scan, then
# the identity record at 0x50 parsed by the firmware's own parse_id.
KIT_PROBE = """\
from firmware.kit import parse_id
_found = i2c.scan() if i2c else None
_kit = _reason = None
if _found and 0x50 in _found:
    _buf = bytearray(37)
    try:
        i2c.readfrom_mem_into(0x50, 0, _buf)
        _kit, _reason = parse_id(_buf)
    except OSError:
        _reason = 'read_error'
print(repr((_found, _kit, _reason)))
"""
EEPROM = 0x50


@dataclass
class Timing:
    boot_s: float = 30.0  # from a reset to the LED's first pattern
    projector_s: float = 15.0  # from a reset to the board's first projector query
    press_s: float = 0.2  # a short press
    long_press_s: float = 2.6  # a long press is recognised at 2 s
    waiting_s: float = 2.5  # from a press to the LED's "waiting" (the press counts at its release)
    session_s: float = 40.0  # from a press to a session: request_timeout_ms is at most 30 s
    end_s: float = 8.0  # from a long press's release to the idle pattern


@dataclass
class Result:
    name: str
    ok: bool
    reason: str
    fix: str = ""


@dataclass
class Sheet:
    board: str
    results: dict[str, Result] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(name in self.results and self.results[name].ok for name in CHECKS)

    def add(self, name: str, ok: bool, reason: str, fix: str = "") -> Result:
        self.results[name] = Result(name, ok, reason, fix)
        return self.results[name]

    def render(self) -> str:
        lines = [f"preau bench: board {self.board}"]
        for name in CHECKS:
            r = self.results.get(name) or Result(name, False, "not run")
            lines.append(f"  {'PASS' if r.ok else 'FAIL'}  {name:<14} {r.reason}")
            if not r.ok and r.fix:
                lines.append(f"        {'':<14} fix: {r.fix}")
        passed = sum(1 for n in CHECKS if n in self.results and self.results[n].ok)
        verdict = "ready for a classroom" if self.ok else "keep it off the classroom until fixed"
        lines.append(f"{passed}/{len(CHECKS)} checks passed: {verdict}")
        return "\n".join(lines)


# -- the lines, sampled --------------------------------------------------------


class _Background:
    """A task of the bench's own, on the loop, until stopped."""

    name = "bench"
    _task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError


class Sampler(_Background):
    """Reads the relay and LED lines every SAMPLE_S and keeps (time, relay,
    led), so checks look back over what the lines did."""

    def __init__(self, wire: BenchWire, clock: Callable[[], float] = time.monotonic) -> None:
        self.wire = wire
        self.clock = clock
        self.samples: list[tuple[float, bool, bool]] = []
        self.name = "bench-sampler"

    async def _run(self) -> None:
        while True:
            self.samples.append((self.clock(), self.wire.relay(), self.wire.led()))
            if len(self.samples) > 200_000:  # about 7 minutes: older ones no check looks at
                del self.samples[:100_000]
            await asyncio.sleep(SAMPLE_S)

    def first_relay_on(self, since: float) -> float | None:
        return next((t for t, relay, _ in self.samples if t >= since and relay), None)

    def relay_now(self) -> bool:
        return bool(self.samples) and self.samples[-1][1]

    def led_mode(self, since: float, window: float = PATTERN_S) -> str | None:
        """The LED's pattern over the last `window` seconds after `since`;
        None while there are not enough samples yet."""
        now = self.clock()
        start = max(since, now - window)
        if now - start < window * 0.95:
            return None
        return classify([(t, led) for t, _, led in self.samples if t >= start])

    async def wait_led(self, modes: set[str], since: float, timeout: float, window: float = PATTERN_S) -> str | None:
        """The first of `modes` the LED shows within `timeout`; None if not."""
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            mode = self.led_mode(since, window)
            if mode in modes:
                return mode
            await asyncio.sleep(0.05)
        return None


def classify(samples: list[tuple[float, bool]]) -> str:
    """The LED mode of docs/board.md that these samples look like, coarsely:
    dark, idle (a blip every 3 s), offline (a double flash every 2 s),
    waiting (fast blink), denied (three flashes), alone (on with a short
    gap; "air" looks the same), on (steady), fault (long on, short off), or
    unknown."""
    if not samples:
        return "unknown"
    runs: list[tuple[bool, float]] = []  # (level, seconds), the first and last cut by the window
    start, level = samples[0]
    for t, lit in samples[1:]:
        if lit != level:
            runs.append((level, t - start))
            start, level = t, lit
    runs.append((level, samples[-1][0] - start))
    total = sum(d for _, d in runs) or 1e-9
    on = sum(d for lit, d in runs if lit)
    if on == 0:
        return "dark"
    inner_off = [d for lit, d in runs[1:-1] if not lit]
    longest_off = max([d for lit, d in runs if not lit], default=0.0)
    if longest_off == 0:
        return "on"
    # flashes in a row: on-runs of at most 0.2 s, each after a gap of at most 0.2 s
    chain = best = 0
    short_before = gap_short = False
    for lit, d in runs:
        if not lit:
            gap_short = d <= 0.2
            continue
        short = d <= 0.2
        chain = (chain + 1 if short_before and gap_short else 1) if short else 0
        best = max(best, chain)
        short_before = short
    duty = on / total
    if best >= 4:
        return "waiting"
    if duty >= 0.7 and longest_off <= 0.42:
        return "alone"
    if duty >= 0.5 and max(inner_off, default=longest_off) >= 0.43:
        return "fault"
    if duty < 0.35:
        if best == 3:
            return "denied"
        if best == 2:
            return "offline"
        return "idle"
    return "unknown"


# -- the projector port ----------------------------------------------------------


class ProjectorPump(_Background):
    """The bench's projector on the wire's port: reads what the board sends
    every 10 ms and writes the answers."""

    def __init__(self, port, projector: BenchProjector) -> None:
        self.port = port
        self.projector = projector
        self.bytes_in = 0
        self.name = "bench-projector"

    async def _run(self) -> None:
        while True:
            try:
                data = self.port.read(256)
            except OSError:
                data = b""  # the port went away: the check reports silence
            if data:
                self.bytes_in += len(data)
                reply = self.projector.receive(data)
                if reply:
                    self.port.write(reply)
            else:
                await asyncio.sleep(0.01)


# -- the checks ------------------------------------------------------------------


class Bench:
    def __init__(self, wire: BenchWire, projector: str | None = "epson-escvp21", timing: Timing | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.wire = wire
        self.timing = timing or Timing()
        self.clock = clock
        self.profile = wire.profile
        self.sheet = Sheet(self.profile["name"])
        self.sampler = Sampler(wire, clock)
        self.projector = BenchProjector(projector, clock) if projector else None
        self.pump = None
        if self.projector is not None and wire.projector_port is not None:
            self.pump = ProjectorPump(wire.projector_port, self.projector)
        self.boots: list[tuple[float, float | None]] = []  # (reset at, pattern seen at or None)
        self.session_asked = 0.0  # when the press that started the session began

    def _pin(self, role: str) -> str:
        return f"GPIO {self.profile['pins'][role]['pin']}"

    async def run(self) -> Sheet:
        self.sampler.start()
        if self.pump is not None:
            self.pump.start()
        try:
            booted = await self._boot()
            self._check_led(booted)
            started = await self._check_button(booted)
            self._check_projector(started)
            await self._check_long_press(started)
            await self._console_checks()
            try:
                await self._boot()  # back to the firmware, as it leaves the bench
            except Exception as e:  # the console or the reset line gave up: the sheet still prints
                log.warning("the last reset failed: %s", e)
                self.sheet.add("relay_at_boot", False, f"not checked: the board could not be reset again ({e})",
                               "wire the board's EN/RUN pin to the Pi and give --reset-gpio, or power-cycle the "
                               "board and run preau bench again")
            else:
                self._check_relay_at_boot()
        finally:
            await self.sampler.stop()
            if self.pump is not None:
                await self.pump.stop()
        return self.sheet

    async def _boot(self) -> str | None:
        """Reset the board and wait for the LED's first pattern."""
        at = self.clock()
        await self.wire.reset()
        mode = await self.sampler.wait_led({"idle", "offline", "fault", "alone", "on"}, at, self.timing.boot_s)
        self.boots.append((at, self.clock() if mode else None))
        log.info("boot: LED %s", mode)
        return mode

    def _check_relay_at_boot(self) -> None:
        relay = self._pin("ap_relay")
        for n, (at, seen) in enumerate(self.boots):
            until = seen if seen is not None else at + self.timing.boot_s
            on = self.sampler.first_relay_on(at)
            if on is not None and on <= until + 1.0:
                self.sheet.add("relay_at_boot", False,
                               f"the relay was on {on - at:.2f} s after reset {n + 1} of {len(self.boots)}: "
                               "the access point would be powered outside lessons",
                               f"the relay must be off unless the board drives {relay} high: check the relay "
                               "module (an active-low module switches on by itself), its driver transistor and "
                               f"pull-down on {relay}, and the relay sense wire")
                return
        self.sheet.add("relay_at_boot", True, f"off from each reset until the firmware ran ({len(self.boots)} boots)")

    def _check_led(self, booted: str | None) -> None:
        led = self._pin("led")
        if booted is None:
            self.sheet.add("led", False, f"the LED line stayed dark for {self.timing.boot_s:.0f} s after the reset",
                           f"check the LED sense wire on {led}; if the board's LED is dark too, the firmware does "
                           "not start: `mpremote repl` shows what the board says at boot (then preau flash again)")
        elif booted in ("alone", "on"):
            self.sheet.add("led", False, "the LED stayed lit after the reset (no idle pattern)",
                           f"check the LED sense wire on {led} for a short to 3.3 V, and the LED's polarity in "
                           f"the board profile ({self.profile['name']}: pins.led.active_low)")
        else:
            note = (" (the board's fault pattern: it finds a fault, see the projector check)"
                    if booted == "fault" else "")
            self.sheet.add("led", True, f"the firmware's {booted} pattern after the reset{note}")

    async def _press(self, seconds: float) -> float:
        at = self.clock()
        self.wire.press()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.wire.release()
        return at

    async def _check_button(self, booted: str | None) -> str | None:
        """A short press: the LED must say "waiting" (or the answer); then a
        session must start. Returns the session's LED mode, or None."""
        button = self._pin("button")
        if booted is None or booted in ("alone", "on"):
            self.sheet.add("button", False, "not checked: the LED shows no idle pattern to tell a press by",
                           "fix the led check first")
            return None
        at = await self._press(self.timing.press_s)
        seen = await self.sampler.wait_led({"waiting", "alone", "on", "denied"}, at, self.timing.waiting_s,
                                           window=1.0)
        if seen is None:
            pull = self.profile["pins"]["button"].get("pull")
            self.sheet.add("button", False,
                           f"the LED kept its {booted} pattern after a press: the press did not reach {button}",
                           f"check the wire from the bench to the board's button line ({button}) and the common "
                           f"ground; the line must idle high ({'the internal pull-up' if pull == 'up' else 'the board’s pull-up resistor'})")
            return None
        self.session_asked = at
        # "on": a gateway granted it; "alone": the offline policy did
        mode = await self.sampler.wait_led({"alone", "on", "denied"}, at, self.timing.session_s)
        if mode not in ("alone", "on"):
            why = "refused it (LED: denied)" if mode == "denied" else "did not start one"
            self.sheet.add("button", False, f"the press reached the board (LED: {seen}) but it {why}",
                           "a gateway or a retained offline policy refuses lessons now: check the bench in a "
                           "lesson window, or with the board's gateway out of reach")
            return None
        self.sheet.add("button", True, f"a press on {button} started a session (LED: waiting, then {mode})")
        return mode

    def _check_projector(self, started: str | None) -> None:
        if self.projector is None:
            self.sheet.add("projector", True, "no projector port in this room (--no-projector)")
            return
        name = self.projector.name
        uart = self.profile.get("uart") or {}
        pins = f"TX GPIO {uart.get('tx')}, RX GPIO {uart.get('rx')}" if uart else "no UART in the profile"
        baud = self.projector.table["serial"]["baud"]
        if self.pump is None:
            self.sheet.add("projector", False, "no port on the bench for the projector line",
                           "wire the board's projector port to the bench and give it with --projector-port")
            return
        p = self.projector
        first_boot = self.boots[0][0]
        asked = p.heard("power", first_boot)
        if not p.frames:
            self.sheet.add("projector", False,
                           f"nothing came from the board's projector port ({pins}) after the reset",
                           "check the cable from the board's projector port to the bench (TX to RX, RX to TX, "
                           f"ground) and that the board was flashed with --projector {name}")
            return
        if not asked:
            self.sheet.add("projector", False,
                           f"bytes came from the projector port but no {name} command: {bytes(p.noise[:40])!r}",
                           f"a wrong speed or protocol: the bench speaks {name} at {baud} baud; flash the board "
                           "with the room's --projector, or run the bench with --projector NAME")
            return
        if started is not None and not p.heard("on", self.session_asked):
            self.sheet.add("projector", False,
                           "the board asked the projector's state but did not switch it on for the session",
                           "the board's projector.json may lack the power-on command: flash it again with "
                           f"--projector {name}")
            return
        did = "asked its state and switched it on for the session" if started else "asked its state"
        self.sheet.add("projector", True, f"the board spoke {name} on its projector port: {did}")

    async def _check_long_press(self, started: str | None) -> None:
        if started is None:
            self.sheet.add("long_press", False, "not checked: no session to end (see the button check)",
                           "fix the button check first")
            return
        await self._press(self.timing.long_press_s)
        released = self.clock()
        mode = await self.sampler.wait_led({"idle", "offline", "fault"}, released, self.timing.end_s)
        if mode is None:
            self.sheet.add("long_press", False,
                           f"the session still ran {self.timing.end_s:.0f} s after a {self.timing.long_press_s:.1f} s "
                           "press (LED: %s)" % self.sampler.led_mode(released),
                           "a long press must end the session at 2 s: check the button line holds low while "
                           f"pressed (no bounce on {self._pin('button')}), and flash the board again")
            return
        if self.sampler.relay_now():
            self.sheet.add("long_press", False, "the session ended but the relay stayed on",
                           f"check the relay driver on {self._pin('ap_relay')} and the relay sense wire")
            return
        self.sheet.add("long_press", True, f"a {self.timing.long_press_s:.1f} s press ended the session (LED: {mode})")

    async def _console_checks(self) -> None:
        """With the firmware stopped: the board drives its relay through its
        own Board class, then scans its I2C bus and reads the kit's EEPROM."""
        console = self.wire.console
        relay = self._pin("ap_relay")
        try:
            await console.run("board.set_relay(True)\n")
            await asyncio.sleep(0.05)  # the relay's pull-in time, and then some
            on = self.sampler.relay_now()
            await console.run("board.set_relay(False)\n")
            await asyncio.sleep(0.05)
            off = not self.sampler.relay_now()
            if on and off:
                self.sheet.add("relay_line", True, f"the board switched its relay on and off on {relay}")
            else:
                self.sheet.add("relay_line", False,
                               f"the board drove {relay} {'off' if on else 'on'} and the bench read the relay "
                               f"{'on' if on else 'off'}",
                               f"check the relay module, its driver on {relay} and the relay sense wire")
            found, kit, reason = ast.literal_eval((await console.run(KIT_PROBE)).strip())
        except Exception as e:  # the console is one more wire: say what broke, go on with the sheet
            log.debug("console", exc_info=True)
            fix = getattr(e, "fix", "check the USB cable to the board's console and give it with --console")
            for name in ("relay_line", "kit"):
                if name not in self.sheet.results:
                    self.sheet.add(name, False, f"the board's console failed: {e}", fix)
            return
        self._check_kit(found, kit, reason)

    def _check_kit(self, found: list[int] | None, kit: str | None, reason: str | None) -> None:
        i2c = self.profile.get("i2c")
        pins = f"SDA GPIO {i2c['sda']}, SCL GPIO {i2c['scl']}" if i2c else ""
        seen = ", ".join(f"0x{a:02x}" for a in found or [])
        if found is None:
            self.sheet.add("kit", False, f"the board profile {self.profile['name']} has no I2C bus for kits",
                           "use a profile with the Qwiic socket's pins (hardware/boards)")
        elif not found:
            self.sheet.add("kit", False, f"the board's I2C scan found no device ({pins})",
                           "plug a kit into the board's Qwiic socket; if one is plugged, check its cable and the "
                           "socket's solder joints")
        elif EEPROM not in found:
            self.sheet.add("kit", False, f"no kit identity EEPROM at 0x50 (the scan found {seen})",
                           "plug a Préau kit with its EEPROM (docs/kits.md), or write one: "
                           "python -m hardware.kits image TYPE NUMBER")
        elif kit is None:
            self.sheet.add("kit", False, f"the kit's EEPROM at 0x50 did not read ({reason}; the scan found {seen})",
                           "write the kit's id again: python -m hardware.kits image TYPE NUMBER (docs/kits.md)")
        else:
            self.sheet.add("kit", True, f"the scan found {seen}; the EEPROM says {kit}")


async def check_board(wire: BenchWire, projector: str | None = "epson-escvp21",
                      timing: Timing | None = None) -> Sheet:
    """Run every check on the board behind `wire`; the sheet."""
    return await Bench(wire, projector, timing).run()
