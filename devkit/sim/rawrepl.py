"""A MicroPython board on a pseudo-terminal, for the flasher's tests
(`preau flash`, edge_gateway/flash/): the other side of the pty speaks
MicroPython's REPL as pyexec.c does (friendly REPL, raw REPL, raw-paste mode
with its flow control, soft reset), and whatever code it receives runs in the
real MicroPython VM (the WebAssembly port, under Node:
devkit/sim/rawrepl.mjs) with the board's flash as its file system.

The flash lives here between boots (`flash`: path -> bytes, None for a
folder): a VM process is one boot, from a reset to the next. A hard reset
(`machine.reset()`, or `reset()`) starts a new VM on the same flash and runs
/main.py, as the chip does, so the flashed firmware boots in MicroPython and
its MQTT client reaches a real broker (the VM's sockets are Node's). Ctrl-C
on a running main.py stops it: the VM is dropped for a fresh one, flash
kept, prompt shown.

    board = RawReplBoard(identity=ESP32_POE).start()
    serial.serial_for_url(board.port)   # what the flasher opens
    ...
    board.stop()

`answers=False` makes a board that takes bytes and never answers (a busy
or wedged board); `capacity` is the flash's size for the file system."""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("rawrepl.mjs")

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"
# MICROPY_REPL_STDIN_BUFFER_MAX is 256 on the ESP32: the raw-paste window is half.
WINDOW = 128
VERSION = "v1.27.0 on 2025-12-10"  # the VM's, which is what answers

# os.uname() of the boards the simulator plays (the VM itself is the
# WebAssembly port; its sys.implementation is what it is).
ESP32_POE = {"sysname": "esp32", "nodename": "esp32", "release": "1.27.0", "version": VERSION,
             "machine": "Olimex ESP32-POE with ESP32"}
PICO_W = {"sysname": "rp2", "nodename": "rp2", "release": "1.27.0", "version": VERSION,
          "machine": "Raspberry Pi Pico W with RP2040"}


class SimError(RuntimeError):
    pass


