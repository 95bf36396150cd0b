"""The seam between the checks and a board on the bench.

A `BenchWire` is what the bench's wires give: the button line it presses,
the relay and LED lines it reads, a way to reset the board, the serial port
wired to the board's projector port (the bench plays the projector), and the
board's console (its USB serial: MicroPython's raw REPL). On the Raspberry
Pi it is `edge_gateway.benchcheck.blinka.BlinkaWire`; in the tests
`devkit.sim.benchwire.SimBenchWire` wires the simulated board the same way.

Levels are the board's meaning, not volts: `relay()` is True when the access
point would be powered, `led()` when the LED is lit; the wire applies the
board profile's polarities."""

from __future__ import annotations

from typing import Protocol


class BenchError(Exception):
    """The bench cannot run at all (a missing library, a port that does not
    open): `str(e)` says what, `fix` what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class SerialPort(Protocol):
    """What the bench needs of the projector port: pyserial opened with
    timeout=0 (reads return at once, possibly nothing)."""

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...


class Console(Protocol):
    async def run(self, body: str) -> str:
        """Stop the firmware if it runs, then run MicroPython `body` on the
        board with `board` (firmware.board.Board from the board's own
        board.json) and `i2c` (board.i2c()) defined; what it printed."""
        ...


class BenchWire(Protocol):
    @property
    def profile(self) -> dict:
        """The board profile (hardware/boards), validated."""
        ...

    @property
    def projector_port(self) -> SerialPort | None:
        """The bench's end of the projector line; None: not wired on this bench."""
        ...

    @property
    def console(self) -> Console: ...

    def press(self) -> None:
        """Hold the button line pressed (until release())."""
        ...

    def release(self) -> None: ...

    def relay(self) -> bool:
        """Is the access point's relay on (its output side, not the GPIO)?"""
        ...

    def led(self) -> bool:
        """Is the board's LED lit?"""
        ...

    async def reset(self) -> None:
        """Reset the board: its outputs drop and the firmware starts again
        from its first line. Returns once the reset is under way."""
        ...

    async def close(self) -> None: ...
