"""The package's shape: its modules import each other in one direction only,
and the functions of the apply and report path stay short enough to read."""

from __future__ import annotations

import ast
import re
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
         "names.build", "plan.make_plan", "apply._apply_locked", "lifecycle.decide"]


@pytest.mark.parametrize("name", SHORT)
def test_report_path_functions_stay_short(name):
    lengths = _function_lengths()
    assert name in lengths
    assert lengths[name] <= 60, f"{name} has {lengths[name]} lines"


def test_no_function_in_the_package_is_over_80_lines():
    long = {name: n for name, n in _function_lengths().items() if n > 80}
    assert long == {}, long


ROLES = sorted(p for p in (Path(__file__).parents[2] / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_has_a_readme_and_specs_for_all_its_defaults(role):
    import yaml

    assert (role / "README.md").is_file(), f"{role.name} has no README.md"
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = set(yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() \
        else set()
    options = {name for entry in specs.values() for name in (entry.get("options") or {})}
    assert defaults - options == set(), f"{role.name}: defaults without a spec"


def test_every_tasks_from_has_an_entry_point():
    import yaml

    root = Path(__file__).parents[2]
    found = 0
    for path in [*root.glob("playbooks/*.yml"), *root.glob("roles/*/tasks/*.yml")]:
        for role, entry in re.findall(
                r"name: ([a-z_]+)\n\s+tasks_from: ([a-z_]+)", path.read_text()):
            found += 1
            specs = yaml.safe_load(
                (root / "roles" / role / "meta" / "argument_specs.yml").read_text())
            assert entry in specs["argument_specs"], f"{path.name}: {role} {entry}"
    assert found >= 2