class _Boot:
    """One VM process: the board from one reset to the next."""

    def __init__(self, board: RawReplBoard, run_main: bool, reset_cause: int) -> None:
        node = shutil.which("node")
        if node is None:
            raise SimError("node not found on PATH: the simulated board needs Node 20+")
        config = {"capacity": board.capacity, "identity": board.identity, "reset_cause": reset_cause,
                  "heap": board.heap}
        self.board = board
        self.replies: queue.Queue[dict] = queue.Queue()
        self.proc = subprocess.Popen([node, str(DRIVER), "--config", json.dumps(config)], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.main_running = run_main
        self._reader = threading.Thread(target=self._read, name="sim-vm", daemon=True)
        self._reader.start()
        flash = {p: (None if b is None else base64.b64encode(b).decode()) for p, b in board.flash.items()}
        self._send({"files": flash})
        self._wait("ready", 60)
        if run_main:
            self._send({"op": "main"})

    def _send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
        self.proc.stdin.flush()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            ev = msg.get("ev")
            if ev == "out":
                self.board._console(base64.b64decode(msg["b64"]))
            elif ev == "reset":
                self.board._reset_requested(self)
            elif ev == "done" and self.main_running:
                # main.py returned (its tasks run on) or raised: as on the
                # board, a traceback goes to the console.
                self.main_running = False
                if msg["err"]:
                    self.board._console(msg["err"].encode())
            else:
                self.replies.put(msg)
        self.replies.put({"ev": "exit"})

    def _wait(self, ev: str, timeout: float) -> dict:
        try:
            msg = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise SimError(f"the VM did not answer ({ev}) within {timeout} s") from None
        if msg.get("ev") != ev:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            raise SimError(f"the VM answered {msg} instead of {ev}: {err}")
        return msg

    def exec(self, code: str, timeout: float = 120) -> str | None:
        self._send({"op": "exec", "code": code})
        return self._wait("done", timeout)["err"]

    def files(self, timeout: float = 30) -> dict[str, bytes | None]:
        self._send({"op": "files"})
        files = self._wait("files", timeout)["files"]
        return {p: (None if b is None else base64.b64decode(b)) for p, b in files.items()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


class RawReplBoard:
    """A MicroPython board behind a pseudo-terminal: `port` is its device."""

    def __init__(self, identity: dict | None = None, flash: dict[str, bytes | None] | None = None,
                 capacity: int = 1536 * 1024, answers: bool = True, heap: int = 1024 * 1024) -> None:
        self.identity = identity or ESP32_POE
        self.flash: dict[str, bytes | None] = dict(flash or {})
        self.capacity = capacity
        self.answers = answers
        self.heap = heap
        self.console = bytearray()  # everything the board printed
        self.resets = 0
        self.raw_pastes = 0  # code blocks received in raw-paste mode
        self.raw_execs = 0  # and in plain raw mode
        self._lock = threading.RLock()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._boot: _Boot | None = None
        self._mode = "friendly"  # friendly | raw | running
        self._line = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sim-rawrepl", daemon=True)
        self._pending_reset = threading.Event()

    # ----------------------------------------------------------- life

    def start(self, run_main: bool = True) -> RawReplBoard:
        """Power on: a VM on the flash, /main.py run if there is one."""
        self._power_on(run_main, reset_cause=1)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._drop_boot()
        if self._thread.is_alive():
            self._thread.join(5)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def files(self) -> dict[str, bytes | None]:
        """The flash now."""
        with self._lock:
            if self._boot is not None:
                self.flash = self._boot.files()
            return dict(self.flash)

    def reset(self) -> None:
        """The reset button (or the USB adapter's RTS line)."""
        with self._lock:
            self._hard_reset()

    def _power_on(self, run_main: bool, reset_cause: int) -> None:
        with self._lock:
            if run_main and "/main.py" in self.flash:
                self._mode = "running"
            else:
                self._mode = "friendly"
            self._boot = _Boot(self, run_main and self._mode == "running", reset_cause)
            if self._mode == "friendly":
                self._write(self._banner())

    def _drop_boot(self) -> None:
        if self._boot is not None:
            try:
                self.flash = self._boot.files(timeout=10)
            except SimError:
                pass  # a VM stuck in a blocking loop: what it wrote since boot is lost
            self._boot.stop()
            self._boot = None

    def _hard_reset(self) -> None:
        self._drop_boot()
        self._write(b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n")
        self._power_on(True, reset_cause=2)
        self.resets += 1  # counted once the board runs again

    def _reset_requested(self, boot: _Boot) -> None:
        # From the VM's reader thread: machine.reset() was called.
        if boot is self._boot:
            self._pending_reset.set()

    def _banner(self) -> bytes:
        return (f"MicroPython {VERSION}; {self.identity['machine']}\r\n"
                'Type "help()" for more information.\r\n>>> ').encode()

    # ----------------------------------------------------------- serial side

    def _console(self, data: bytes) -> None:
        # MicroPython's stdout is cooked: "\n" goes out as "\r\n".
        self._write(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    def _write(self, data: bytes) -> None:
        self.console += data
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return
            view = view[n:]

    def _read_byte(self) -> bytes | None:
        import select

        while not self._stop.is_set():
            if self._pending_reset.is_set():
                self._pending_reset.clear()
                with self._lock:
                    self._hard_reset()
            r, _, _ = select.select([self._master], [], [], 0.05)
            if r:
                try:
                    return os.read(self._master, 1)
                except OSError:
                    return None
        return None

    def _serve(self) -> None:
        while True:
            c = self._read_byte()
            if c is None:
                return
            if not self.answers:
                continue
            with self._lock:
                self._on_byte(c)

    def _on_byte(self, c: bytes) -> None:
        if self._mode == "running":
            if c == CTRL_C:
                # KeyboardInterrupt in main.py: the program stops, the
                # prompt comes back; the VM's state goes with it here.
                self._drop_boot()
                self._boot = _Boot(self, False, reset_cause=1)
                self._mode = "friendly"
                self._write(b"Traceback (most recent call last):\r\n  File \"main.py\", line 1, in <module>\r\n"
                            b"KeyboardInterrupt: \r\n" + self._banner())
            return
        if self._mode == "friendly":
            if c == CTRL_A:
                self._mode = "raw"
                self._line.clear()
                self._write(b"\r\nraw REPL; CTRL-B to exit\r\n>")
            elif c == CTRL_C:
                self._write(b"\r\n>>> ")
            elif c == CTRL_B:
                self._write(b"\r\n" + self._banner())
            elif c == CTRL_D:
                self._soft_reset(run_main=True)
            elif c == b"\r":
                self._write(b"\r\n>>> ")
            else:
                self._write(c)  # echo; the friendly REPL's editor is not simulated
            return
        # raw REPL (pyexec_raw_repl)
        if c == CTRL_A:
            if len(self._line) == 2 and self._line[:1] == CTRL_E:
                self._raw_paste(bytes(self._line[1:2]))
                return
            self._line.clear()
            self._write(b"raw REPL; CTRL-B to exit\r\n>")
        elif c == CTRL_B:
            self._mode = "friendly"
            self._line.clear()
            self._write(b"\r\n" + self._banner())
        elif c == CTRL_C:
            self._line.clear()
        elif c == CTRL_D:
            code = bytes(self._line)
            self._line.clear()
            self._write(b"OK")
            if not code:
                self._write(b"\r\n")
                self._soft_reset(run_main=False)
                return
            self.raw_execs += 1
            self._exec(code)
        else:
            self._line += c

    def _raw_paste(self, command: bytes) -> None:
        self._line.clear()
        if command != b"A":
            self._write(b"R\x00>")
            return
        self._write(b"R\x01" + bytes((WINDOW & 0xFF, WINDOW >> 8, 0x01)))
        code = bytearray()
        remain = WINDOW
        while True:
            c = self._read_byte()
            if c is None:
                return
            if c in (CTRL_C, CTRL_D):
                self._write(CTRL_D)  # end acknowledged
                if c == CTRL_C:
                    self._write(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04>")
                    return
                break
            code += c
            remain -= 1
            if remain == 0:
                self._write(b"\x01")  # one more window free
                remain = WINDOW
        self.raw_pastes += 1
        self._exec(bytes(code), ok=False)

    def _exec(self, code: bytes, ok: bool = True) -> None:
        assert self._boot is not None
        err = self._boot.exec(code.decode(errors="replace"))
        if self._pending_reset.is_set():
            return  # machine.reset(): the board never finishes the answer
        self._write(b"\x04")
        if err:
            self._console(err.encode())
        self._write(b"\x04>")

    def _soft_reset(self, run_main: bool) -> None:
        # MicroPython's soft reset: a fresh interpreter on the same flash;
        # main.py runs only from the friendly REPL (pyexec_mode_kind).
        self._drop_boot()
        self._write(b"MPY: soft reboot\r\n")
        if run_main and "/main.py" in self.flash:
            self._mode = "running"
            self._boot = _Boot(self, True, reset_cause=5)
            return
        self._boot = _Boot(self, False, reset_cause=5)
        if self._mode == "raw":
            self._write(b"raw REPL; CTRL-B to exit\r\n>")
        else:
            self._write(self._banner())
