"""Firmware footprint: .mpy sizes (mpy-cross, ESP32 native target) and the
MicroPython heap the complete board holds through a scripted school day in
the real VM (tests/mpvm/school_day.py: firmware from .mpy, an Epson projector
on the UART, a CO2 kit on the I2C bus, the link down most of the day), after
a real collection at every step; and what it allocates per simulated minute.

    .venv/bin/python bench/firmware_footprint.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mpvm import school_day  # noqa: E402  # pyright: ignore[reportMissingImports] - tests/ is on sys.path above

ESP32_HEAP = 110 * 1024  # an ESP32 without PSRAM, after MicroPython's own needs


def mpy_sizes() -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        return {name + ".py": size for name, size in school_day.compile_firmware(tmp, "-march=xtensawin").items()}


def main() -> int:
    sizes = mpy_sizes()
    print(f".mpy sizes (mpy-cross -march=xtensawin {' '.join(school_day.MPY_FLAGS)}):")
    for name, size in sizes.items():
        print(f"  {name:14} {size:6d} bytes")
    print(f"  {'total':14} {sum(sizes.values()):6d} bytes")
    steps, extras = school_day.run_day()
    print("\nMicroPython VM heap held after gc.collect(), scripted school day (firmware from .mpy):")
    for name, used in steps:
        print(f"  {name:52} {used:6d} bytes")
    peak = max(used for _, used in steps)
    print(f"  {'peak':52} {peak:6d} bytes  ({peak / school_day.BUDGET:.0%} of the 48 KB budget, "
          f"{peak / ESP32_HEAP:.0%} of a 110 KB ESP32 heap)")
    print("  modules loaded:", ", ".join(m.split(".", 1)[1] for m in extras["modules"]))
    alloc = extras["alloc_per_min"]
    print("\nAllocated per simulated minute (collector off), by task:")
    for task, used in alloc.items():
        print(f"  {task:12} {used:7d} bytes")
    print(f"  {'total':12} {sum(alloc.values()):7d} bytes")
    print(f"\nprojector frames on the UART: {extras['projector_frames']}; "
          f"outbox records sent after reconnecting: {extras['backlog_sent']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
