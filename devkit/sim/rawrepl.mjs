// One boot of a simulated MicroPython board (devkit/sim/rawrepl.py): the real
// MicroPython VM (the WebAssembly port pinned in package.json) with the
// board's flash as its file system, from power-on to the next reset.
//
//   node devkit/sim/rawrepl.mjs --config JSON
//
// stdin: one JSON line with the flash ({path: base64}), then requests, one a
// line: {"op": "exec", "code": ...} runs code as the raw REPL does;
// {"op": "main"} runs /main.py as the board does after a reset;
// {"op": "files"} asks for the flash. stdout: JSON lines: {"ev": "ready"},
// {"ev": "out", "b64": ...} (what the board prints, as it prints it),
// {"ev": "done", "err": traceback or null}, {"ev": "files", "files": {...}},
// {"ev": "reset"} (machine.reset() was called). The Python side ends the
// process at a reset and starts a new one with the flash it asked for.
//
// The board's stand-ins live outside its flash, in /.sim (first in
// sys.path, as built-in modules come first on a board): `machine` (pins, a
// watchdog, reset), `network` (an uplink that is always up), os.uname() of
// the board simulated, and asyncio.run/open_connection, which this port
// lacks, over TCP sockets of Node: the firmware's MQTT client reaches a real
// broker. The flash has a size: a write past it fails as on a full
// LittleFS, with the board's ENOSPC (28 on the ESP32's newlib).
import net from "node:net";
import readline from "node:readline";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const SYSTEM_DIRS = new Set(["tmp", "home", "dev", "proc", ".sim"]);
const ENOSPC = 28;

const config = JSON.parse(process.argv[process.argv.indexOf("--config") + 1]);
const BLOCK = config.block || 4096;

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// What the board prints, in chunks as it comes (not line by line: the raw
// REPL's markers are single bytes without a newline).
let pending = [];
function emit(byte) {
  if (pending.length === 0) setImmediate(flushOut);
  pending.push(byte);
}
function flushOut() {
  if (pending.length === 0) return;
  send({ ev: "out", b64: Buffer.from(pending).toString("base64") });
  pending = [];
}

const mp = await loadMicroPython({
  heapsize: config.heap || 1024 * 1024,
  linebuffer: false,
  stdout: (bytes) => bytes.forEach(emit),
  stderr: (bytes) => bytes.forEach(emit),
});
const FS = mp.FS;

function* walk(dir) {
  for (const name of FS.readdir(dir)) {
    if (name === "." || name === "..") continue;
    if (dir === "/" && SYSTEM_DIRS.has(name)) continue;
    const path = dir === "/" ? "/" + name : dir + "/" + name;
    const st = FS.stat(path);
    if (FS.isDir(st.mode)) {
      yield [path, null];
      yield* walk(path);
    } else {
      yield [path, st.size];
    }
  }
}

function used() {
  let blocks = 0;
  for (const [, size] of walk("/")) blocks += size === null ? 1 : Math.max(1, Math.ceil(size / BLOCK));
  return blocks * BLOCK;
}

function onFlash(node) {
  const path = FS.getPath(node);
  const top = path.split("/")[1];
  return !SYSTEM_DIRS.has(top);
}

// The flash's size: writes past it fail, statvfs tells what is left.
const write = FS.write;
FS.write = (stream, buffer, offset, length, position, canOwn) => {
  if (onFlash(stream.node)) {
    const at = position === undefined ? stream.position : position;
    const grows = Math.max(0, at + length - stream.node.usedBytes);
    const oldBlocks = Math.ceil(stream.node.usedBytes / BLOCK);
    const newBlocks = Math.ceil((stream.node.usedBytes + grows) / BLOCK);
    if (grows > 0 && used() + (newBlocks - oldBlocks) * BLOCK > config.capacity) {
      throw new FS.ErrnoError(ENOSPC);
    }
  }
  return write(stream, buffer, offset, length, position, canOwn);
};
FS.statfsNode = () => {
  const blocks = Math.floor(config.capacity / BLOCK);
  const free = Math.max(0, blocks - used() / BLOCK);
  return { bsize: BLOCK, frsize: BLOCK, blocks, bfree: free, bavail: free, files: 0, ffree: 0, fsid: 1,
           flags: 0, namelen: 255 };
};

// TCP for asyncio.open_connection in the VM: data crosses as hex text.
const sockets = new Map();
let nextSocket = 1;
function connect(host, port) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ host, port });
    const entry = { sock, chunks: [], ended: false, waiter: null };
    sock.on("connect", () => {
      const id = nextSocket++;
      sockets.set(id, entry);
      resolve(id);
    });
    sock.on("data", (data) => {
      entry.chunks.push(data);
      wake(entry);
    });
    sock.on("end", () => {
      entry.ended = true;
      wake(entry);
    });
    sock.on("close", () => {
      entry.ended = true;
      wake(entry);
    });
    sock.on("error", (err) => {
      entry.ended = true;
      wake(entry);
      reject(new Error(err.code || String(err)));
    });
  });
}
function wake(entry) {
  if (entry.waiter) {
    const w = entry.waiter;
    entry.waiter = null;
    w();
  }
}
function take(entry, n) {
  const all = Buffer.concat(entry.chunks);
  const out = all.subarray(0, n);
  entry.chunks = all.length > n ? [all.subarray(n)] : [];
  return out.toString("hex");
}
function recv(id, n) {
  const entry = sockets.get(id);
  if (!entry) return Promise.resolve("");
  if (entry.chunks.length || entry.ended) return Promise.resolve(take(entry, n));
  return new Promise((resolve) => {
    entry.waiter = () => resolve(take(entry, n));
  });
}

