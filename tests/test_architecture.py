"""The arrows of docs/architecture.md, checked on every import of every
module (module level and inside functions): a shortcut fails here."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "firmware", "hardware", "common", "edge_gateway", "cloud_bridge", "devkit", "preau")

# package -> the Préau packages it may import (itself always)
ALLOWED = {
    "protocol": set(),
    "firmware": {"protocol"},
    "hardware": {"protocol", "firmware"},  # the kit probes and CRC are the board's own facts
    "common": {"protocol"},
    "edge_gateway": {"protocol", "common", "hardware"},
    "cloud_bridge": {"protocol", "common", "hardware"},
    "devkit": {"protocol", "firmware", "hardware", "common", "edge_gateway", "cloud_bridge"},
    "preau": {"protocol", "common", "edge_gateway", "cloud_bridge", "devkit", "hardware", "firmware"},
}


def modules():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield package, path


def imported(path: Path, package: str):
    """(line, absolute module name) of every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(REPO).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                name = ".".join(base + ((node.module,) if node.module else ()))
            else:
                name = node.module or ""
            yield node.lineno, name


def test_packages_depend_one_way():
    wrong = []
    for package, path in modules():
        for line, name in imported(path, package):
            top = name.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {package} imports {name}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_the_board_loads_only_the_wire_part_of_the_protocol():
    wrong = []
    for package, path in modules():
        if package != "firmware":
            continue
        for line, name in imported(path, package):
            if name.startswith("protocol") and name != "protocol.wire":
                wrong.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not wrong, "the board must not load the servers' checks:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", ["edge_gateway", "cloud_bridge", "common", "protocol"])
def test_no_import_cycle_inside_a_service(package):
    """Module-level imports only (a lazy import inside a function is how a
    cycle is broken on purpose, e.g. the CLI)."""
    graph: dict[str, set[str]] = {}
    for pkg, path in modules():
        if pkg != package:
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = path.relative_to(REPO).with_suffix("").parts[: -node.level]
                    target = ".".join(base + ((node.module,) if node.module else ()))
                else:
                    target = node.module or ""
                if target.startswith(package):
                    deps.add(target)
        graph[name] = deps
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for dep in graph.get(node, ()):
            if seen.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in seen:
                visit(dep, stack + [dep])
        seen[node] = 2

    for node in graph:
        if node not in seen:
            visit(node, [node])


def test_the_product_does_not_need_the_demo_broker():
    """amqtt is the demo extra: no product package imports it."""
    wrong = [f"{path.relative_to(REPO)}:{line}" for package, path in modules()
             if package not in ("devkit", "preau")
             for line, name in imported(path, package) if name.split(".")[0] == "amqtt"]
    assert not wrong
