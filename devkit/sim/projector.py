"""Simulated projectors at the byte boundary, for firmware/projector.py and
for any client of the three protocols.

Epson ESC/VP21 and BenQ answer on a pseudo-terminal (open `sim.path` with
`serial.serial_for_url(sim.path, baudrate=9600, timeout=0)`), PJLink on a TCP
server on 127.0.0.1 (`sim.port`). Each keeps the lamp's own rules: warm-up
and cool-down take their time (divided by `speed`, so tests run fast; or on
a `clock` the test moves itself), power changes are refused meanwhile as the
real devices do, lamp hours advance while the lamp is lit.

What they answer follows the makers' documents, not our driver, so that
independent client libraries work against them (tests/test_projector_sims.py
runs pypjlink2, epson-projector and benqprojector): every PJLink class 1
command with its ERR1..ERR4 and the ERRA of authentication (JBMIA "PJLink
Specifications" 1.04); ESC/VP21's null command, get and set formats and the
ERR of a refused or unknown command (Epson "ESC/VP21 Command User's Guide for
Business Projectors"); BenQ's `>` prompt after a carriage return, its echo and
its three refusals (BenQ "Projector RS232 Command Control" guides).

Faults are injected by setting attributes: `error` / `erst` (the projector's
error code), `busy` (command names answered "not now": Epson `ERR`, BenQ
`*Block item#`, PJLink `ERR3`), `abnormal` (Epson), `failure` (PJLink ERR4),
`lamps` (PJLink: 0 for a lamp-less model, `ERR1`), `silent` (answers
nothing), `garble` (how many coming replies are spoiled). Every frame received
is kept in `frames`, so a test asserts the exact bytes its table says.
"""

from __future__ import annotations

import hashlib
import os
import re
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
        self.busy: set[str] = set()  # command names answered "not now"
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
                line = self._split()
                if line is None:
                    break
                self._record(line)
                if self.silent:
                    continue  # heard nothing, did nothing (a cable pulled out)
                reply = self.answer(line)
                if self.garble and line.strip():  # a command's reply, not a prompt
                    self.garble -= 1
                    reply = self.spoil(reply)
                os.write(self._master, reply)

    def _split(self) -> bytes | None:
        """The next line received, up to and with its carriage return: both
        protocols end a command with CR, and a CR alone is a command too."""
        i = self._buf.find(b"\r")
        if i < 0:
            return None
        line, self._buf = self._buf[: i + 1], self._buf[i + 1 :]
        return line

    def _record(self, line: bytes) -> None:
        self.frames.append(line)

    def answer(self, line: bytes) -> bytes:
        raise NotImplementedError

    def spoil(self, reply: bytes) -> bytes:
        raise NotImplementedError


class EpsonSim(_SerialSim):
    """ESC/VP21. A get command answers `NAME=value\\r:` (`PWR?\\r` ->
    `PWR=01\\r:`), a set command `:`, the null command (a CR alone, what
    clients send to see that the projector is ready) `:`; a command refused
    now or unknown `ERR\\r:`. Answers PWR, LAMP, ERR, SOURCE and SNO; sets
    PWR ON/OFF and SOURCE. In standby it answers the queries and PWR ON and
    refuses other set commands (the guide's "network on" standby: PWR=04)."""

    CODES = {OFF: "04", WARMING: "02", ON: "01", COOLING: "03"}
    SOURCES = ("10", "11", "14", "1F", "20", "21", "24", "2F", "30", "41", "42", "52", "53", "A0")

    def __init__(self, speed: float = 1.0, warm_s: float = 30, cool_s: float = 20, **kw) -> None:
        self.abnormal = False  # abnormal standby: PWR=05
        self.source = "30"  # HDMI
        self.serial = "X4JW7200158"  # SNO? (the label on the projector's base)
        super().__init__(speed, warm_s=warm_s, cool_s=cool_s, **kw)

    def answer(self, line: bytes) -> bytes:
        cmd = line.strip().decode("ascii", "replace").upper()
        if not cmd:
            return b":"  # the null command: ready
        name, _, arg = cmd.partition(" ")
        if name.rstrip("?") in self.busy:
            return b"ERR\r:"
        value = None
        if cmd == "PWR?":
            value = "05" if self.abnormal else self.CODES[self.power]
        elif cmd == "LAMP?":
            value = "%d" % self.lamp_h
        elif cmd == "ERR?":
            value = self.error
        elif cmd == "SOURCE?":
            value = self.source
        elif cmd == "SNO?":
            value = self.serial
        if value is not None:
            return b"%s=%s\r:" % (name.rstrip("?").encode(), value.encode())
        if cmd in ("PWR ON", "PWR OFF"):
            return b":" if self.switch(cmd == "PWR ON") else b"ERR\r:"
        if name == "SOURCE" and arg in self.SOURCES and self.power == ON:
            self.source = arg
            return b":"
        return b"ERR\r:"

    def spoil(self, reply: bytes) -> bytes:
        return GARBAGE + b"\r:"  # ends like a reply, means nothing


