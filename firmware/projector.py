# The classroom projector: one driver, the protocol (Epson ESC/VP21, BenQ
# RS-232, PJLink) coming from a table (projector.json on the board, made by
# hardware/projectors from its JSON files). Pure logic with time passed in as
# `now` (board uptime, ms); the bytes go through a `link` with
# `async exchange(frame, timeout_ms, end) -> reply` that raises OSError when
# nothing usable came back: SerialLink for RS-232 (a machine.UART on the board,
# pyserial in tests), pjlink.TcpLink for PJLink. docs/projectors.md has the rules.
# Heap: bench/module_heap.py compat projector (PJLink's link lives in its own
# module so an RS-232 room does not pay for it). Every function, attribute and
# distinct name costs heap once loaded, hence few and large functions here.
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

_MIN_POLL_MS = const(10000)  # never poll faster: some projectors drop commands sent too often
_SERIAL_POLL_MS = const(10)
_RUN_TICK_MS = const(250)

# The board form of a table: projector.json's "p" (hardware/projectors
# board_table()), one flat list read by position, no dict and no text beyond
# frames, reply prefixes and patterns. Commands are numbered 0 on, 1 off,
# 2 power, 3 lamp, 4 errors; their frames are at 0-4 ("" when absent).
_POWER = const(2)
_LAMP = const(3)
_ERRORS = const(4)
_MS = const(5)  # 5-9: each command's reply timeout (ms)
_ANS = const(8)  # 10-12: the reply prefixes of the queries, at _ANS + command
_END = const(13)  # what closes a reply
_ST = const(14)  # the power states: " <code>:<digit>" each, the digit an index in the names below
_WARM = const(15)  # warm-up then (16) cool-down, ms
_KINDS = const(17)  # the outcomes' kinds, a letter each: r refused, u unsupported, f failure, a auth
_OUT = const(18)  # 18...: the outcomes' patterns (a reply containing one means that)


def after_echo(reply, frame):
    """The reply without the projector's echo of the command (BenQ echoes):
    what follows the frame without its line endings, or all of it."""
    frame = frame.strip()
    i = reply.find(frame)
    return reply[i + len(frame):] if i >= 0 else reply


def parse(t, n, frame, reply):
    """What the reply to command `n` means, from the board table's list `t`:
    (True, value) when understood, the value being for a query the state
    ("on", "warming"...), the lamp hours (int) or the device's error
    (["err:<code>"], empty: none), None for a power command; (False, fault)
    otherwise, the fault None when there is none (refused, to be retried; a
    query the model lacks)."""
    tail = after_echo(reply, frame)
    ok = False
    v = "bad reply"
    for i in range(_OUT, len(t)):
        if t[i].encode() in tail:
            k = t[_KINDS][i - _OUT]
            if k == "f":
                v = "projector failure"
            elif k == "a":
                v = "auth"
            elif k == "u" and n < _POWER:
                v = "unsupported " + ("on", "off")[n]
            else:
                v = None  # refused: the wish is kept and retried; or a query the model lacks
            return ok, v
    if n < _POWER:
        ok = True  # a power command: no refusal is an acceptance
        v = None
    else:
        i = tail.find(t[_ANS + n].encode())
        if i >= 0:
            try:
                # the value: up to the reply's end (Epson "PWR=01\r:", BenQ
                # "*POW=ON#", PJLink "%1POWR=1\r"), without the line ending
                v = tail[i + len(t[_ANS + n]):].split(t[_END].encode())[0].decode().strip()
                if n == _LAMP:
                    v = int(v.split()[0])  # PJLink: "hours on/off" per lamp
                elif n == _ERRORS:
                    v = ["err:" + v] if v.strip("0") else []  # a code, all zeros: none
                else:
                    s = t[_ST]
                    i = s.find(" " + v + ":")
                    if i < 0 or ":" in v:
                        raise ValueError
                    v = ("off", "on", "warming", "cooling", "error")[int(s[i + len(v) + 2])]
                ok = True
            except (LookupError, ValueError):  # UnicodeError is a ValueError
                v = "bad reply"
    return ok, v


