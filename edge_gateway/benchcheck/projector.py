"""The bench plays the room's projector on the board's projector port.

Sans I/O: `BenchProjector.receive(bytes)` takes what the board sent and
returns the projector's answer, as the makers' documents say a projector
answers (Epson "ESC/VP21 Command User's Guide", BenQ "Projector RS232
Command Control"), the same behaviour as devkit/sim/projector.py but without
the lamp's timing: the bench is not testing lamps, it wants to see the board
ask and command, and the board to take the answers. It starts in standby,
switches at once when told, and keeps every frame it heard with its time.

Only serial tables: a PJLink projector is on the network, not on the
board's port."""

from __future__ import annotations

import time
from collections.abc import Callable

from hardware.projectors import load_table

SERIAL_TABLES = ("epson-escvp21", "benq")


class BenchProjector:
    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        if name not in SERIAL_TABLES:
            raise ValueError(f"projector {name!r}: the bench plays {' or '.join(SERIAL_TABLES)} on the board's "
                             "serial port (a PJLink projector is reached over the network)")
        self.name = name
        self.table = load_table(name)
        self.clock = clock
        self.on = False
        self.frames: list[tuple[float, bytes]] = []  # (when, the frame as received)
        self.noise = bytearray()  # bytes that made no command: a wrong baud rate or protocol
        self._buf = b""
        frame = self.table["frame"]
        # What the board sends for each of the table's commands, stripped of
        # the line endings (BenQ leads with a CR that gets the prompt).
        self.commands = {key: (frame["prefix"] + c["send"] + frame["suffix"]).strip().encode()
                         for key, c in self.table["commands"].items()}

    def command_of(self, frame: bytes) -> str | None:
        """The table's name for a frame ("power", "on", ...), None for noise."""
        frame = frame.strip()
        return next((key for key, sent in self.commands.items() if sent == frame), None)

    def heard(self, key: str, since: float = float("-inf")) -> bool:
        return any(t >= since and self.command_of(f) == key for t, f in self.frames)

    def receive(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        while b"\r" in self._buf:
            i = self._buf.index(b"\r")
            line, self._buf = self._buf[:i + 1], self._buf[i + 1:]
            if line.strip():
                self.frames.append((self.clock(), line))
                if self.command_of(line) is None:
                    self.noise += line
            out += self._epson(line) if self.name == "epson-escvp21" else self._benq(line)
        return out

    def _epson(self, line: bytes) -> bytes:
        cmd = line.strip().decode("ascii", "replace").upper()
        values = {"PWR?": "01" if self.on else "04", "LAMP?": "1200", "ERR?": "00"}
        if not cmd:
            return b":"  # the null command: ready
        if cmd in values:
            return b"%s=%s\r:" % (cmd[:-1].encode(), values[cmd].encode())
        if cmd in ("PWR ON", "PWR OFF"):
            self.on = cmd == "PWR ON"
            return b":"
        return b"ERR\r:"

    def _benq(self, line: bytes) -> bytes:
        typed = line.rstrip(b"\r")
        text = typed.strip(b" \n\x00").decode("ascii", "replace")
        if not text:
            return b">"
        echo = typed + b"\r"
        if not (text.startswith("*") and text.endswith("#") and len(text) > 2):
            return echo + b"\r\n*Illegal format#\r\n"
        item, _, value = text[1:-1].lower().partition("=")
        if item == "pow" and value in ("on", "off"):
            self.on = value == "on"
        elif item == "pow" and value == "?":
            value = "on" if self.on else "off"
        elif item == "ltim" and value == "?":
            value = "1200"
        else:
            return echo + b"\r\n*Unsupported item#\r\n"
        return echo + b"\r\n*%s=%s#\r\n" % (item.upper().encode(), value.upper().encode())
