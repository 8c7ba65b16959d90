"""The package's shape, checked from its source: what keeps each concept in one place.

No import cycle (function-level imports included: they are cycles that wait for a code path), no private
name imported from another package, no function a reader cannot hold in one screen.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aslhpc"
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every aslhpc import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((sub, "", node.lineno) if sub in modules else (module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names]
    return [(m, n, line) for m, n, line in found if m.split(".")[0] == "aslhpc"]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative enough for this size)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_even_through_function_level_imports() -> None:
    modules = _modules()
    graph = {m: {i for i, _, _ in _imports(m, p, modules) if i in modules and i != m}
             for m, p in modules.items()}
    assert _cycles(graph) == []


def test_no_private_name_is_imported_from_another_package() -> None:
    modules = _modules()
    bad = []
    for name, path in modules.items():
        for module, imported, line in _imports(name, path, modules):
            private = imported.startswith("_") and not imported.startswith("__")
            if private and module.split(".")[:2] != name.split(".")[:2]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}.{imported}")
    assert bad == []


def test_no_function_is_longer_than_one_screen() -> None:
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                    long.append(f"{where} {node.name}: {lines} lines")
    assert long == []


def test_the_checks_see_a_planted_cycle_and_a_long_function(tmp_path: Path) -> None:
    """The walkers themselves: a two-module cycle through a lazy import is found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert _cycles(graph) == [["a", "b"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from aslhpc.x import _y\n")
    assert _imports("aslhpc.z", src, {"aslhpc.x": src}) == [("aslhpc.x", "_y", 2)]


def test_analysis_imports_nothing_upstream() -> None:
    """analysis is pure functions over what aslhpc.snapshot read: it never reaches back into the manifest,
    the cell files' readers or SLURM (not even from inside a function)."""
    modules = _modules()
    bad = []
    for name, path in modules.items():
        if name.split(".")[:2] != ["aslhpc", "analysis"]:
            continue
        for module, imported, line in _imports(name, path, modules):
            if module.split(".")[:2] in (["aslhpc", "orchestration"], ["aslhpc", "slurm"]) or \
                    module in ("aslhpc.snapshot", "aslhpc.collecting"):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} {imported}".strip())
    assert bad == []


def _backend_comparisons(path: Path) -> list[int]:
    """Lines that compare something with a backend's name ("slurm" / "local") by == or !=."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            words = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            if any(w in ("slurm", "local") for w in words):
                lines.append(node.lineno)
    return lines


def test_no_code_tells_the_backends_apart_by_name() -> None:
    # orchestration/backend.py looks a backend up by name once (backend_for); everything else asks it
    found = [f"{p.relative_to(PACKAGE.parent)}:{n}" for p in sorted(PACKAGE.rglob("*.py"))
             for n in _backend_comparisons(p)]
    assert found == []


def test_the_backend_check_sees_a_planted_comparison(tmp_path: Path) -> None:
    planted = tmp_path / "x.py"
    planted.write_text('def f(a):\n    return a.cluster == "slurm"\n')
    assert _backend_comparisons(planted) == [2]
