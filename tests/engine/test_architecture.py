"""The engine's layout stays readable: no import cycles, nothing low imports anything high, no
QGIS inside the engine, and the plugin never imports the engine or torch.

Every `import` / `from ... import` statement of every module (at any depth: lazy imports count)
is read with `ast`; relative imports are resolved to module names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "engine" / "misr_engine"
PLUGIN = REPO / "qgis_misr"

LAYERS = {
    # foundations: constants, errors, progress events, shipped files, image maths, interrupting signals
    "misr_engine": 0, "errors": 0, "progress": 0, "resources": 0, "imaging": 0, "signals": 0,
    # checks on paths (file kinds, identity, name length, open files), with one-line errors
    "files": 0.5,
    # reading/writing rasters; the networks
    "rasters": 1, "models": 1,
    # registration of a (streamed) stack
    "registration": 2,
    # running a network over tiles
    "inference": 3,
    # one run from files to files; where training and evaluation data come from
    "pipeline": 4, "datasets": 4,
    # scoring against baselines, reports, benchmarks; whole archives on a Dask cluster
    "evaluation": 5, "batch": 5,
    # training
    "training": 6,
    # applications: the demo, and the command line over everything
    "demo": 7, "cli": 8,
}
"""Rank of each top-level part of misr_engine: a module may import parts of lower rank and its
own part, never a part of equal or higher rank."""


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def imports_of(path: Path, name: str) -> set[str]:
    """Absolute names of the modules `path` (module `name`) imports."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules imported by name
    return found


def engine_graph() -> dict[str, set[str]]:
    modules = {module_name(p, ENGINE, "misr_engine"): p for p in ENGINE.rglob("*.py")}
    return {name: {m for m in imports_of(path, name) if m in modules} - {name}
            for name, path in modules.items()}


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_engine_part_has_a_layer():
    parts = {part(m) for m in engine_graph()}
    assert parts == set(LAYERS), f"parts without a layer: {parts - set(LAYERS)}; stale: {set(LAYERS) - parts}"


def test_no_engine_module_imports_a_part_of_its_own_rank_or_higher():
    wrong = []
    for module, targets in engine_graph().items():
        for target in targets:
            if part(target) != part(module) and part(target) != "misr_engine" \
                    and LAYERS[part(target)] >= LAYERS[part(module)]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports reaching up or sideways:\n" + "\n".join(sorted(wrong))


def test_engine_imports_have_no_cycle():
    graph = engine_graph()
    # a package's __init__ importing its own modules is not a cycle of the code
    graph = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")}
             for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle.extend(stack[stack.index(target):] + [target])
                return True
            if state.get(target) is None and visit(target, stack + [target]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if state.get(node) is None and visit(node, [node]):
            break
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("forbidden", ["qgis", "PyQt5", "PyQt6"])
def test_the_engine_never_imports_qgis(forbidden):
    users = [name for name, path in ((module_name(p, ENGINE, "misr_engine"), p) for p in ENGINE.rglob("*.py"))
             if any(m.split(".")[0] == forbidden for m in imports_of(path, name))]
    assert not users


@pytest.mark.parametrize("forbidden", ["torch", "misr_engine", "onnxruntime"])
def test_the_plugin_never_imports_the_engine_or_torch(forbidden):
    users = [name for name, path in ((module_name(p, PLUGIN, "qgis_misr"), p) for p in PLUGIN.rglob("*.py"))
             if any(m.split(".")[0] == forbidden for m in imports_of(path, name))]
    assert not users