class Projector:
    def __init__(self, table, link, emit, poll_s=30, standby_after_s=600):
        self.t = table["p"]
        self.link = link
        self.emit = emit
        self.poll_ms = max(poll_s * 1000, _MIN_POLL_MS)
        self.standby_ms = standby_after_s * 1000
        self.state = self._shown = "unknown"  # _shown: last state reported in projector.changed
        self.lamp_h = None
        self.errors = []  # current faults, link and projector alike
        self.wish = None  # True in a session, False after it, None since boot
        self.target = None  # "on" or "off": a power command still to send
        self._unwanted = None  # when it was first seen on outside a session
        self._next = 0  # next exchange cycle due
        self._hold = 0  # no power command before this: lamp warm-up / cool-down

    def want(self, on, now):
        """Session start (True) or end (False); acts at the next step."""
        on = bool(on)
        if on != self.wish:
            self.wish = on
            self.target = "on" if on else "off"
            self._unwanted = None
            self._next = now

    async def step(self, now):
        """One cycle when due: power query, the command if allowed now and a
        power query after it, then lamp and error queries."""
        if now < self._next:
            return False
        t = self.t
        faults = []
        todo = [_POWER, _LAMP, _ERRORS]
        sent = False  # a power command went in this cycle
        try:
            while todo:
                n = todo.pop(0)
                frame = t[n].encode()
                if not frame:
                    continue  # a query the table lacks
                ok, v = parse(t, n, frame, await self.link.exchange(frame, t[_MS + n], t[_END].encode()))
                if not ok:
                    if n == _LAMP:
                        self.lamp_h = None  # no hours in this answer (PJLink ERR1: no lamp): not the last ones
                    elif n == _POWER and not sent:
                        # Refused (Epson ERR: not ready, PJLink ERR3) or not
                        # understood: `unknown` always comes with its fault.
                        v = v or "projector busy"
                    if v and v not in faults:
                        faults.append(v)
                    if n != _POWER or sent:
                        continue  # after a command: the state of the query before still holds
                    self.state = "unknown"  # no command on a state we cannot see
                    break
                if n == _LAMP:
                    self.lamp_h = v
                elif n == _ERRORS:
                    faults.extend(v)  # pyright: ignore[reportArgumentType]  (parse gives a list for the errors query)
                elif n < _POWER:  # our power command was accepted
                    self._hold = now + t[_WARM + n]
                else:
                    # A change seen (ours or the remote's) holds power
                    # commands for the lamp: BenQ says ON while warming.
                    s = self.state
                    if s in ("on", "warming") and v in ("off", "cooling"):
                        self._hold = now + t[_WARM + 1]
                    elif s in ("off", "cooling") and v in ("on", "warming"):
                        self._hold = now + t[_WARM]
                    self.state = s = v
                    # The rules, on a fresh state.
                    if not self.wish and s in ("on", "warming"):
                        # On outside a session (the remote): standby after a while.
                        if self._unwanted is None:
                            self._unwanted = now
                        elif now - self._unwanted >= self.standby_ms and self.target is None:
                            self.target = "off"
                    else:
                        self._unwanted = None
                    g = self.target
                    if g is None:
                        continue
                    if s in (("on", "warming") if g == "on" else ("off", "cooling")):
                        self.target = None  # there already, or on its way
                    elif not sent and now >= self._hold and s == ("off" if g == "on" else "on"):
                        # Otherwise warming, cooling, error or unknown: keep the wish.
                        sent = True
                        todo = [0 if g == "on" else 1, _POWER] + todo
        except OSError:
            self.state = "unknown"
            faults.append("no reply")
        s = self.state
        if s != "unknown" and s != self._shown:
            self._shown = s
            data = {"state": s}
            if self.lamp_h is not None:
                data["lamp_h"] = self.lamp_h
            self.emit("projector.changed", data)
        for f in faults:
            if f not in self.errors:
                self.emit("projector.fault", {"error": f})
        self.errors = faults
        # A wish still waiting (warm-up, cool-down, refusal) is retried sooner.
        self._next = now + (_MIN_POLL_MS if self.target else self.poll_ms)
        return True

    async def run(self, uptime_ms):
        """The driver's task; `uptime_ms` is the board clock's method."""
        while True:
            now = uptime_ms()
            # Checked here too: each step() call makes a coroutine object,
            # about 200 bytes of heap four times a second for nothing.
            if now >= self._next:
                try:
                    await self.step(now)
                except Exception as e:  # a driver bug must not stop the board
                    self.emit("projector.fault", {"error": "driver " + type(e).__name__})
                    self._next = uptime_ms() + self.poll_ms
            await _sleep_ms(_RUN_TICK_MS)


class SerialLink:
    """RS-232 through any port with write(), read(n) and any() or in_waiting:
    machine.UART(timeout=0) on the board, pyserial (timeout=0) in tests."""

    def __init__(self, port):
        self.port = port

    async def exchange(self, frame, timeout_ms, end):
        p = self.port
        buf = None  # None: not sent yet
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < timeout_ms:
            n = p.any() if hasattr(p, "any") else p.in_waiting
            if n:
                got = p.read(n) or b""
                if buf is not None:
                    buf += got
                    if end in after_echo(buf, frame):
                        return buf
                # else: a late reply to a timed-out command, dropped
            elif buf is None:
                p.write(frame)
                buf = b""
                t0 = ticks_ms()
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
