# The classroom projector: one driver, the protocol (Epson ESC/VP21, BenQ
# RS-232, PJLink) coming from a table (projector.json on the board, made by
# hardware/projectors from its JSON files). Pure logic with time passed in as
# `now` (board uptime, ms); the bytes go through a `link` with
# `async exchange(frame, timeout_ms, end) -> reply` that raises OSError when
# nothing usable came back: SerialLink for RS-232 (a machine.UART on the board,
# pyserial in tests), pjlink.TcpLink for PJLink. docs/projectors.md has the rules.
# Heap: bench/module_heap.py compat projector (PJLink's link lives in its own
# module so an RS-232 room does not pay for it).
#
# Lamps are the reason for the rules: cutting power to a lamp that is warming
# up, or striking it again while it still cools, shortens its life, so the
# driver never sends off during warm-up nor on during cool-down. It keeps the
# wish and sends it once the projector allows it.
import asyncio

from .compat import const, ticks_diff, ticks_ms

# MicroPython sleeps in int ms; asyncio.sleep(0.01) would allocate a float
# on every serial poll. CPython has no sleep_ms.
_sleep_ms = getattr(asyncio, "sleep_ms", None) or (lambda ms: asyncio.sleep(ms / 1000))


OFF = "off"
ON = "on"
WARMING = "warming"
COOLING = "cooling"
ERROR = "error"
UNKNOWN = "unknown"

_MIN_POLL_MS = const(10000)  # never poll faster: some projectors drop commands sent too often
_SERIAL_POLL_MS = const(10)
_RUN_TICK_MS = const(250)
_FAULTS = {"bad": "bad reply", "auth": "auth", "failure": "projector failure"}


def after_echo(reply, frame):
    """The reply without the projector's echo of the command (BenQ echoes)."""
    core = frame.strip(b"\r\n")
    i = reply.find(core)
    return reply[i + len(core):] if i >= 0 else reply


def parse(table, name, frame, reply):
    """(outcome, value) for the reply to command `name`. Outcome: "ok", an
    outcome from the table ("refused", "unsupported", "failure", "auth") or
    "bad" (no pattern matched); value: the query's answer as str, or None."""
    tail = after_echo(reply, frame)
    for pattern, kind in table["out"]:
        if pattern.encode() in tail:
            return kind, None
    prefix = table["ans"].get(name)
    if prefix is None:
        return "ok", None  # a power command: no refusal is an acceptance
    i = tail.find(prefix.encode())
    if i < 0:
        return "bad", None
    value = tail[i + len(prefix):]
    for stop in (b"\r", b"\n", b"#"):
        j = value.find(stop)
        if j >= 0:
            value = value[:j]
    try:
        return "ok", value.decode().strip()
    except UnicodeError:
        return "bad", None


def error_texts(table, value):
    """The faults an error query reports, as texts (empty: none)."""
    if "flags" in table:  # PJLink ERST: one digit per part, 0 fine
        found = []
        flags, levels = table["flags"], table["levels"]
        for i, ch in enumerate(value[:len(flags)]):
            if ch != "0":
                found.append(flags[i] + " " + levels.get(ch, ch))
        return found
    if not value.strip("0"):
        return []
    return [table.get("err", {}).get(value, "error " + value)]


