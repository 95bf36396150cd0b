"""A per-board stand-in for MicroPython's `machine` module.

Each simulated classroom gets its own `SimMachine`, passed to
`firmware.board.Board`, so several boards live in one process. It records
every output change with the simulator's time, so tests can assert that the
access-point relay never came on at boot, not even for a moment."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any


class SimPin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    _hw: SimMachine

    def __init__(self, pin_id: int, mode: int = -1, pull: int = -1, *, value: int | None = None) -> None:
        self.id = pin_id
        self.mode = mode
        self.pull = pull
        self._handler: Callable | None = None
        self._trigger = 0
        hw = self._hw
        hw.pins[pin_id] = self
        if mode == self.OUT:
            level = 0 if value is None else int(bool(value))
            hw._drive(pin_id, level)
        elif pin_id not in hw.inputs:
            hw.inputs[pin_id] = 1 if pull == self.PULL_UP else 0

    def value(self, v: int | None = None) -> int | None:
        hw = self._hw
        if v is None:
            if self.mode == self.OUT:
                return hw.outputs.get(self.id, 0)
            return hw.inputs.get(self.id, 0)
        if self.mode != self.OUT:
            raise OSError(f"pin {self.id} is not an output")
        hw._drive(self.id, int(bool(v)))
        return None

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)

    def irq(self, handler: Callable | None = None, trigger: int = 3) -> None:
        self._handler = handler
        self._trigger = trigger


class SimWDT:
    """machine.WDT: once started it runs until the machine resets.

    A daemon thread watches the simulator's clock, so it notices a starved
    watchdog even while the event loop is stuck in a blocking call (the hang
    a watchdog exists for)."""

    def __init__(self, hw: SimMachine, id: int = 0, timeout: int = 5000) -> None:
        self.hw = hw
        self.timeout = timeout
        self.fed_at = hw.clock()
        self._stop = threading.Event()
        hw.wdt = self
        # Poll often enough to fire within a tenth of the timeout, in real time.
        self._poll_s = min(0.01, timeout / 10000)
        self._thread = threading.Thread(target=self._watch, name=f"sim-wdt-{id}", daemon=True)
        self._thread.start()

    def feed(self) -> None:
        self.fed_at = self.hw.clock()

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            if (self.hw.clock() - self.fed_at) * 1000 > self.timeout:
                self.hw._watchdog_reset()
                return


class SimSPI:
    """machine.SPI that records its settings and the bytes written; no device
    answers (reads give zeros)."""

    def __init__(self, args: tuple, kwargs: dict) -> None:
        self.args = args
        self.kwargs = kwargs
        self.written = bytearray()

    def write(self, buf: bytes) -> None:
        self.written += buf

    def read(self, nbytes: int, write: int = 0) -> bytes:
        return bytes(nbytes)


class SimMachine:
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

    def __init__(self, clock: Callable[[], float] = time.monotonic, reset_cause: int = 1) -> None:
        self.clock = clock
        self.pins: dict[int, SimPin] = {}
        self.inputs: dict[int, int] = {}
        self.outputs: dict[int, int] = {}
        self.history: list[tuple[float, int, int]] = []
        self.wdt: SimWDT | None = None
        self.wdt_fired = False
        self.wdt_fired_at: float | None = None
        # Called once the outputs are at their reset level, by the watchdog's
        # thread (`wdt_fired` set) or by reset() (the firmware's own restart,
        # e.g. the `reboot` command); the classroom simulator reboots the
        # firmware from it, via loop.call_soon_threadsafe.
        self.on_reset: Callable[[SimMachine], None] | None = None
        self.halted = False  # reset: the CPU of this boot runs no code any more
        self.uart: Any = None  # a pyserial-like object the simulator wires to UART()
        self.i2c: Any = None  # an I2C bus stand-in the simulator wires to I2C()/SoftI2C()
        self.uart_args: tuple[tuple, dict] | None = None  # how the firmware opened them
        self.i2c_args: tuple[tuple, dict] | None = None
        self.spis: list[SimSPI] = []
        self.resets = 0
        self._reset_cause = reset_cause
        self._lock = threading.Lock()  # the watchdog thread drives pins too
        self.Pin = type("Pin", (SimPin,), {"_hw": self})

    # WDT, UART, I2C, SPI: capitalised, as `machine` names them.
    def WDT(self, id: int = 0, timeout: int = 5000) -> SimWDT:
        if self.wdt is not None:
            return self.wdt  # already running: it cannot be stopped or reconfigured
        return SimWDT(self, id, timeout)

    def UART(self, *args: Any, **kwargs: Any) -> Any:
        if self.uart is None:
            raise OSError("no UART wired")
        self.uart_args = (args, kwargs)
        return self.uart

    def I2C(self, *args: Any, **kwargs: Any) -> Any:
        if self.i2c is None:
            raise OSError("no I2C wired")
        self.i2c_args = (args, kwargs)
        return self.i2c

    SoftI2C = I2C

    def SPI(self, *args: Any, **kwargs: Any) -> SimSPI:
        spi = SimSPI(args, kwargs)
        self.spis.append(spi)
        return spi

    def stop_watchdogs(self) -> None:
        """Test cleanup only: real firmware can never stop a watchdog."""
        if self.wdt is not None:
            self.wdt._stop.set()
            self.wdt._thread.join()

    def _watchdog_reset(self) -> None:
        # A reset puts every GPIO back to an input: nothing drives the relay,
        # its pull-down holds it off (the profiles refuse active-low relays).
        # Recorded as level 0 in the history; the dead firmware drives nothing
        # any more (its later writes are ignored, as a reset CPU runs no code).
        with self._lock:
            self.wdt_fired = True
            self.wdt_fired_at = self._halt()
        if self.on_reset is not None:
            self.on_reset(self)

    def _halt(self) -> float:
        # Caller holds the lock. Every output back to its reset level, once.
        now = self.clock()
        self.halted = True
        for pin_id, level in list(self.outputs.items()):
            if level != 0:
                self.outputs[pin_id] = 0
                self.history.append((now, pin_id, 0))
        return now

    def _drive(self, pin_id: int, level: int) -> None:
        with self._lock:
            if self.halted:
                return
            if self.outputs.get(pin_id) != level:
                self.outputs[pin_id] = level
                self.history.append((self.clock(), pin_id, level))

    def set_input(self, pin_id: int, level: int) -> None:
        """The outside world drives an input pin (a finger on the button)."""
        old = self.inputs.get(pin_id, 0)
        level = int(bool(level))
        self.inputs[pin_id] = level
        pin = self.pins.get(pin_id)
        if pin is None or pin._handler is None or old == level:
            return
        edge = SimPin.IRQ_RISING if level else SimPin.IRQ_FALLING
        if pin._trigger & edge:
            pin._handler(pin)

    def output(self, pin_id: int) -> int:
        return self.outputs.get(pin_id, 0)

    def reset_cause(self) -> int:
        return self._reset_cause

    def reset(self) -> None:
        """machine.reset(): outputs drop, this boot's code stops (the task that
        called it ends here) and the simulator boots the firmware again with
        reset cause SOFT_RESET. Never SystemExit: other boards share the loop."""
        self.resets += 1
        with self._lock:
            self._halt()
        self.stop_watchdogs()  # a reset stops the chip's watchdog: the new boot starts its own
        if self.on_reset is not None:
            self.on_reset(self)
        raise asyncio.CancelledError("machine.reset()")

