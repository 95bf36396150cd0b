"""A simulated classroom: the real firmware (`firmware.app.Classroom`) on a
simulated board (`SimMachine`), with a teacher's finger on the button."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile

from firmware.app import Classroom
from firmware.board import Board
from firmware.config import validate
from hardware.boards import load_profile

from .machine import SimMachine

log = logging.getLogger("preau.sim")


class SimClassroom:
    # Every simulated board made in this process, so a test harness can check
    # the access-point rules on all of them (tests/conftest.py does).
    instances: list["SimClassroom"] = []

    def __init__(self, config: dict, storage: str | None = None, profile: str | None = None) -> None:
        self.config = validate(dict(config), where=f"sim config {config.get('room')}")
        self.profile = load_profile(profile or self.config["board"])
        self.storage = storage or tempfile.mkdtemp(prefix=f"preau-board-{self.config['room']}-")
        os.makedirs(self.storage, exist_ok=True)
        self.room = self.config["room"]
        self.app: Classroom | None = None
        self.machine: SimMachine | None = None
        self._task: asyncio.Task | None = None
        self.boots: list[SimMachine] = []
        SimClassroom.instances.append(self)
        self.boot()

    def boot(self) -> None:
        """Power on: a fresh machine, the real firmware from its first line."""
        self.machine = SimMachine()
        self.boots.append(self.machine)
        b = self.profile["pins"]["button"]
        self.machine.inputs[b["pin"]] = 1 if b.get("active_low", True) else 0  # released
        board = Board(self.profile, machine=self.machine)
        self.app = Classroom(self.config, board, storage=self.storage,
                             log=lambda msg: log.warning("%s: %s", self.room, msg))

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
        self._task = asyncio.create_task(self.app.run(), name=f"board-{self.room}")
        return self._task

    async def stop(self, clean: bool = True) -> None:
        if clean:
            await self.app.shutdown()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, SystemExit):
                pass

    async def press(self, seconds: float = 0.2) -> None:
        """A finger on the button for `seconds` (active-low input)."""
        b = self.profile["pins"]["button"]
        pressed, released = (0, 1) if b.get("active_low", True) else (1, 0)
        self.machine.set_input(b["pin"], released)
        self.machine.set_input(b["pin"], pressed)
        await asyncio.sleep(seconds)
        self.machine.set_input(b["pin"], released)
        await asyncio.sleep(0.05)
