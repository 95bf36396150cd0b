"""The firmware in the real MicroPython VM (WebAssembly port, Node).

Every `test_*` function in tests/portable/test_*.py becomes one test here: the
same file pytest runs under CPython runs again inside MicroPython, all of
them in one VM (one Node process). Adding tests/portable/test_<module>.py
needs no change here. Needs `npm ci` at the repository root.
"""

import ast

import mpvm
import pytest

pytestmark = pytest.mark.mpvm

FIRMWARE = mpvm.REPO / "firmware"
HEAP_BUDGET = 48 * 1024  # logic modules with the library they pull in
COMPOSITION = {"app"}  # wires the logic together: measured, outside the budget

# A module that reaches hardware or the network stack cannot import in the VM
# (no `machine`, `network`, `socket`); mpy-cross and the type check cover it.
_HARDWARE = {"machine", "network", "socket", "ssl", "tls", "esp", "esp32", "bluetooth", "neopixel", "onewire", "dht"}


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


def _imports(path):
    """Top-level names and sibling firmware modules a file imports, even lazily."""
    names, siblings = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                siblings.add(node.module.split(".")[0])
            else:  # `from . import x`: a module, or a name from __init__
                for alias in node.names:
                    siblings.add(alias.name if (FIRMWARE / (alias.name + ".py")).exists() else "__init__")
    return names, siblings


def logic_modules():
    """Firmware modules that import no hardware module, directly or through a
    sibling, in dependency order; and the other modules they import. A sibling
    that does not exist yet makes its importers non-logic."""
    graph = {path.stem: _imports(path) for path in sorted(FIRMWARE.glob("*.py"))}
    graph["__init__"] = (set(), set())
    hardware = {name for name, (names, _) in graph.items() if names & _HARDWARE}
    changed = True
    while changed:
        changed = False
        for name, (_, siblings) in graph.items():
            if name not in hardware and any(s in hardware or s not in graph for s in siblings):
                hardware.add(name)
                changed = True
    order = []

    def visit(name):
        if name not in order:
            for sibling in sorted(graph[name][1]):
                visit(sibling)
            order.append(name)

    for name in sorted(set(graph) - hardware - {"__init__"}):
        visit(name)
    order = [name for name in order if name != "__init__"]
    others = sorted(set().union(*(graph[name][0] for name in order)))
    return order, others


def test_logic_modules_heap(capsys):
    modules, others = logic_modules()
    assert "codec" in modules
    # Shared library modules are imported first so each firmware module's
    # own cost shows; on the board they are frozen and cost less.
    code = """
import gc
gc.collect()
base = gc.mem_alloc()
for name in %r:
    try:
        __import__(name)
    except ImportError:
        pass
gc.collect()
emit(["library", gc.mem_alloc() - base])
for name in %r:
    gc.collect()
    before = gc.mem_alloc()
    __import__("firmware." + name)
    gc.collect()
    emit([name, gc.mem_alloc() - before])
emit(["total", gc.mem_alloc() - base])
""" % (others, modules)
    costs = mpvm.run(code).records
    total = costs[-1][1]
    logic = total - sum(cost for name, cost in costs if name in COMPOSITION)
    with capsys.disabled():
        print("\nMicroPython heap held after gc.collect(), logic modules imported from source:")
        for name, cost in costs:
            print("  %-10s %6d bytes" % (name, cost))
        print("  (library = %s)" % ", ".join(others))
        print("  logic modules and library without %s: %d bytes" % (", ".join(sorted(COMPOSITION)), logic))
    assert logic < HEAP_BUDGET, "firmware logic modules hold %d bytes of heap, budget %d" % (logic, HEAP_BUDGET)


def test_vm_reports_a_python_exception():
    with pytest.raises(mpvm.MpvmError, match="ZeroDivisionError"):
        mpvm.run("1 // 0")


def test_vm_is_micropython():
    out = mpvm.run("import sys\nemit([sys.implementation.name, sys.implementation.version[:2]])").records
    assert out == [["micropython", [1, 27]]]
