"""The package's shape: its modules import each other in one direction only,
and the functions of the apply and report path stay short enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "scripts" / "sop"


def _imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """Modules of the package one module imports, lazily (in a function) or not."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("sop"):
                continue
            base = (node.module or "").removeprefix("sop").lstrip(".")
            if base:
                out.add(base.split(".")[0])
            else:  # from . import a, b
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("sop."))
    return out & known


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = {p.stem: p for p in package.glob("*.py")}
    return {name: _imported_modules(ast.parse(path.read_text()), set(files)) - {name}
            for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the list of its modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"documents", "storage", "formatting", "chart"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_rendering_does_not_reach_back_into_records():
    graph = import_graph()
    assert graph["formatting"] == set()  # every layer may use it
    assert "documents" not in graph["storage"]
    assert "storage" not in graph["chart"] and "storage" not in graph["documents"]


def test_the_cycle_finder_finds_a_lazy_import_cycle(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import y\n")
    (tmp_path / "c.py").write_text("from sop import a\n")
    (tmp_path / "d.py").write_text("import json\nfrom . import c\n")
    graph = import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"c"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path)) is None


def _function_lengths() -> dict[str, int]:
    out = {}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out[f"{path.stem}.{node.name}"] = node.end_lineno - node.lineno + 1
    return out


# The long functions of the report path, brought under 60 lines (issue 17).
SHORT = ["chart.chart_svg", "documents._report_context", "documents._printout_context",
         "names.build", "plan.make_plan"]


@pytest.mark.parametrize("name", SHORT)
def test_report_path_functions_stay_short(name):
    lengths = _function_lengths()
    assert name in lengths
    assert lengths[name] <= 60, f"{name} has {lengths[name]} lines"
