"""The bench's wires on a Raspberry Pi: GPIO lines through Adafruit Blinka
(`digitalio`), the projector port and the board's console through pyserial
(`serial.serial_for_url`, so a USB adapter, the Pi's own UART or a test URL
all do). Blinka is imported here only, when the bench runs on the Pi: the
`pi` extra (pip install 'preau[pi]').

Wiring (docs/benchcheck.md; BCM numbers, all 3.3 V, a common ground):

- button: the Pi's line to the board's button line, open drain: pressed is
  low, released lets the board's pull-up hold it high (an active-high button
  is driven push-pull instead);
- relay sense: a spare normally-open contact of the access-point relay
  between 3.3 V and the Pi's line, held low by the Pi's pull-down: what the
  relay does, not what its GPIO says, so a relay module of the wrong
  polarity is caught;
- LED sense: the board's LED GPIO to the Pi's line (polarity from the profile);
- reset (optional): the Pi's line to the board's EN/RUN pin, open drain;
  without it the bench resets the board through its console (machine.reset()).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import serial

from ..flash.errors import FlashError
from ..flash.repl import RawRepl, open_port
from .wire import BenchError

# The console's prologue: the board's own Board from its flash, once per
# raw REPL session (the names stay between commands).
PROLOGUE = """\
try:
    board
except NameError:
    import json
    from firmware.board import Board
    with open('board.json') as _f:
        board = Board(json.load(_f))
    i2c = board.i2c()
"""
WATCHDOG_MS = 8000  # the firmware's machine.WDT, which Ctrl-C does not stop (docs/flash.md)


def require_blinka() -> tuple[Any, Any]:
    try:
        import board  # type: ignore[import-not-found]  # Blinka's pin names for this Pi
        import digitalio  # type: ignore[import-not-found]
    except Exception as e:  # ImportError off the Pi's extra; Blinka raises others on a machine it does not know
        raise BenchError(f"Adafruit Blinka is not usable here ({e})",
                         "run the bench on its Raspberry Pi, with the pi extra: pip install 'preau[pi]'") from None
    return board, digitalio


class ReplConsole:
    """The board's USB console: the firmware stopped with Ctrl-C, then the
    bench's MicroPython through the raw REPL (edge_gateway/flash/repl.py).
    Blocking serial work, so the checks call it in a thread."""

    def __init__(self, port: str, baud: int = 115200, timeout: float = 10.0) -> None:
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self._repl: RawRepl | None = None

    def _open(self) -> RawRepl:
        if self._repl is None:
            repl = RawRepl(open_port(self.port, self.baud), timeout=self.timeout)
            try:
                repl.enter(soft_reset=False)
            except FlashError:
                repl.close()
                raise
            repl.keep_watchdog(WATCHDOG_MS)
            self._repl = repl
        return self._repl

    def _run(self, body: str) -> str:
        return self._open().exec(PROLOGUE + body).decode(errors="replace")

    async def run(self, body: str) -> str:
        return await asyncio.to_thread(self._run, body)

    def reset_board(self) -> None:
        self._open().exec_and_leave("import machine\nmachine.reset()\n")
        self.forget()

    def forget(self) -> None:
        """The board was reset: its REPL session is gone."""
        if self._repl is not None:
            self._repl.close()
            self._repl = None


class BlinkaWire:
    def __init__(self, profile: dict, *, console: str, projector_port: str | None, projector_baud: int = 9600,
                 button_gpio: int = 17, relay_gpio: int = 27, led_gpio: int = 22, reset_gpio: int | None = None
                 ) -> None:
        pins, digitalio = require_blinka()
        self.profile = profile
        self._digitalio = digitalio
        roles = profile["pins"]
        self._button_low = bool(roles["button"].get("active_low", True))
        self._led_low = bool(roles["led"].get("active_low", False))
        self._lines: list[Any] = []
        self._button = self._line(pins, button_gpio)
        if self._button_low:
            self._button.switch_to_output(value=True, drive_mode=digitalio.DriveMode.OPEN_DRAIN)
        else:
            self._button.switch_to_output(value=False)
        self._relay = self._line(pins, relay_gpio)
        self._relay.switch_to_input(pull=digitalio.Pull.DOWN)
        self._led = self._line(pins, led_gpio)
        self._led.switch_to_input()
        self._reset = None
        if reset_gpio is not None:
            self._reset = self._line(pins, reset_gpio)
            self._reset.switch_to_output(value=True, drive_mode=digitalio.DriveMode.OPEN_DRAIN)
        self.console = ReplConsole(console)
        self.projector_port: serial.Serial | None = None
        if projector_port is not None:
            try:
                self.projector_port = serial.serial_for_url(projector_port, baudrate=projector_baud, timeout=0)
            except (serial.SerialException, ValueError) as e:
                self._release_lines()
                raise BenchError(f"cannot open the projector port {projector_port} ({e})",
                                 "give the bench's port wired to the board's projector port with --projector-port "
                                 "(a USB RS-232 adapter: /dev/ttyUSB1; the Pi's UART: /dev/serial0)") from None

    def _line(self, pins: Any, gpio: int) -> Any:
        try:
            line = self._digitalio.DigitalInOut(getattr(pins, f"D{gpio}"))
        except AttributeError:
            self._release_lines()
            raise BenchError(f"this Raspberry Pi has no GPIO {gpio}", "give BCM GPIO numbers (0-27)") from None
        self._lines.append(line)
        return line

    def _release_lines(self) -> None:
        for line in self._lines:
            with contextlib.suppress(Exception):
                line.deinit()
        self._lines.clear()

    def press(self) -> None:
        self._button.value = not self._button_low

    def release(self) -> None:
        self._button.value = self._button_low  # open drain: high is let go

    def relay(self) -> bool:
        return bool(self._relay.value)

    def led(self) -> bool:
        return bool(self._led.value) != self._led_low

    async def reset(self) -> None:
        if self._reset is None:
            await asyncio.to_thread(self.console.reset_board)
            return
        self.console.forget()
        self._reset.value = False
        await asyncio.sleep(0.1)  # EN low: the ESP32 needs 50 us, an RC on EN much more
        self._reset.value = True

    async def close(self) -> None:
        self.console.forget()
        if self.projector_port is not None:
            self.projector_port.close()
        self._release_lines()
