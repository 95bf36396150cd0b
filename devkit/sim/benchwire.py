"""The bench's wires on a simulated board: `preau bench`'s checks
(edge_gateway/benchcheck) drive the real firmware in `SimClassroom` through
the same seam as a Raspberry Pi's GPIO lines (edge_gateway/benchcheck/wire.py).

- the button line: the simulated board's button input, pressed low per the
  profile (`button_wired=False`: a wire that never reaches the board);
- the relay line: the relay's output side, as the bench's sense contact reads
  it: the relay pin's level, or its inverse for an active-low relay module
  fitted by mistake (`relay_module="active_low"`: the access point is on
  whenever the board drives the pin low, at boot first);
- the LED line: the LED pin, with the profile's polarity;
- the projector port: a pseudo-terminal between the board's UART and the
  bench, which answers as the projector (`projector_wired=False`: the cable
  is out, whatever the board sends is lost and nothing comes back);
- the console: the firmware stopped (as Ctrl-C stops it on the board's
  REPL), then the bench's MicroPython run with the board's own `Board` and
  its I2C bus, the kit plugged into it (`kit=SimKit(...)`, or none).

A reset is a power cycle of the simulated board: outputs drop, the firmware
starts again from its first line on the same flash."""

from __future__ import annotations

import contextlib
import io
import os
import select
import tty

from .classroom import SimClassroom
from .i2c import SimI2C, SimKit


class BenchPty:
    """The projector cable: the board opens `path` (its UART), the bench reads
    and writes the other end, non-blocking as pyserial with timeout=0."""

    def __init__(self, wired: bool = True) -> None:
        self.wired = wired
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)

    def read(self, size: int = 1) -> bytes:
        if not select.select([self._master], [], [], 0)[0]:
            return b""
        try:
            data = os.read(self._master, size)
        except (BlockingIOError, OSError):
            return b""
        return data if self.wired else b""  # a pulled cable: the board's bytes are lost

    def write(self, data: bytes, /) -> int:
        return os.write(self._master, data) if self.wired else len(data)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class SimConsole:
    def __init__(self, wire: SimBenchWire) -> None:
        self.wire = wire

    async def run(self, body: str) -> str:
        sim = self.wire.sim
        if self.wire.firmware_running:
            await sim.stop(clean=False)  # Ctrl-C: the firmware's loop ends, its `finally` drives the relay off
            self.wire.firmware_running = False
        board = sim.app.board
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(body, {"board": board, "i2c": board.i2c()})  # the bench's code, as the raw REPL runs it
        return out.getvalue()


class SimBenchWire:
    def __init__(self, config: dict, *, storage: str | None = None, kit: SimKit | None = None,
                 projector_wired: bool = True, button_wired: bool = True, relay_module: str = "active_high",
                 key: bytes | str | None = None) -> None:
        """`config`: the board's config.json keys (with "projector" for a
        serial projector table); the board is built here, started by the
        bench's first reset."""
        self.bus = SimI2C()
        if kit is not None:
            self.bus.attach(kit)
        self.pty = BenchPty(wired=projector_wired)
        self.sim = SimClassroom(config, storage=storage, projector=self.pty, kit_bus=self.bus, key=key)
        self.profile = self.sim.profile
        self.projector_port = self.pty
        self.console = SimConsole(self)
        self.button_wired = button_wired
        self.relay_inverted = relay_module == "active_low"
        self.firmware_running = False
        self._pressed = False

    def _pins(self, role: str) -> tuple[int, bool]:
        entry = self.profile["pins"][role]
        return entry["pin"], bool(entry.get("active_low", role == "button"))

    def press(self) -> None:
        pin, low = self._pins("button")
        if self.button_wired:
            self.sim.machine.set_input(pin, 0 if low else 1)

    def release(self) -> None:
        pin, low = self._pins("button")
        if self.button_wired:
            self.sim.machine.set_input(pin, 1 if low else 0)

    def relay(self) -> bool:
        pin, _ = self._pins("ap_relay")
        return bool(self.sim.machine.output(pin)) != self.relay_inverted

    def led(self) -> bool:
        pin, low = self._pins("led")
        return bool(self.sim.machine.output(pin)) != low

    async def reset(self) -> None:
        await self.sim.stop(clean=False)  # power off: outputs drop
        self.sim.boot()
        self.sim.start()
        self.firmware_running = True

    async def close(self) -> None:
        await self.sim.stop(clean=self.firmware_running)
        self.firmware_running = False
        self.pty.close()
