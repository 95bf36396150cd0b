"""The firmware in the real MicroPython VM (WebAssembly port, Node).

Every `test_*` function in tests/portable/test_*.py becomes one test here: the
same file pytest runs under CPython runs again inside MicroPython, all of
them in one VM (one Node process). Adding tests/portable/test_<module>.py
needs no change here. Needs `npm ci` at the repository root.
"""

import ast

import mpvm
import pytest
from mpvm import school_day

pytestmark = pytest.mark.mpvm


def _portable_tests():
    found = {}
    for path in sorted(mpvm.PORTABLE.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found[path.stem] = [
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
        ]
    return found


PORTABLE_TESTS = _portable_tests()


@pytest.fixture(scope="module")
def vm_results():
    return mpvm.run_portable(PORTABLE_TESTS)


@pytest.mark.parametrize(
    "module, name",
    [pytest.param(module, name, id="%s.%s" % (module, name)) for module, names in PORTABLE_TESTS.items() for name in names],
)
def test_portable(vm_results, module, name):
    result = vm_results.get((module, name))
    assert result is not None, "%s.%s produced no result in the VM" % (module, name)
    if not result["ok"]:
        pytest.fail("in MicroPython:\n" + result["error"], pytrace=False)


def test_school_day_heap_stays_within_budget(capsys):
    """The complete board (application, outbox, projector driver, kit and
    sensor driver) imported from .mpy, through a scripted school day: the
    live heap after a real collection stays within the budget at every step."""
    steps, extras = school_day.run_day()
    with capsys.disabled():
        print("\nMicroPython heap held after gc.collect() during a school day (firmware from .mpy):")
        for name, used in steps:
            print("  %-52s %6d bytes" % (name, used))
        print("  allocated per simulated minute: %s" % extras["alloc_per_min"])
    assert {"fwmpy.projector", "fwmpy.kit", "fwmpy.scd4x", "fwmpy.outbox", "fwmpy.mqtt"} <= set(extras["modules"])
    assert "fwmpy.config" not in extras["modules"], "config.json's checker is released after boot"
    assert extras["projector_switches"] == ["PWR ON", "PWR OFF"]
    assert extras["backlog_sent"] > 40  # the day's events and telemetry, kept while the link was down
    over = [(name, used) for name, used in steps if used > school_day.BUDGET]
    assert not over, "over the %d-byte heap budget: %s" % (school_day.BUDGET, over)


def test_vm_reports_a_python_exception():
    with pytest.raises(mpvm.MpvmError, match="ZeroDivisionError"):
        mpvm.run("1 // 0")


def test_vm_is_micropython():
    out = mpvm.run("import sys\nemit([sys.implementation.name, sys.implementation.version[:2]])").records
    assert out == [["micropython", [1, 27]]]
