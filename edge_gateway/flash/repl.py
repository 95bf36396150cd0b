"""MicroPython's raw REPL over pyserial, as the board's pyexec.c speaks it
(docs/flash.md): Ctrl-A enters it ("raw REPL; CTRL-B to exit\\r\\n>"); code
ends with Ctrl-D and the board answers "OK", the output, Ctrl-D, the
traceback, Ctrl-D and the prompt ">". Raw-paste mode ("\\x05A\\x01", answered
"R\\x01" and a window size) streams code with flow control, so a slow UART
never drops a byte; a board without it answers "R\\x00" and the plain raw
mode is used.

The port opens through `serial.serial_for_url`, so a test gives a
pseudo-terminal or a `socket://` URL. Nothing sent is ever logged: the
configuration the flasher writes carries the board's password and key."""

from __future__ import annotations

import errno
import struct
import time

import serial

from .errors import NoAnswer, PortBusy, PortDenied

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"soft reboot\r\n"


class ReplError(Exception):
    """The link broke mid-command: a timeout or bytes out of protocol."""


class BoardException(Exception):
    """The code ran and raised: the message is the board's traceback."""

    def __init__(self, traceback: str, output: bytes) -> None:
        super().__init__(traceback)
        self.traceback = traceback
        self.output = output


def open_port(port: str, baudrate: int = 115200) -> serial.Serial:
    try:
        return serial.serial_for_url(port, baudrate=baudrate, timeout=0.05, exclusive=True)
    except serial.SerialException as e:
        code = e.errno if isinstance(e.errno, int) else None
        if code in (errno.EACCES, errno.EPERM):
            raise PortDenied(f"permission denied on {port}: this user may not open serial ports",
                             "add yourself to the dialout group (sudo usermod -aG dialout $USER), "
                             "then log out and in again") from None
        if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
            raise PortBusy(f"{port} is in use by another program",
                           "close the other program on that port (a serial monitor, mpremote, Thonny, "
                           "screen), then run preau flash again") from None
        if code == errno.ENOENT:
            raise PortBusy(f"{port} does not exist (the board was unplugged?)",
                           "plug the board in, check the cable, and give the port `preau flash` lists") from None
        raise PortBusy(f"cannot open {port}: {e}",
                       "check the cable and that no other program uses the port") from None


