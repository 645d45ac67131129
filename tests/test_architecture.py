"""The import graph of ``src/fairser``: no cycles, and data flows one way (docs/ARCHITECTURE.md).

Every ``import fairser...`` counts, at module level or inside a function (a lazy import is still a
dependency); only imports under ``if TYPE_CHECKING:`` (annotations) are left out. ``from fairser.pkg import
name`` is a dependency on ``fairser.pkg`` (its ``__init__``) unless ``name`` is a submodule of it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layers from the bottom (manifest) to the top (command line), as in docs/ARCHITECTURE.md. A module belongs
#: to the layer of its longest matching prefix; it may import its own layer and the layers below it only.
LAYERS: list[tuple[str, ...]] = [
    (
        "fairser",
        "fairser.errors",
        "fairser.grouping",
        "fairser.progress",
        "fairser.jsonable",
        "fairser.lifeline",
        "fairser.forkserver_lifeline",
        "fairser.data.labels",
    ),
    ("fairser.data",),
    ("fairser.config",),
    ("fairser.features",),
    ("fairser.augment", "fairser.degrade"),
    ("fairser.models",),
    ("fairser.objectives",),
    (
        "fairser.train",
        "fairser.sampler",
        "fairser.scale",
        "fairser.scale.loop",
        "fairser.scale.data",
        "fairser.scale.buckets",
        "fairser.scale.checkpoint",
        "fairser.scale.distributed",
    ),
    ("fairser.methods",),
    ("fairser.metrics",),
    ("fairser.audit",),
    ("fairser.results",),
    ("fairser.report",),
    ("fairser.run", "fairser.bench", "fairser.scale.bench", "fairser.scale.__main__"),
    ("fairser.cli", "fairser.__main__"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "fairser").rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import fairser.a.b.c` of a name inside a module
                t = t.rpartition(".")[0]
            if t.startswith("fairser") and t != name:
                out.add(t)
    return out


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            covers = module == p or (
                p != "fairser" and module.startswith(p + ".")
            )  # the bare package: itself
            if covers and len(p) > best:
                best, layer = len(p), i
    assert layer is not None, f"{module} is in no layer; add it to LAYERS and docs/ARCHITECTURE.md"
    return layer


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_lazy_imports_and_skips_type_checking(tmp_path):
    """The checker itself: a function-level import counts, an annotation-only import does not."""
    code = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fairser.report import Report\n"
        "def f():\n    from fairser.metrics import evaluate_predictions\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(code)
    modules = {"fairser.x": path, "fairser.metrics": path, "fairser.report": path}
    assert _imports("fairser.x", path, modules) == {"fairser.metrics"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, (
        "import cycles (modules that import each other, directly or around a loop):\n"
        + "\n".join(" <-> ".join(c) for c in cycles)
    )


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_import_points_up_the_data_flow(module):
    graph = _graph()
    mine = _layer(module)
    up = sorted(t for t in graph[module] if _layer(t) > mine)
    assert not up, f"{module} (layer {mine}) imports modules above it: " + ", ".join(
        f"{t} (layer {_layer(t)})" for t in up
    )
