"""The library's import graph stays acyclic: every `import` of a stages module, at the top of a file or inside a
function, read from the source (so a lazy import cannot hide a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

STAGES = Path(__file__).resolve().parent.parent / "stages"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in STAGES.rglob("*.py"):
        parts = f.relative_to(STAGES.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the stages modules it imports. A module importing its own package (`from stages.datasets import
    media` inside stages.datasets) is not an edge: Python runs the package's __init__ before any of its modules."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            edges[mod] |= {n for n in names if n in mods and n != mod and not mod.startswith(n + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_stages_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycles_between_stages_packages():
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for mod, targets in import_graph().items():
        edges.setdefault(package(mod), set()).update(package(t) for t in targets if package(t) != package(mod))
    for targets in list(edges.values()):
        for t in targets:
            edges.setdefault(t, set())
    assert cycles(edges) == []
    assert "stages.synth" not in edges["stages.capture"] and "stages.synth" not in edges["stages.datasets"]


# Left for stages/view's owner (another change is rewriting that package): switch to stages.animate.framing.
PRIVATE_IMPORTS_LEFT: set[tuple[str, str]] = set()


def test_no_package_imports_another_packages_private_names():
    """What another package uses is public (`framing`, `as_rgb_uint8`, `stable_seed`), not `_name`."""
    mods = _modules()
    found = set()
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages."):
                if node.module.split(".")[:2] == mod.split(".")[:2]:
                    continue  # within one package, private helpers are fine
                found |= {(mod, f"{node.module}.{a.name}") for a in node.names if a.name.startswith("_")}
    assert found == PRIVATE_IMPORTS_LEFT
