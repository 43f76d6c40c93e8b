"""The package's layers import downwards only, and import in any order.

Layers, lowest first: the foundations (errors, registry, seeding, io, devices, and layout:
where every file of a run folder lives); data, models, losses and metrics; train; teachers
(built on train: they train networks with it, and implement the `Teacher` protocol that
`bayesdistill.train.protocol` defines); and the layers that assemble them (config, runner,
reports, theory, cli). Each check runs in a fresh interpreter, so no module a test imported
earlier hides a cycle.

No module imports itself through others: the import graph read from the source has no
cycle (`test_no_import_cycle`, which says how the graph is read).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import bayesdistill

RANKS = {
    "errors": 0,
    "registry": 0,
    "seeding": 0,
    "io": 0,
    "layout": 0,
    "devices": 0,
    "data": 1,
    "models": 1,
    "losses": 1,
    "metrics": 1,
    "train": 2,
    "teachers": 3,
    "config": 4,
    "runner": 4,
    "reports": 4,
    "theory": 4,
    "cli": 4,
}
"""Each subpackage's layer; a subpackage may load lower layers and its peers, never a higher
layer (the assembling layers, rank 4, are not checked against each other)."""

LOADED_ALONE = """
import importlib, json, sys
import torch  # kept loaded: only bayesdistill's own modules are imported afresh

def fresh(name):
    for module in [m for m in sys.modules if m == "bayesdistill" or m.startswith("bayesdistill.")]:
        del sys.modules[module]
    importlib.import_module("bayesdistill." + name)
    return sorted({m.split(".")[1] for m in sys.modules if m.startswith("bayesdistill.")})

print(json.dumps({name: fresh(name) for name in sys.argv[1:]}))
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def loaded_alone() -> dict[str, list[str]]:
    """Subpackage → the bayesdistill subpackages that importing it alone loads."""
    return json.loads(_python(LOADED_ALONE, *RANKS))


@pytest.mark.parametrize("name", [n for n, rank in RANKS.items() if rank < 4])
def test_a_layer_loads_no_higher_layer(name, loaded_alone):
    higher = [p for p in loaded_alone[name] if RANKS.get(p, 4) > RANKS[name]]
    assert not higher, f"importing bayesdistill.{name} loads higher layers {higher}"


def test_train_does_not_import_teachers(loaded_alone):
    assert "teachers" not in loaded_alone["train"]
    assert "train" in loaded_alone["teachers"]


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_every_subpackage_imports_in_either_order(order):
    """Importing train before teachers, and teachers before train (and so for every pair
    of subpackages), in one fresh interpreter each."""
    names = list(RANKS) if order == "forward" else list(reversed(RANKS))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module('bayesdistill.' + name)\n"
    _python(code, *names)


PACKAGE = Path(bayesdistill.__file__).parent


def _module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _prefixes(name: str) -> set[str]:
    """``a.b.c`` → {a, a.b, a.b.c}: the packages that importing ``a.b.c`` initialises."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _imported_names(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom
) -> Iterator[str]:
    """Every dotted name an import statement may load (``from a import b``: a, and a.b
    in case b is a module); relative imports resolved against ``module``."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        anchor = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            anchor = anchor.rpartition(".")[0]
        base = f"{anchor}.{base}" if base else anchor
    yield base
    yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """Module → {module it imports: line of the first such import}, within the package at ``root``.

    Every ``import`` and ``from ... import`` counts, relative ones too, wherever it stands:
    at module level, under ``if TYPE_CHECKING:`` (a cycle of types is still a cycle of
    concepts) and inside functions (a lazy import that closes a cycle only hides it). An
    import of ``a.b.c`` also depends on the package ``a.b`` (Python runs its ``__init__``)
    unless that package is the importer's own or one above it, which is initialising
    already. Imports that name code by a string (``importlib.import_module``, a module
    ``__getattr__``) are not seen: `test_no_module_loads_names_lazily` forbids the latter.
    """
    files = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported_names(module, is_package, node):
                if name not in files:
                    continue
                for needed in sorted(_prefixes(name) - _prefixes(module)):
                    if needed in files:
                        edges.setdefault(needed, node.lineno)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def _describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    inside = set(component)
    edges = [
        f"    {module} (line {line}) imports {other}"
        for module in component
        for other, line in sorted(graph[module].items())
        if other in inside
    ]
    return "\n".join([f"  {len(component)} modules: {', '.join(component)}", *edges])


def test_no_import_cycle():
    """No module of bayesdistill imports itself through others (see `import_graph` for what counts)."""
    graph = import_graph(PACKAGE)
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(graph, c) for c in found)


def test_no_module_loads_names_lazily():
    """A module-level ``__getattr__`` that imports on first use hides its imports from the
    cycle check: packages import what they export."""
    lazy = [
        _module_name(path, PACKAGE)
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
    ]
    assert not lazy, f"modules with a lazy __getattr__: {lazy}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root / "pkg"


@pytest.mark.parametrize(
    "files",
    [
        # a relative import and an absolute one
        {"pkg/__init__.py": "", "pkg/a.py": "from . import b\n", "pkg/b.py": "import pkg.a\n"},
        # a lazy import inside a function, and one under TYPE_CHECKING
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "def f():\n    from pkg.b import g\n",
            "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n",
        },
        # through a package's __init__: x imports y.inner (which runs y/__init__), y imports x
        {
            "pkg/__init__.py": "",
            "pkg/x/__init__.py": "from pkg.y.inner import h\n",
            "pkg/y/__init__.py": "from pkg.y.run import go\n",
            "pkg/y/inner.py": "",
            "pkg/y/run.py": "from ..x import h\n",
        },
    ],
    ids=["relative", "lazy", "through_init"],
)
def test_the_cycle_check_sees_cycles(tmp_path, files):
    assert cycles(import_graph(_write(tmp_path, files)))


def test_the_cycle_check_allows_imports_within_a_package(tmp_path):
    """A submodule importing a sibling through its own package is no cycle: the package is
    initialising already."""
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\n",
            "pkg/a.py": "from pkg import b\nfrom pkg.b import g\n",
            "pkg/b.py": "import math\n",
        },
    )
    assert cycles(import_graph(root)) == []
