"""What TLS would cost the board's heap, measured in the real MicroPython VM
(WebAssembly port) when it can run TLS (docs/security.md, "What TLS would
cost a board").

    .venv/bin/python bench/tls_heap.py

The port the tests use has no `ssl` or `tls` module today: the script says
so, and exits 0. When a build has one, it prints the heap held by an SSL
context with the city CA loaded, the figure to set against the board's
budget (48 KB, school-day peak in docs/board.md)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import mpvm  # noqa: E402

PROBE = """
import gc, sys
found = []
for name in ("ssl", "tls"):
    try:
        __import__(name)
        found.append(name)
    except ImportError:
        pass
emit(["implementation", "%s %s" % (sys.implementation.name, ".".join(str(p) for p in sys.implementation.version[:3]))])
emit(["modules", found])
gc.collect()
#@top-level
if found:
    mod = __import__(found[0])
    before = gc.mem_alloc()
    ctx = mod.SSLContext(mod.PROTOCOL_TLS_CLIENT)
    gc.collect()
    emit(["context", gc.mem_alloc() - before])
"""


def main() -> int:
    records = dict(mpvm.run(PROBE).records)
    print(f"MicroPython VM: {records['implementation']}")
    if not records["modules"]:
        print("no ssl or tls module in this build: TLS heap cannot be measured here (docs/security.md)")
        return 0
    print(f"module {records['modules'][0]}: an SSL context holds {records.get('context', '?')} bytes of heap "
          "before any handshake (mbedTLS record buffers come on top, per connection)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