mp.registerJsModule("_simboard", {
  connect,
  recv,
  write: (id, hex) => {
    const entry = sockets.get(id);
    if (entry && !entry.ended) entry.sock.write(Buffer.from(hex, "hex"));
  },
  close: (id) => {
    const entry = sockets.get(id);
    if (entry) {
      sockets.delete(id);
      entry.sock.destroy();
    }
  },
  reset: () => {
    flushOut();
    send({ ev: "reset" });
  },
  identity: JSON.stringify(config.identity),
  reset_cause: config.reset_cause || 1,
});

// The board's stand-ins, outside its flash.
FS.mkdirTree("/.sim");
FS.writeFile("/.sim/machine.py", `
import _simboard

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
SOFT_RESET = 5


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    levels = {}

    def __init__(self, pin, mode=-1, pull=-1, value=None):
        self.pin = pin
        if value is not None:
            Pin.levels[pin] = value

    def value(self, v=None):
        if v is None:
            return Pin.levels.get(self.pin, 1)
        Pin.levels[self.pin] = v

    def irq(self, handler=None, trigger=3):
        pass


class UART:
    def __init__(self, *args, **kw):
        pass

    def write(self, data):
        return len(data)

    def any(self):
        return 0

    def read(self, n=-1):
        return None


class I2C:
    def __init__(self, *args, **kw):
        pass

    def scan(self):
        return []


class SPI:
    def __init__(self, *args, **kw):
        pass


class WDT:
    def __init__(self, id=0, timeout=5000):
        pass

    def feed(self):
        pass


def reset_cause():
    return _simboard.reset_cause


def reset():
    _simboard.reset()
    raise SystemExit


def soft_reset():
    reset()
`);
FS.writeFile("/.sim/network.py", `
STA_IF = 0
AP_IF = 1
PHY_LAN8720 = 1
PHY_LAN8710 = 1
PHY_W5500 = 6


class _Nic:
    def __init__(self, *args, **kw):
        self._up = False

    def active(self, on=None):
        if on is None:
            return self._up
        self._up = bool(on)

    def connect(self, *args, **kw):
        self._up = True

    def isconnected(self):
        return self._up

    def ifconfig(self, *args):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")


LAN = _Nic
WLAN = _Nic
`);
FS.writeFile("/.sim/_simboot.py", `
import asyncio
import json
import os
from binascii import hexlify, unhexlify

import _simboard

_ID = json.loads(_simboard.identity)


class _Uname:
    def __init__(self):
        for k in ("sysname", "nodename", "release", "version", "machine"):
            setattr(self, k, _ID[k])

    def __getitem__(self, i):
        return (self.sysname, self.nodename, self.release, self.version, self.machine)[i]


def _uname():
    return _Uname()


class _Stream:
    def __init__(self, sid):
        self.sid = sid
        self.buf = b""

    async def _fill(self):
        try:
            data = unhexlify(await _simboard.recv(self.sid, 4096))
        except Exception as e:
            raise OSError(104) from e
        if not data:
            raise EOFError
        self.buf += data

    async def readexactly(self, n):
        while len(self.buf) < n:
            await self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def read(self, n=-1):
        if not self.buf:
            try:
                await self._fill()
            except EOFError:
                return b""
        n = len(self.buf) if n < 0 else n
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def write(self, data):
        _simboard.write(self.sid, hexlify(bytes(data)).decode())

    async def drain(self):
        pass

    def close(self):
        _simboard.close(self.sid)

    async def wait_closed(self):
        _simboard.close(self.sid)


async def _open_connection(host, port):
    try:
        sid = await _simboard.connect(host, port)
    except Exception as e:
        raise OSError(113) from e  # EHOSTUNREACH, as lwIP says it
    s = _Stream(sid)
    return s, s


def _run(coro):
    # This port's event loop is JavaScript's: the task runs after main()
    # returns, as long as the board is powered.
    asyncio.create_task(coro)


os.uname = _uname
asyncio.run = _run
asyncio.open_connection = _open_connection
`);
mp.runPython("import sys\nsys.path.insert(0, '/.sim')\nimport _simboot\ndel _simboot, sys");

const lines = readline.createInterface({ input: process.stdin });
let first = true;
let queue = Promise.resolve();

async function handle(msg) {
  if (msg.op === "files") {
    const files = {};
    for (const [path, size] of walk("/")) {
      files[path] = size === null ? null : Buffer.from(FS.readFile(path)).toString("base64");
    }
    send({ ev: "files", files });
    return;
  }
  let code = msg.code;
  if (msg.op === "main") {
    code = null;
    try {
      code = new TextDecoder().decode(FS.readFile("/main.py"));
    } catch {
      // no main.py: the board stays at its REPL prompt
    }
  }
  let err = null;
  if (code !== null) {
    try {
      await mp.runPythonAsync(code);
    } catch (e) {
      if (!e || e.constructor.name !== "PythonError") throw e;
      err = e.message;
    }
  }
  flushOut();
  send({ ev: "done", err });
}

lines.on("line", (line) => {
  const msg = JSON.parse(line);
  if (first) {
    first = false;
    for (const [path, b64] of Object.entries(msg.files || {})) {
      if (b64 === null) {
        FS.mkdirTree(path);
      } else {
        FS.mkdirTree(path.slice(0, path.lastIndexOf("/")) || "/");
        FS.writeFile(path, Buffer.from(b64, "base64"));
      }
    }
    send({ ev: "ready" });
    return;
  }
  // One request at a time, in order, as the board's single REPL does.
  queue = queue.then(() => handle(msg)).catch((e) => {
    process.stderr.write(`rawrepl: ${e && e.stack ? e.stack : e}\n`);
    process.exit(2);
  });
});
lines.on("close", () => process.exit(0));
