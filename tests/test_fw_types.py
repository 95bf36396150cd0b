"""Static check of firmware/*.py against the MicroPython ESP32 stubs.

Pyright (pinned in package.json) infers types in unannotated code, which the
firmware is. Its typeshed is micropython-stdlib-stubs (the `stdlib/` folder
it installs at site-packages root, via -t) and `machine`, `network`, `time`
come from micropython-esp32-stubs in the same site-packages (via
--pythonpath). Settings: firmware/pyrightconfig.json.

A finding that is the stubs' fault, or the CPython branch of compat.py, is
silenced on its line with `# pyright: ignore[rule]` and a reason, so a checker on
CPython never sees it.
"""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mpvm

PYRIGHT = mpvm.REPO / "node_modules" / "pyright" / "index.js"
FIRMWARE = mpvm.REPO / "firmware"


def _micropython_typeshed():
    try:
        dist = metadata.distribution("micropython-stdlib-stubs")
    except metadata.PackageNotFoundError:
        raise AssertionError("pip install micropython-esp32-stubs (brings micropython-stdlib-stubs)") from None
    root = Path(dist.locate_file(""))
    assert (root / "stdlib" / "VERSIONS").is_file(), "no stdlib/VERSIONS under %s" % root
    return root


def test_firmware_type_checks_against_micropython_stubs():
    assert PYRIGHT.is_file(), "pyright not installed: run `npm ci` in %s" % mpvm.REPO
    cmd = [
        mpvm.node(),
        str(PYRIGHT),
        "--project",
        str(FIRMWARE),
        "--pythonpath",
        sys.executable,
        "--typeshedpath",
        str(_micropython_typeshed()),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=mpvm.REPO, timeout=120)
    assert proc.returncode == 0, "pyright found errors:\n%s%s\n(command: %s)" % (
        proc.stdout,
        proc.stderr,
        " ".join(cmd),
    )