class BenQSim(_SerialSim):
    """BenQ RS-232. A carriage return gets the `>` prompt; the command that
    follows is echoed as typed, then answered on its own line:
    `\\r*pow=?#\\r` -> `>*pow=?#\\r\\r\\n*POW=ON#\\r\\n`. Refusals: `*Block
    item#` (not now), `*Unsupported item#` (not on this model), `*Illegal
    format#` (not `*...#`). Reports only ON/OFF: warming counts as ON,
    cooling as OFF. Answers pow, ltim, modelname (any time) and sour (the
    source: while on). `frames` keeps each command with the CRs before it."""

    SOURCES = ("rgb", "rgb2", "ypbr", "dvid", "hdmi", "hdmi2", "vid", "svid", "network", "usbreader", "hdbaset")

    def __init__(self, speed: float = 1.0, warm_s: float = 30, cool_s: float = 90, **kw) -> None:
        self.model = "MW560"  # modelname=?
        self.source = "hdmi"
        self._lead = b""  # CRs received since the last command
        super().__init__(speed, warm_s=warm_s, cool_s=cool_s, **kw)

    def _record(self, line: bytes) -> None:
        if not line.strip():
            self._lead += line
            return
        self.frames.append(self._lead + line)
        self._lead = b""

    def answer(self, line: bytes) -> bytes:
        typed = line.rstrip(b"\r")
        if not typed.strip(b" \n\x00"):
            return b">"
        echo = typed + b"\r"
        text = typed.strip(b" \n\x00").decode("ascii", "replace")
        if not (text.startswith("*") and text.endswith("#") and len(text) > 2):
            return echo + b"\r\n*Illegal format#\r\n"
        item, _, value = text[1:-1].lower().partition("=")
        if item in self.busy:
            return echo + b"\r\n*Block item#\r\n"
        out = None
        if item == "pow" and value == "?":
            out = "ON" if self.power in (WARMING, ON) else "OFF"
        elif item == "pow" and value in ("on", "off"):
            if not self.switch(value == "on"):
                return echo + b"\r\n*Block item#\r\n"
            out = value.upper()
        elif item == "ltim" and value == "?":
            out = "%d" % self.lamp_h
        elif item == "modelname" and value == "?":
            out = self.model
        elif item == "sour" and (value == "?" or value in self.SOURCES):
            if self.power not in (WARMING, ON):
                return echo + b"\r\n*Block item#\r\n"
            if value != "?":
                self.source = value
            out = self.source.upper()
        if out is None:
            return echo + b"\r\n*Unsupported item#\r\n"
        return echo + b"\r\n*%s=%s#\r\n" % (item.upper().encode(), out.encode())

    def spoil(self, reply: bytes) -> bytes:
        return b"*" + GARBAGE + b"#\r\n"


# PJLink class 1: a command line is "%1", four characters, a space, a
# parameter of 1 to 128 bytes, CR. Anything else gets no answer at all.
_PJLINK_LINE = re.compile(rb"%1([A-Za-z0-9]{4}) ([^\r]{1,128})")
_PJLINK_QUERIES = ("ERST", "LAMP", "INST", "NAME", "INF1", "INF2", "INFO", "CLSS")


