"""The package layers import each other in one direction only: no cycle between packages (or
top-level modules) of chimera, counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app" / "chimera"


def _unit(path: Path) -> str:
    """A module's layer: its package under chimera/, or the top-level module itself."""
    rel = path.relative_to(APP)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _target(path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The chimera units an import statement reaches."""
    if isinstance(node, ast.Import):
        return [n.name.split(".")[1] for n in node.names if n.name.startswith("chimera.") and n.name.count(".") >= 1]
    if node.level == 0:
        if node.module and node.module.startswith("chimera"):
            parts = node.module.split(".")
            return [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        return []
    package = path.relative_to(APP).parts[:-1]
    base = list(package[: len(package) - (node.level - 1)]) if node.level > 1 else list(package)
    if node.level - 1 > len(package):
        return []
    mod = base + (node.module.split(".") if node.module else [])
    if mod:
        return [mod[0]]
    return [a.name for a in node.names]  # from . import x at the top level


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in APP.rglob("*.py"):
        unit = _unit(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _target(path, node):
                    known = (APP / target).is_dir() or (APP / f"{target}.py").exists()
                    if known and target != unit:
                        edges.setdefault(unit, set()).add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in stack:
                cycle = stack[stack.index(nxt):] + [nxt]
                if sorted(cycle[:-1]) not in [sorted(c[:-1]) for c in found]:
                    found.append(cycle)
            elif len(stack) < 12:
                walk(nxt, stack + [nxt])

    for start in sorted(edges):
        walk(start, [start])
    return found


def test_no_import_cycles_between_packages() -> None:
    assert cycles(graph()) == []


def test_the_check_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})


def test_lower_layers_do_not_import_the_http_layer() -> None:
    edges = graph()
    for unit in ("llm", "serving", "protocol", "store", "rag", "audio", "images", "workers"):
        assert "http" not in edges.get(unit, set()), f"{unit} imports the HTTP layer"
