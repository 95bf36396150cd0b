"""A per-board stand-in for MicroPython's `machine` module.

Each simulated classroom gets its own `SimMachine`, passed to
`firmware.board.Board`, so several boards live in one process. It records
every output change with the simulator's time, so tests can assert that the
access-point relay never came on at boot, not even for a moment."""

from __future__ import annotations

import time
from typing import Callable


class SimPin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    _hw: "SimMachine"

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
    def __init__(self, hw: "SimMachine", id: int = 0, timeout: int = 5000) -> None:
        self.hw = hw
        self.timeout = timeout
        hw.wdt = self
        self.fed_at = hw.clock()

    def feed(self) -> None:
        self.fed_at = self.hw.clock()


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
        self.resets = 0
        self._reset_cause = reset_cause
        self.Pin = type("Pin", (SimPin,), {"_hw": self})

    def WDT(self, id: int = 0, timeout: int = 5000) -> SimWDT:  # noqa: N802 - machine's name
        return SimWDT(self, id, timeout)

    def _drive(self, pin_id: int, level: int) -> None:
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
        self.resets += 1
        raise SystemExit("machine.reset()")

    def unique_id(self) -> bytes:
        return id(self).to_bytes(8, "little")[:6]
