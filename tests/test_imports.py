"""The import graph holds its shape (docs/architecture.md): the core knows no web
framework, the package root loads nothing it does not need, nothing imports in a
circle, and the core's functions stay small."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "feature_gates"
FRAMEWORKS = ("flask", "werkzeug", "click", "blinker")


def loaded_after(statement: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running ``statement``."""
    script = f"import sys\n{statement}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return list(json.loads(output))


def top_level(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_core_loads_no_web_framework():
    modules = loaded_after("import feature_gates.core")
    assert top_level(modules) & set(FRAMEWORKS) == set()
    ours = [m for m in modules if m.startswith("feature_gates.")]
    assert all(m.startswith("feature_gates.core") for m in ours), ours


def test_importing_the_package_loads_nothing_else():
    modules = loaded_after("import feature_gates")
    assert [m for m in modules if m.startswith("feature_gates")] == ["feature_gates"]
    assert top_level(modules) & {*FRAMEWORKS, "psycopg", "psycopg_pool"} == set()


def test_the_flask_extension_loads_neither_the_runner_the_cli_nor_the_test_server():
    modules = loaded_after("from feature_gates import FeatureGates, feature_limit, Subject")
    ours = {m for m in modules if m.startswith("feature_gates")}
    for unwanted in (
        "feature_gates.migrate",
        "feature_gates.cli",
        "feature_gates.reports",
        "feature_gates.pgserver",
        "feature_gates.testing",
    ):
        assert unwanted not in ours


def test_initialising_the_extension_does_not_load_the_cli():
    modules = loaded_after(
        "from flask import Flask\n"
        "from feature_gates import FeatureGates\n"
        "app = Flask('x')\n"
        "app.config['FEATURE_GATES_TRACKING'] = 'off'\n"
        "FeatureGates(app)"
    )
    assert "feature_gates.cli" not in modules and "feature_gates.migrate" not in modules


def test_the_pytest_plugin_loads_no_test_server():
    modules = loaded_after("import feature_gates.pytest_plugin")
    assert "feature_gates.pgserver" not in modules


def test_every_public_name_resolves():
    import feature_gates

    for name in feature_gates.__all__:
        assert getattr(feature_gates, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = feature_gates.nothing


# -- the graph, read from the source ------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, anywhere in it (TYPE_CHECKING blocks and
    functions included); ``from package import name`` counts as the submodule when
    ``name`` is one."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
    return {module for module in found if module in modules and module != name}


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, modules) for path in paths}


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``edges`` (as the list of its modules), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_package_imports_in_a_circle():
    assert cycle_in(graph()) is None


#: What each part of the package may import (docs/architecture.md, "The layers").
LAYERS = {
    "feature_gates": ("feature_gates.core", "feature_gates.flask"),
    "feature_gates.core": (),
    "feature_gates.signals": (),
    "feature_gates.counters": (),
    "feature_gates.flask": ("feature_gates.core", "feature_gates.signals"),
    "feature_gates.migrate": ("feature_gates.core",),
    "feature_gates.reports": ("feature_gates.core", "feature_gates.flask"),
    "feature_gates.cli": (
        "feature_gates.core",
        "feature_gates.flask",
        "feature_gates.migrate",
        "feature_gates.reports",
        "feature_gates.devdb",
    ),
    "feature_gates.usage": ("feature_gates.core",),
    "feature_gates.devdb": ("feature_gates.pgserver",),
    "feature_gates.pgserver": (),
    "feature_gates.testing": ("feature_gates.migrate", "feature_gates.pgserver"),
    "feature_gates.pytest_plugin": (
        "feature_gates.flask",
        "feature_gates.migrate",
        "feature_gates.testing",
    ),
}


def layer_of(module: str) -> str:
    return max((layer for layer in LAYERS if f"{module}.".startswith(f"{layer}.")), key=len)


def test_imports_go_one_way():
    wrong = []
    for module, targets in graph().items():
        layer = layer_of(module)
        allowed = (layer, *LAYERS[layer]) if layer != "feature_gates" else LAYERS[layer]
        for target in targets:
            if layer_of(target) not in allowed:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


# -- the core's functions ------------------------------------------------------------------


def test_no_function_of_the_core_is_over_60_lines():
    long = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert long == []
