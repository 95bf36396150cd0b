"""A simulated classroom: the real firmware (`firmware.app.Classroom`) on a
simulated board (`SimMachine`), with a teacher's finger on the button, and
optionally a simulated projector (RS-232 on a pseudo-terminal, or PJLink on
TCP) and a kit bus (`SimI2C`). A watchdog reset reboots the firmware the way
the chip would: outputs drop at once, the firmware starts again from its
first line with reset cause "watchdog"."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time

from firmware.app import Classroom
from firmware.board import Board
from firmware.clock import Clock
from firmware.compat import ticks_add, ticks_ms
from firmware.config import validate
from hardware.boards import load_profile

from .i2c import SimI2C
from .machine import SimMachine

log = logging.getLogger("preau.sim")


class SimClassroom:
    # Every simulated board made in this process, so a test harness can check
    # the access-point rules on all of them (tests/conftest.py does).
    instances: list[SimClassroom] = []
    # Set by boot(), which the constructor calls: there is always a current boot.
    app: Classroom
    machine: SimMachine

    def __init__(self, config: dict, storage: str | None = None, profile: str | None = None,
                 projector=None, kit_bus: SimI2C | None = None, key: bytes | str | None = None) -> None:
        """`projector`: a simulator from devkit.sim.projector matching
        config["projector"]; `kit_bus`: the Qwiic socket (an empty bus by
        default, so kits can be plugged in later); `key`: the board's key
        (32 bytes, or its 64 hex characters as `preau provision` gives it),
        put into its config.json: the board then signs all it publishes
        (protocol/mac.py). Without a key, here or in `config`, it publishes
        unsigned."""
        config = dict(config)
        if key is not None:
            config["key"] = key.hex() if isinstance(key, bytes) else key
        self.config = validate(config, where=f"sim config {config.get('room')}")
        self.key: bytes | None = bytes.fromhex(self.config["key"]) if self.config["key"] else None
        self.profile = load_profile(profile or self.config["board"])
        self.storage = storage or tempfile.mkdtemp(prefix=f"preau-board-{self.config['room']}-")
        os.makedirs(self.storage, exist_ok=True)
        self.room = self.config["room"]
        self.projector_sim = projector
        self.table = None
        if self.config["projector"]:
            from hardware.projectors import board_table

            self.table = board_table(self.config["projector"])
            if self.table["io"] == "tcp" and projector is not None:
                self.table["port"] = projector.port  # the simulator's free port, not 4352
        self.i2c = kit_bus if kit_bus is not None else SimI2C()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serial = None
        self.boots: list[SimMachine] = []
        self._ahead_ms = 0  # advance(): the board's ticks run this far ahead of the real ones
        SimClassroom.instances.append(self)
        self.boot()

    def boot(self, reset_cause: int = SimMachine.PWRON_RESET) -> None:
        """Power on: a fresh machine, the real firmware from its first line."""
        self.machine = SimMachine(reset_cause=reset_cause)
        self.boots.append(self.machine)
        b = self.profile["pins"]["button"]
        self.machine.inputs[b["pin"]] = 1 if b.get("active_low", True) else 0  # released
        self.machine.i2c = self.i2c
        if self.table is not None and self.table["io"] != "tcp" and self.projector_sim is not None:
            import serial

            if self._serial is not None:
                self._serial.close()
            self._serial = serial.serial_for_url(self.projector_sim.path, baudrate=self.table.get("baud", 9600),
                                                 timeout=0)
            self.machine.uart = self._serial
        self.machine.on_reset = self._on_reset
        board = Board(self.profile, machine=self.machine)
        self.app = Classroom(self.config, board, storage=self.storage, projector=self.table,
                             clock=Clock(self._ticks), log=lambda msg: log.warning("%s: %s", self.room, msg))

    def _ticks(self) -> int:
        return ticks_add(ticks_ms(), self._ahead_ms)

    def advance(self, ms: int) -> None:
        """Move the board's clock `ms` forward, as if that time had passed
        (a lamp's 30 s warm-up, without a test waiting for it). Its watchdog
        and MQTT keepalive stay on real time. Less than 2**29 ms at once: the
        board's clock reads its ticks' difference as signed."""
        self._ahead_ms += ms

    def _on_reset(self, machine: SimMachine) -> None:
        # From the watchdog's thread or the loop's own: outputs already
        # dropped; the loop restarts the firmware.
        if self._loop is not None and machine is self.machine:
            cause = SimMachine.WDT_RESET if machine.wdt_fired else SimMachine.SOFT_RESET
            self._loop.call_soon_threadsafe(self._reboot, cause, machine)

    def _reboot(self, cause: int, machine: SimMachine) -> None:
        if self._loop is None or machine is not self.machine:
            return  # stopped meanwhile, or this boot was already reset
        log.warning("%s: reset (cause %d)", self.room, cause)
        if self._task is not None:
            self._task.cancel()
        self.boot(cause)
        self.start()

    def pin(self, role: str) -> int:
        return self.profile["pins"][role]["pin"]

    @property
    def relay(self) -> bool:
        """Is the access point powered right now (the relay's real output)?"""
        return self.app.board.relay()

    def relay_history(self, machine: SimMachine | None = None) -> list[bool]:
        """Every level the relay was driven to in one boot (the current one by
        default), as access point on/off, whatever the relay's polarity."""
        pin = self.pin("ap_relay")
        off = 1 if self.profile["pins"]["ap_relay"].get("active_low") else 0
        return [level != off for _, p, level in (machine or self.machine).history if p == pin]

    @property
    def led_mode(self) -> str:
        return self.app.led_mode(self.app.clock.uptime_ms())

    def start(self) -> asyncio.Task:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self.app.run(), name=f"board-{self.room}")
        return self._task

    def hang(self, seconds: float) -> None:
        """Inject a hang: the firmware's event loop blocks (a driver stuck in
        a busy loop). Only the watchdog can get the board out of it."""
        time.sleep(seconds)

    async def stop(self, clean: bool = True) -> None:
        self._loop = None  # no watchdog reboot while stopping
        if clean:
            await self.app.shutdown()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, SystemExit):
                pass
        for machine in self.boots:
            machine.stop_watchdogs()
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    async def press(self, seconds: float = 0.2) -> None:
        """A finger on the button for `seconds` (active-low input)."""
        b = self.profile["pins"]["button"]
        pressed, released = (0, 1) if b.get("active_low", True) else (1, 0)
        self.machine.set_input(b["pin"], released)
        self.machine.set_input(b["pin"], pressed)
        await asyncio.sleep(seconds)
        self.machine.set_input(b["pin"], released)
        await asyncio.sleep(0.05)
