"""Run code in the real MicroPython VM (WebAssembly port) from CPython tests.

The VM starts in a Node process (tests/mpvm/run.mjs) with the firmware package
at /lib/firmware. One process costs a fraction of a second, so callers batch:
`run_portable` runs every portable test module in one VM and reports each
test function separately.

Code in the VM reports results by calling `emit(obj)`, which prints one JSON
line tagged with `MARK`; everything else it prints is kept as plain output.
"""

import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("run.mjs")
PACKAGE = REPO / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
PORTABLE = REPO / "tests" / "portable"
# What goes on the board is the flasher's list (edge_gateway/flash/build.py):
# every firmware module, and of the protocol package the part the board loads
# (the checks of what boards publish stay off it). No __init__: MicroPython
# imports a folder as a namespace package, and the board keeps one module
# object fewer.


def board_sources():
    """(package, source path) of every file flashed to the board."""
    from edge_gateway.flash.build import board_sources as flashed

    return flashed()

MARK = "@mpvm "

PRELUDE = """\
import json as _json

def emit(obj):
    print(%r + _json.dumps(obj))
""" % MARK


class MpvmUnavailable(RuntimeError):
    pass


class MpvmError(AssertionError):
    """Uncaught Python exception inside the VM; the message is its traceback."""


class Result:
    def __init__(self, records, output):
        self.records = records  # objects passed to emit(), in order
        self.output = output  # the other lines the code printed


def node():
    """Path of the Node executable, once the npm packages are installed."""
    path = shutil.which("node")
    if path is None:
        raise MpvmUnavailable("node not found on PATH: the MicroPython VM tier needs Node 20+")
    if not PACKAGE.is_dir():
        raise MpvmUnavailable("MicroPython VM not installed: run `npm ci` in %s" % REPO)
    return path


def run(code, libs=(), timeout=60):
    """Run `code` in a fresh VM; `libs` are (name, host_dir) packages for /lib."""
    cmd = [node(), str(RUNNER)]
    for name, folder in libs:
        cmd += ["--lib", "%s=%s" % (name, folder)]
    proc = subprocess.run(
        cmd,
        input=PRELUDE + code,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    records, output = [], []
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            records.append(json.loads(line[len(MARK):]))
        else:
            output.append(line)
    if proc.returncode == 1:
        raise MpvmError("MicroPython raised:\n%s%s" % (proc.stderr, _tail(output)))
    if proc.returncode != 0:
        raise MpvmUnavailable("mpvm runner failed (exit %d):\n%s" % (proc.returncode, proc.stderr))
    return Result(records, output)


def _tail(output):
    return "\noutput:\n" + "\n".join(output[-20:]) if output else ""


# Runs in the VM. A module that fails to import fails each of its tests with
# the import traceback; an `async def` test is awaited (the PyScript build's
# asyncio runs on the JavaScript event loop and has no asyncio.run).
_PORTABLE_DRIVER = """
import io, sys

def _trace(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)
    return buf.getvalue()

for _mod, _names in %r:
    try:
        _m = __import__("portable." + _mod, None, None, [_mod])
    except BaseException as e:
        for _name in _names:
            emit({"module": _mod, "test": _name, "ok": False, "error": "import failed:\\n" + _trace(e)})
        continue
    for _name in _names:
        try:
            _r = getattr(_m, _name)()
            if hasattr(_r, "send"):
                await _r
            emit({"module": _mod, "test": _name, "ok": True})
        except BaseException as e:
            emit({"module": _mod, "test": _name, "ok": False, "error": _trace(e)})
"""


def run_portable(tests):
    """Run portable tests in one VM.

    `tests` maps a module name under tests/portable to its test function
    names. Returns {(module, name): {"ok": bool, "error": traceback}}.
    """
    plan = [(mod, list(names)) for mod, names in sorted(tests.items())]
    # firmware/boot (the root main.py and the updater, outside the firmware
    # package on the board) as a package of its own
    result = run(_PORTABLE_DRIVER % (plan,), libs=[("portable", PORTABLE), ("fwboot", REPO / "firmware" / "boot")],
                 timeout=180)
    return {(r["module"], r["test"]): r for r in result.records}