class PJLinkSim(Lamp):
    """PJLink class 1 on 127.0.0.1:`port`; `password` turns authentication on.

    Answers every class 1 command: POWR, INPT, AVMT (set and query), ERST,
    LAMP, INST, NAME, INF1, INF2, INFO, CLSS; `OK` or the value, else ERR1
    (unknown command), ERR2 (parameter out of range), ERR3 (not now: a power
    change during warm-up or cooling, input and mute while not on, anything in
    `busy`), ERR4 (`failure`). With a password the greeting is `PJLINK 1
    <8 hex digits>` and the first command of a connection must start with
    md5_hex(random + password), else `PJLINK ERRA` and the connection closes;
    later commands may carry the digest or not."""

    def __init__(self, speed: float = 1.0, password: str | None = None, warm_s: float = 30, cool_s: float = 20,
                 **kw) -> None:
        super().__init__(speed, warm_s=warm_s, cool_s=cool_s, **kw)
        self.password = password
        self.challenge: str | None = None  # the greeting's random number; None: a new one per connection
        self.erst = "000000"  # fan lamp temperature cover filter other
        self.failure = False  # ERR4 to everything
        self.busy: set[str] = set()  # command names answered ERR3
        self.lamps = 1  # 0: a laser or LED model, LAMP ? answers ERR1
        self.name = "Salle 12"  # NAME ?: UTF-8, up to 64 bytes
        self.manufacturer = "Preau"  # INF1 ?: ASCII, up to 32
        self.product = "Sim PJ-1"  # INF2 ?
        self.info = "firmware 1.0"  # INFO ?
        self.inputs = ["11", "31", "32"]  # INST ?: RGB 1, DIGITAL 1 and 2
        self.input = "31"
        self.video_mute = self.audio_mute = False
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
                challenge = self.challenge or secrets.token_hex(4)
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
                    if digest is not None and line[:32] == digest:
                        line = line[32:]
                    elif first and digest is not None:
                        self.auth_failures += 1
                        conn.sendall(b"PJLINK ERRA\r")
                        return
                    first = False
                    self.frames.append(line + b"\r")
                    if self.silent:
                        continue
                    reply = self.answer(line)
                    if reply is None:
                        continue  # not a command line: no answer
                    if self.garble:
                        self.garble -= 1
                        reply = GARBAGE
                    conn.sendall(reply + b"\r")

    def answer(self, line: bytes) -> bytes | None:
        """The answer to one command line (without its CR), None for none."""
        m = _PJLINK_LINE.fullmatch(line)
        if m is None:
            return None
        cmd = m.group(1).decode().upper()
        arg = m.group(2).decode("utf-8", "replace")
        return b"%%1%s=%s" % (cmd.encode(), self._value(cmd, arg).encode("utf-8"))

    def _value(self, cmd: str, arg: str) -> str:
        on = self.power == ON
        if cmd not in ("POWR", "INPT", "AVMT") + _PJLINK_QUERIES:
            return "ERR1"
        if self.failure:
            return "ERR4"
        if cmd in self.busy:
            return "ERR3"
        if cmd == "POWR":
            if arg == "?":
                return {OFF: "0", ON: "1", COOLING: "2", WARMING: "3"}[self.power]
            if arg not in ("0", "1"):
                return "ERR2"
            if not self.switch(arg == "1"):
                return "ERR3"  # warming up or cooling down
            if arg == "0":
                self.video_mute = self.audio_mute = False
            return "OK"
        if cmd == "INPT":
            if arg != "?" and arg not in self.inputs:
                return "ERR2"  # no such input
            if not on:
                return "ERR3"
            if arg != "?":
                self.input = arg
                return "OK"
            return self.input
        if cmd == "AVMT":
            if arg != "?" and arg not in ("10", "11", "20", "21", "30", "31"):
                return "ERR2"
            if not on:
                return "ERR3"
            if arg == "?":
                v, a = self.video_mute, self.audio_mute
                return "31" if v and a else "11" if v else "21" if a else "30"
            if arg[0] in "13":
                self.video_mute = arg[1] == "1"
            if arg[0] in "23":
                self.audio_mute = arg[1] == "1"
            return "OK"
        if arg != "?":
            return "ERR2"  # the other commands are queries only
        if cmd == "ERST":
            return self.erst
        if cmd == "LAMP":
            if not self.lamps:
                return "ERR1"  # no lamp (laser, LED)
            lit = 1 if self.power in (WARMING, ON) else 0
            return " ".join(["%d %d" % (self.lamp_h, lit)] * self.lamps)
        return {"INST": " ".join(self.inputs), "NAME": self.name, "INF1": self.manufacturer,
                "INF2": self.product, "INFO": self.info, "CLSS": "1"}[cmd]
