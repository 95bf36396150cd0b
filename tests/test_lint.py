"""The checks a reviewer runs, enforced: ruff (rules in pyproject.toml) on
the whole repository, and pyright (pinned in package.json, settings in
pyrightconfig.json) on the server code. The firmware's own type check,
against the MicroPython stubs, is tests/test_fw_types.py."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYRIGHT = REPO / "node_modules" / "pyright" / "index.js"


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "ruff found:\n" + proc.stdout + proc.stderr


def test_pyright_is_clean_on_the_server_code():
    from mpvm import node

    assert PYRIGHT.is_file(), f"pyright not installed: run `npm ci` in {REPO}"
    proc = subprocess.run([node(), str(PYRIGHT), "-p", str(REPO), "--pythonpath", sys.executable],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "pyright found:\n" + proc.stdout + proc.stderr