class Projector:
    def __init__(self, table, link, emit, poll_s=30, standby_after_s=600):
        self.table = table
        self.link = link
        self.emit = emit
        self.poll_ms = max(poll_s * 1000, _MIN_POLL_MS)
        self.standby_ms = standby_after_s * 1000
        self.state = UNKNOWN
        self.lamp_h = None
        self.errors = []  # current faults, link and projector alike
        self.wish = None  # True in a session, False after it, None since boot
        self.target = None  # ON or OFF: a power command still to send
        self._frames = {n: c.encode() for n, c in table["cmd"].items()}
        self._next = 0  # next exchange cycle due
        self._hold = 0  # no power command before this: lamp warm-up / cool-down
        self._shown = UNKNOWN  # last state reported in projector.changed
        self._unwanted = None  # when it was first seen on outside a session
        self._faults = []

    # -- inputs from the app ----------------------------------------------
    def want(self, on, now):
        """Session start (True) or end (False); acts at the next step."""
        on = bool(on)
        if on == self.wish:
            return
        self.wish = on
        self.target = ON if on else OFF
        self._unwanted = None
        self._next = now

    def due(self, now):
        return now >= self._next

    # -- pure rules -------------------------------------------------------
    def command(self, now):
        """The power command to send now (after a fresh power query), or None."""
        s = self.state
        if not self.wish and s in (ON, WARMING):
            # On outside a session (the remote): standby after a while.
            if self._unwanted is None:
                self._unwanted = now
            elif now - self._unwanted >= self.standby_ms and self.target is None:
                self.target = OFF
        else:
            self._unwanted = None
        t = self.target
        if t is None:
            return None
        if s in ((ON, WARMING) if t == ON else (OFF, COOLING)):
            self.target = None  # there already, or on its way
            return None
        if now < self._hold or s != (OFF if t == ON else ON):
            return None  # warming, cooling, error or unknown: keep the wish
        return t

    def take(self, name, kind, value, now):
        """Apply one parsed reply; returns the outcome ("ok" or a fault's)."""
        if kind == "ok" and name == "power":
            state = self.table["st"].get(value)
            if state is None:
                kind = "bad"
            else:
                old = self.state
                if old in (ON, WARMING) and state in (OFF, COOLING):
                    self._hold = now + self.table["cool_ms"]
                elif old in (OFF, COOLING) and state in (ON, WARMING):
                    self._hold = now + self.table["warm_ms"]
                self.state = state
        elif kind == "ok" and name == "lamp":
            try:
                self.lamp_h = int(value.split()[0])  # PJLink: "hours on/off" per lamp
            except (ValueError, IndexError):
                kind = "bad"
        elif kind == "ok" and name == "errors":
            self._faults.extend(error_texts(self.table, value))
        elif kind == "ok":  # our power command was accepted
            self._hold = now + self.table["warm_ms" if name == ON else "cool_ms"]
        fault = None
        if kind == "bad" or kind == "auth" or kind == "failure":
            fault = _FAULTS[kind]
        elif kind == "unsupported" and name in (ON, OFF):
            fault = "unsupported " + name
        if fault is not None and fault not in self._faults:
            self._faults.append(fault)
        return kind

    def finish(self, now):
        """End of a cycle: report changes and new faults, plan the next one."""
        s = self.state
        if s != UNKNOWN and s != self._shown:
            self._shown = s
            data = {"state": s}
            if self.lamp_h is not None:
                data["lamp_h"] = self.lamp_h
            self.emit("projector.changed", data)
        for f in self._faults:
            if f not in self.errors:
                self.emit("projector.fault", {"error": f})
        self.errors = self._faults
        self._faults = []
        # A wish still waiting (warm-up, cool-down, refusal) is retried sooner.
        self._next = now + (_MIN_POLL_MS if self.target else self.poll_ms)

    # -- the exchanges ------------------------------------------------------
    async def _ask(self, name, now):
        frame = self._frames[name]
        t = self.table
        reply = await self.link.exchange(frame, t["ms"].get(name, t["reply_ms"]), t["end"].encode())
        kind, value = parse(t, name, frame, reply)
        return self.take(name, kind, value, now)

    async def step(self, now):
        """One cycle when due: power query, the command if allowed now and a
        power query after it, then lamp and error queries."""
        if not self.due(now):
            return False
        try:
            if await self._ask("power", now) == "ok":
                cmd = self.command(now)
                if cmd is not None:
                    await self._ask(cmd, now)
                    await self._ask("power", now)
                    self.command(now)  # clears the target once reached
                for name in ("lamp", "errors"):
                    if name in self._frames:
                        await self._ask(name, now)
            else:
                self.state = UNKNOWN
        except OSError:
            self.state = UNKNOWN  # no command on a state we cannot see
            if "no reply" not in self._faults:
                self._faults.append("no reply")
        self.finish(now)
        return True

    async def run(self, uptime_ms):
        """The driver's task; `uptime_ms` is the board clock's method."""
        while True:
            try:
                await self.step(uptime_ms())
            except Exception as e:  # a driver bug must not stop the board
                self.emit("projector.fault", {"error": "driver " + type(e).__name__})
                self._next = uptime_ms() + self.poll_ms
            await _sleep_ms(_RUN_TICK_MS)


class SerialLink:
    """RS-232 through any port with write(), read(n) and any() or in_waiting:
    machine.UART(timeout=0) on the board, pyserial (timeout=0) in tests."""

    def __init__(self, port):
        self.port = port

    def _waiting(self):
        p = self.port
        return p.any() if hasattr(p, "any") else p.in_waiting

    async def exchange(self, frame, timeout_ms, end):
        p = self.port
        while self._waiting():  # a late reply to a timed-out command
            p.read(self._waiting())
        p.write(frame)
        buf = b""
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < timeout_ms:
            n = self._waiting()
            if n:
                buf += p.read(n) or b""
                if end in after_echo(buf, frame):
                    return buf
            else:
                await _sleep_ms(_SERIAL_POLL_MS)
        raise OSError("no reply")


def open_link(table, uart=None, host=None, password=None):
    """The link the table's transport needs: the projector's UART (serial) or
    its address (PJLink over TCP, imported only then: it costs heap)."""
    if table["io"] == "tcp":
        from .pjlink import TcpLink

        return TcpLink(host, table.get("port", 4352), password)
    return SerialLink(uart)
