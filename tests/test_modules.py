"""The package's module graph: no import cycle (counting the imports inside functions, which hide one), and the
modules the CLI needs before training stay free of TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "faceattr"


def imported_modules(path: Path) -> set[str]:
    """The faceattr modules that `path` imports anywhere (at module level or inside a function)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "faceattr":  # from faceattr import cache
            names |= {alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").exists()}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("faceattr."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("faceattr.")}
    return names - {path.stem}


def import_graph() -> dict[str, set[str]]:
    """Each faceattr module and the faceattr modules it imports."""
    return {path.stem: imported_modules(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `graph` (as the list of modules around it), or None."""
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        """Depth-first search from `module`, `trail` being the modules on the way here."""
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return trail[trail.index(imported):] + [module, imported] if imported in trail else [module, imported]
            if imported not in state:
                found = visit(imported, trail + [module])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        found = None if module in state else visit(module, [])
        if found:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_hidden_inside_a_function():
    assert cycle_in({"pipeline": {"store"}, "store": {"pipeline"}}) is not None
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert cycle_in({"pipeline": {"store", "decode"}, "store": {"decode", "cache"}, "decode": set()}) is None


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert {"decode", "cache", "store", "pipeline", "data"} <= set(graph)
    assert cycle_in(graph) is None
    assert graph["decode"] == set()   # a leaf: store, pipeline, detect and data all build on it
    assert {"decode"} <= graph["store"] & graph["pipeline"] & graph["detect"]


def test_the_cache_and_the_data_layer_import_without_tensorflow():
    code = ("import sys, faceattr.cache, faceattr.data, faceattr.decode, faceattr.runs, faceattr.cli; "
            "print(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
