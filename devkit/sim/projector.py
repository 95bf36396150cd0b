"""Simulated projectors at the byte boundary, for firmware/projector.py.

Epson ESC/VP21 and BenQ answer on a pseudo-terminal (open `sim.path` with
`serial.serial_for_url(sim.path, baudrate=9600, timeout=0)`), PJLink on a TCP
server on 127.0.0.1 (`sim.port`). Each keeps the lamp's own rules: warm-up
and cool-down take their time (divided by `speed`, so tests run fast; or on
a `clock` the test moves itself), power changes are refused meanwhile as the
real devices do, lamp hours advance while the lamp is lit. Faults are
injected by setting attributes: `error` (the projector's error code),
`silent` (answers nothing), `garble` (how many coming replies are spoiled).
Every frame received is kept in `frames`, so a test asserts the exact bytes
its table says.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import select
import socket
import threading
import time
import tty
from collections.abc import Callable

OFF, WARMING, ON, COOLING = "off", "warming", "on", "cooling"
GARBAGE = b"\x7f?Z\x00"


class Lamp:
    """Power and lamp of one projector on a clock sped up `speed` times, or
    on `clock` (simulated seconds) when given: then its time moves only when
    the test moves it, so a slow exchange on a busy machine takes none of the
    warm-up (time sped up 200 times turns 20 ms of latency into 4 s)."""

    def __init__(self, speed: float = 1.0, warm_s: float = 30, cool_s: float = 20, lamp_h: float = 1200,
                 clock: Callable[[], float] | None = None) -> None:
        self.speed = speed
        self.warm_s = warm_s
        self.cool_s = cool_s
        self._clock = clock
        self._t0 = time.monotonic()
        self._power = OFF
        self._since = 0.0  # simulated seconds
        self._lamp_s = lamp_h * 3600.0
        self._lit_since: float | None = None
        self._lock = threading.Lock()

    def now_s(self) -> float:
        if self._clock is not None:
            return self._clock()
        return (time.monotonic() - self._t0) * self.speed

    def now_ms(self) -> int:
        """Simulated uptime: drive the firmware's `now` with this."""
        return int(self.now_s() * 1000)

    def _update(self) -> None:
        now = self.now_s()
        if self._power == WARMING and now - self._since >= self.warm_s:
            self._power, self._since = ON, self._since + self.warm_s
        elif self._power == COOLING and now - self._since >= self.cool_s:
            self._power, self._since = OFF, self._since + self.cool_s

    @property
    def power(self) -> str:
        with self._lock:
            self._update()
            return self._power

    @property
    def lamp_h(self) -> int:
        with self._lock:
            lit = self._lamp_s
            if self._lit_since is not None:
                lit += self.now_s() - self._lit_since
            return int(lit // 3600)

    def set_lamp_hours(self, hours: float) -> None:
        """Lamp hours so far (fractions let a test see the next hour soon)."""
        with self._lock:
            self._lamp_s = hours * 3600.0
            if self._lit_since is not None:
                self._lit_since = self.now_s()

    def switch(self, on: bool) -> bool:
        """A power command: False when refused (warm-up, cool-down)."""
        with self._lock:
            self._update()
            now = self.now_s()
            if self._power in (WARMING, COOLING):
                return False
            if on and self._power == OFF:
                self._power, self._since, self._lit_since = WARMING, now, now
            elif not on and self._power == ON:
                self._power, self._since = COOLING, now
                if self._lit_since is not None:
                    self._lamp_s += now - self._lit_since
                self._lit_since = None
            return True

    def remote(self, on: bool) -> bool:
        """Someone pressed the remote control's power button."""
        return self.switch(on)


class _SerialSim(Lamp):
    """A projector on the master side of a pseudo-terminal."""

    def __init__(self, speed: float = 1.0, **kw) -> None:
        super().__init__(speed, **kw)
        self.error = "00"
        self.silent = False
        self.garble = 0
        self.frames: list[bytes] = []
        self._buf = b""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=type(self).__name__, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self._master)
        os.close(self._slave)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                self._buf += os.read(self._master, 256)
            except OSError:
                return
            while True:
                frame = self._split()
                if frame is None:
                    break
                self.frames.append(frame)
                reply = self.answer(frame)
                if self.silent or reply is None:
                    continue
                if self.garble:
                    self.garble -= 1
                    reply = self.spoil(reply)
                os.write(self._master, reply)

    def _split(self) -> bytes | None:
        raise NotImplementedError

    def answer(self, frame: bytes) -> bytes | None:
        raise NotImplementedError

    def spoil(self, reply: bytes) -> bytes:
        raise NotImplementedError