class RawRepl:
    def __init__(self, link: serial.Serial, timeout: float = 10.0) -> None:
        self.link = link
        self.timeout = timeout  # longest silence in the middle of an answer
        self.raw_paste = True
        self.watchdog_ms: int | None = None

    # ----------------------------------------------------------- bytes

    def _read_until(self, ending: bytes, timeout: float) -> bytes:
        """Bytes up to and including `ending`; at most `timeout` s of silence."""
        data = bytearray()
        last = time.monotonic()
        while not data.endswith(ending):
            chunk = self.link.read(1)
            if chunk:
                data += chunk
                last = time.monotonic()
            elif time.monotonic() - last > timeout:
                raise ReplError(f"no {ending!r} after {bytes(data[-60:])!r}")
        return bytes(data)

    def _read_exactly(self, n: int, timeout: float) -> bytes:
        data = bytearray()
        last = time.monotonic()
        while len(data) < n:
            chunk = self.link.read(n - len(data))
            if chunk:
                data += chunk
                last = time.monotonic()
            elif time.monotonic() - last > timeout:
                raise ReplError(f"expected {n} bytes, got {bytes(data)!r}")
        return bytes(data)

    def _drain(self) -> None:
        while self.link.read(256):
            pass

    # ----------------------------------------------------------- modes

    def enter(self, soft_reset: bool = True, timeout: float = 5.0) -> None:
        """Stop whatever runs and enter the raw REPL; `soft_reset` gives a
        fresh interpreter (main.py does not run from the raw REPL)."""
        # Two Ctrl-C: the first may land in an `except` of the running program.
        self.link.write(b"\r\x03\x03")
        self._drain()
        self.link.write(b"\r\x01")
        try:
            self._read_until(RAW_BANNER + b">", timeout)
            if soft_reset:
                self.link.write(b"\x04")
                self._read_until(SOFT_REBOOT, timeout)
                self._read_until(RAW_BANNER, timeout)
            else:
                # The ">" prompt was read: the next command expects to read one.
                self.link.write(b"\x01")  # Ctrl-A in the raw REPL prints the banner again
                self._read_until(RAW_BANNER, timeout)
        except ReplError:
            raise NoAnswer("the board does not answer the raw REPL (it is busy, or MicroPython is not on it)",
                           "press the board's reset button (or unplug it and plug it in again) and run preau flash "
                           "again; if it still does not answer, write MicroPython with --image FILE") from None

    def soft_reset(self, timeout: float = 5.0) -> None:
        """A fresh interpreter, still in the raw REPL (Ctrl-D on an empty command)."""
        self._read_until(b">", self.timeout)
        self.link.write(b"\x04")
        try:
            self._read_until(SOFT_REBOOT, timeout)
            self._read_until(RAW_BANNER, timeout)
        except ReplError:
            raise NoAnswer("the board did not come back from a soft reset",
                           "press the board's reset button and run preau flash again") from None

    def leave(self) -> None:
        self.link.write(b"\r\x02")

    def keep_watchdog(self, timeout_ms: int) -> None:
        """The firmware started machine.WDT, which a soft reset does not stop:
        every command feeds it from now on."""
        self.watchdog_ms = timeout_ms

    # ----------------------------------------------------------- commands

    def _send(self, code: bytes) -> None:
        self._read_until(b">", self.timeout)
        if self.raw_paste:
            self.link.write(b"\x05A\x01")
            answer = self._read_exactly(2, self.timeout)
            if answer == b"R\x01":
                self._paste(code)
                return
            if answer != b"R\x00":  # a board older than raw-paste: it read the bytes as code
                self._read_until(RAW_BANNER + b">", self.timeout)
            self.raw_paste = False
        for i in range(0, len(code), 256):
            self.link.write(code[i:i + 256])
            time.sleep(0.01)  # no flow control in plain raw mode: a UART's buffer is small
        self.link.write(b"\x04")
        if self._read_exactly(2, self.timeout) != b"OK":
            raise ReplError("the board did not accept the command")

    def _paste(self, code: bytes) -> None:
        window = struct.unpack("<H", self._read_exactly(2, self.timeout))[0]
        remain = window
        i = 0
        while i < len(code):
            while remain == 0 or self.link.in_waiting:
                b = self._read_exactly(1, self.timeout)
                if b == b"\x01":
                    remain += window
                elif b == b"\x04":  # the board ended the paste early
                    self.link.write(b"\x04")
                    return
                else:
                    raise ReplError(f"unexpected {b!r} during raw paste")
            chunk = code[i:i + remain]
            self.link.write(chunk)
            remain -= len(chunk)
            i += len(chunk)
        self.link.write(b"\x04")
        self._read_until(b"\x04", self.timeout)

    def exec(self, code: str) -> bytes:
        """Run `code` on the board and return what it printed; a traceback
        raises BoardException."""
        if self.watchdog_ms is not None:
            code = ("try:\n import machine\n machine.WDT(timeout=%d).feed()\nexcept Exception:\n pass\n"
                    % self.watchdog_ms) + code
        self._send(code.encode())
        out = self._read_until(b"\x04", self.timeout)[:-1]
        err = self._read_until(b"\x04", self.timeout)[:-1]
        if err:
            raise BoardException(err.decode(errors="replace").replace("\r\n", "\n"), out)
        return out

    def exec_and_leave(self, code: str) -> None:
        """Send code that does not come back (machine.reset()); wait only
        until the board has taken it."""
        self._send(code.encode())

    def close(self) -> None:
        try:
            # As mpremote does: an ESP32's auto-reset circuit must not see
            # the lines drop in the wrong order on close.
            self.link.rts = False
            self.link.dtr = False
        except (OSError, serial.SerialException):
            pass
        self.link.close()
