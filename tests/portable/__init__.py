# Portable firmware tests, run twice: by pytest under CPython, and inside the
# MicroPython VM by tests/test_fw_vm.py (one test there per function here).
#
# To add one: create tests/portable/test_<module>.py with module-level
# `def test_*():` (or `async def test_*():`) functions that use only `assert`,
# `from firmware import <module>` and `from ._util import raises`. No pytest
# import, fixtures, classes or parametrize: MicroPython runs these files too.