class EpsonSim(_SerialSim):
    """ESC/VP21: `PWR?\\r` -> `PWR=01\\r:`; a refused command -> `ERR\\r:`."""

    CODES = {OFF: "04", WARMING: "02", ON: "01", COOLING: "03"}

    def __init__(self, speed: float = 1.0, warm_s: float = 30, cool_s: float = 20, **kw) -> None:
        self.abnormal = False  # abnormal standby: PWR=05
        super().__init__(speed, warm_s=warm_s, cool_s=cool_s, **kw)

    def _split(self) -> bytes | None:
        i = self._buf.find(b"\r")
        if i < 0:
            return None
        frame, self._buf = self._buf[: i + 1], self._buf[i + 1 :]
        return frame

    def answer(self, frame: bytes) -> bytes:
        cmd = frame.strip().decode("ascii", "replace").upper()
        if cmd == "PWR?":
            code = "05" if self.abnormal else self.CODES[self.power]
            return b"PWR=%s\r:" % code.encode()
        if cmd == "LAMP?":
            return b"LAMP=%d\r:" % self.lamp_h
        if cmd == "ERR?":
            return b"ERR=%s\r:" % self.error.encode()
        if cmd in ("PWR ON", "PWR OFF"):
            return b":" if self.switch(cmd == "PWR ON") else b"ERR\r:"
        return b"ERR\r:"

    def spoil(self, reply: bytes) -> bytes:
        return GARBAGE + b"\r:"  # ends like a reply, means nothing


class BenQSim(_SerialSim):
    """BenQ: echoes `*pow=?#`, then answers `*POW=ON#`; refuses with
    `*Block item#`. Reports only ON/OFF: warming counts as ON, cooling as OFF."""

    def __init__(self, speed: float = 1.0, warm_s: float = 30, cool_s: float = 90, **kw) -> None:
        super().__init__(speed, warm_s=warm_s, cool_s=cool_s, **kw)

    def _split(self) -> bytes | None:
        j = self._buf.find(b"#\r")  # a command ends with '#' and CR
        if j < 0:
            return None
        frame, self._buf = self._buf[: j + 2], self._buf[j + 2 :]
        return frame

    def answer(self, frame: bytes) -> bytes:
        i = frame.find(b"*")
        body = frame[i + 1 : frame.rfind(b"#")].decode("ascii", "replace").lower() if i >= 0 else ""
        echo = b"*" + body.encode() + b"#"
        if "=" not in body:
            return echo + b"\r\n*Illegal format#\r\n"
        item, value = body.split("=", 1)
        if item == "pow" and value == "?":
            out = "ON" if self.power in (WARMING, ON) else "OFF"
            return echo + b"\r\n*POW=%s#\r\n" % out.encode()
        if item == "pow" and value in ("on", "off"):
            if not self.switch(value == "on"):
                return echo + b"\r\n*Block item#\r\n"
            return echo + b"\r\n*POW=%s#\r\n" % value.upper().encode()
        if item == "ltim" and value == "?":
            return echo + b"\r\n*LTIM=%d#\r\n" % self.lamp_h
        return echo + b"\r\n*Unsupported item#\r\n"

    def spoil(self, reply: bytes) -> bytes:
        return b"*" + GARBAGE + b"#\r\n"


class PJLinkSim(Lamp):
    """PJLink class 1 on 127.0.0.1:`port`; `password` turns authentication on."""

    def __init__(self, speed: float = 1.0, password: str | None = None, warm_s: float = 30, cool_s: float = 20,
                 **kw) -> None:
        super().__init__(speed, warm_s=warm_s, cool_s=cool_s, **kw)
        self.password = password
        self.erst = "000000"  # fan lamp temperature cover filter other
        self.failure = False  # ERR4 to everything
        self.silent = False
        self.garble = 0
        self.frames: list[bytes] = []  # commands, authentication prefix removed
        self.auth_failures = 0
        self.connections = 0
        self.idle_s = 30.0  # real projectors close an idle connection
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="PJLinkSim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self.idle_s / self.speed)
            digest = None  # with a password: what the first command must start with
            if self.password is None:
                conn.sendall(b"PJLINK 0\r")
            else:
                challenge = secrets.token_hex(4)
                digest = hashlib.md5((challenge + self.password).encode()).hexdigest().encode()
                conn.sendall(b"PJLINK 1 %s\r" % challenge.encode())
            buf = b""
            first = True
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(256)
                except (TimeoutError, OSError):
                    return  # idle too long: the projector hangs up
                if not chunk:
                    return
                buf += chunk
                while b"\r" in buf:
                    line, buf = buf.split(b"\r", 1)
                    if first and digest is not None:
                        if line[:32] != digest:
                            self.auth_failures += 1
                            conn.sendall(b"PJLINK ERRA\r")
                            return
                        line = line[32:]
                    first = False
                    self.frames.append(line + b"\r")
                    if self.silent:
                        continue
                    reply = self.answer(line)
                    if self.garble:
                        self.garble -= 1
                        reply = GARBAGE
                    conn.sendall(reply + b"\r")

    def answer(self, line: bytes) -> bytes:
        text = line.decode("ascii", "replace")
        if not text.startswith("%1") or len(text) < 7 or text[6] != " ":
            return b"%1" + text[2:6].encode() + b"=ERR1"
        cmd, arg = text[2:6].upper(), text[7:]
        head = b"%1" + cmd.encode() + b"="
        if self.failure:
            return head + b"ERR4"
        if cmd == "POWR":
            if arg == "?":
                return head + {OFF: b"0", ON: b"1", COOLING: b"2", WARMING: b"3"}[self.power]
            if arg in ("0", "1"):
                return head + (b"OK" if self.switch(arg == "1") else b"ERR3")
            return head + b"ERR2"
        if cmd == "LAMP" and arg == "?":
            return head + b"%d %d" % (self.lamp_h, 1 if self.power in (WARMING, ON) else 0)
        if cmd == "ERST" and arg == "?":
            return head + self.erst.encode()
        return head + b"ERR1"
