"""MicroPython heap held by each firmware module, imported from .mpy in the
real VM (WebAssembly port), after gc.collect(). Modules are imported in the
order given, so each figure is that module's own cost on top of the ones
before it (the library first: asyncio, json).

    .venv/bin/python bench/module_heap.py                 # the core modules
    .venv/bin/python bench/module_heap.py outbox kit scd4x
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import mpvm  # noqa: E402
from tests.mpvm.school_day import board_libs, compile_firmware  # noqa: E402

CORE = ("compat", "protocol.wire", "config", "clock", "events", "session", "button", "led", "mqtt", "app")

# `#@top-level` ends a part of the VM script: this port collects garbage only
# between parts (tests/mpvm/run.mjs), so every figure is read after one.
PRELUDE = """
import gc
gc.collect()
#@top-level
base = gc.mem_alloc()
import asyncio, json
gc.collect()
#@top-level
emit(["asyncio + json", gc.mem_alloc() - base])
"""
STEP = """
before = gc.mem_alloc()
__import__(%r)
gc.collect()
#@top-level
emit(["%s", gc.mem_alloc() - before])
"""
END = """
emit(["total", gc.mem_alloc() - base])
"""


def main(argv: list[str]) -> int:
    names = tuple(argv) or CORE
    with tempfile.TemporaryDirectory() as tmp:
        sizes = compile_firmware(tmp)
        code = PRELUDE + "".join(STEP % (name if name.startswith("protocol.") else "fwmpy." + name, name) for name in names) + END
        records = mpvm.run(code, libs=board_libs(tmp)).records
    print(f"{'module':16} {'heap':>7} {'.mpy':>7}")
    for name, heap in records:
        print(f"{name:16} {heap:7d} {sizes.get(name, 0) or '':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
