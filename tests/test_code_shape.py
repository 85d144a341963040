"""The shape of ``kit/``, read from its source with :mod:`ast` (nothing of kit is imported, so it runs in a blink).

Rules (issue #23): no import cycle among kit modules; no function over 60 lines (decorators and docstring included);
no function with more than 8 parameters (``self``/``cls`` not counted; use a settings dataclass); no import of an
underscore name from another package of kit; ``argparse`` only under ``kit/cli/`` (every command line lives there).

Import edges: ``import kit.a.b`` and ``from kit.a.b import x`` point at ``kit.a.b``; ``from kit.a import b`` points at
``kit.a`` and also at ``kit.a.b`` when ``b`` is a module. A package's ``__init__.py`` is the module ``kit.a``. Imports
inside functions count (a lazy import hides a cycle, it does not break it); imports under ``if TYPE_CHECKING:`` do
not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1] / "kit"
MAX_LINES = 60
MAX_PARAMS = 8


def module_name(path: Path, root: Path) -> str:
    """``root/a/b.py`` → ``kit.a.b``; ``root/a/__init__.py`` → ``kit.a`` (``root`` is the ``kit`` folder)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str, is_package: bool) -> str:
    """The package a module belongs to: itself for a package's ``__init__``, else its parent."""
    return module if is_package else module.rpartition(".")[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, in functions too, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name of a ``from X import …`` (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = package_of(module, is_package).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class Source:
    """One parsed file of kit."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.rel = path.relative_to(root.parent).as_posix()
        self.module = module_name(path, root)
        self.is_package = path.name == "__init__.py"
        self.package = package_of(self.module, self.is_package)
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def load(root: Path = KIT) -> dict[str, Source]:
    """Every ``.py`` file under ``root``, keyed by module name."""
    sources = [Source(p, root) for p in sorted(root.rglob("*.py"))]
    return {s.module: s for s in sources}


def import_graph(sources: dict[str, Source]) -> dict[str, set[str]]:
    """Module → the kit modules it imports (see the module docstring for what counts as an edge)."""
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, src in sources.items():
        for node in runtime_imports(src.tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = resolve_from(node, name, src.is_package)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            graph[name].update(t for t in targets if t in sources and t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted, as the cycles to report."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop through the first module of a component: ``a → b → … → a``."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component


def _functions(tree: ast.AST) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (``Class.method``, ``outer.inner``)."""
    out: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + child.name, child))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def function_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first decorator (or the ``def``) to the function's last line."""
    first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
    return fn.end_lineno - first + 1


def parameter_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters, ``*args``/``**kwargs`` included, a leading ``self``/``cls`` not."""
    a = fn.args
    positional = a.posonlyargs + a.args
    if positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    return len(positional) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def long_functions(sources: dict[str, Source]) -> list[str]:
    """``file: function is N lines`` for each function over the limit."""
    return [
        f"{src.rel}: {qual} is {function_lines(fn)} lines (> {MAX_LINES}), line {fn.lineno}"
        for src in sources.values()
        for qual, fn in _functions(src.tree)
        if function_lines(fn) > MAX_LINES
    ]


def wide_functions(sources: dict[str, Source]) -> list[str]:
    """``file: function takes N parameters`` for each function over the limit."""
    return [
        f"{src.rel}: {qual} takes {parameter_count(fn)} parameters (> {MAX_PARAMS}), line {fn.lineno}"
        for src in sources.values()
        for qual, fn in _functions(src.tree)
        if parameter_count(fn) > MAX_PARAMS
    ]


def _owner(sources: dict[str, Source], module: str) -> str:
    """The package of a kit module name (for a name that is not a file, its parent)."""
    src = sources.get(module)
    return src.package if src else module.rpartition(".")[0]


def private_reaches(sources: dict[str, Source]) -> list[str]:
    """Underscore names (dunders aside) taken from another package of kit: by import or as ``module._name``."""
    found = []
    for src in sources.values():
        module_aliases: dict[str, str] = {}
        for node in runtime_imports(src.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in sources:
                        module_aliases[alias.asname] = alias.name
                continue
            base = resolve_from(node, src.module, src.is_package)
            if not base.startswith("kit"):
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" in sources:
                    module_aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
                if _private(alias.name) and _owner(sources, base) != src.package:
                    found.append(f"{src.rel}: line {node.lineno} imports {alias.name} from {base}")
                elif _private(alias.name.rpartition(".")[2]) and base + "." + alias.name in sources:
                    found.append(f"{src.rel}: line {node.lineno} imports module {base}.{alias.name}")
        for node in ast.walk(src.tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
                and _owner(sources, module_aliases[node.value.id]) != src.package
            ):
                target = module_aliases[node.value.id]
                found.append(f"{src.rel}: line {node.lineno} uses {target}.{node.attr}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def argparse_outside_cli(sources: dict[str, Source]) -> list[str]:
    """``file: line N imports argparse`` for every module outside ``kit.cli``."""
    found = []
    for src in sources.values():
        if src.module == "kit.cli" or src.module.startswith("kit.cli."):
            continue
        for node in runtime_imports(src.tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if "argparse" in names:
                found.append(f"{src.rel}: line {node.lineno} imports argparse (command lines live in kit/cli/)")
    return found


def cycles_report(sources: dict[str, Source]) -> list[str]:
    """One line per import cycle: its modules as one loop."""
    graph = import_graph(sources)
    return [" → ".join(cycle_path(graph, component)) for component in find_cycles(graph)]


def _fmt(problems: list[str]) -> str:
    return "\n".join(problems)


@pytest.fixture(scope="module")
def kit_sources() -> dict[str, Source]:
    return load(KIT)


def test_no_import_cycles(kit_sources):
    problems = cycles_report(kit_sources)
    assert not problems, "import cycles among kit modules:\n" + _fmt(problems)


def test_no_function_over_60_lines(kit_sources):
    problems = long_functions(kit_sources)
    assert not problems, "split these functions:\n" + _fmt(problems)


def test_no_function_over_8_parameters(kit_sources):
    problems = wide_functions(kit_sources)
    assert not problems, "pass a settings dataclass instead:\n" + _fmt(problems)


def test_no_private_names_across_packages(kit_sources):
    problems = private_reaches(kit_sources)
    assert not problems, "make these public where they belong:\n" + _fmt(problems)


def test_argparse_only_in_cli(kit_sources):
    problems = argparse_outside_cli(kit_sources)
    assert not problems, "move these command lines to kit/cli/:\n" + _fmt(problems)


# --- the checker itself: each rule fails on a small made-up kit ---------------------------------------------------


def _fake_kit(tmp_path: Path, files: dict[str, str]) -> dict[str, Source]:
    root = tmp_path / "kit"
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load(root)


def test_checker_finds_a_cycle_through_a_lazy_import_and_a_package_init(tmp_path):
    sources = _fake_kit(
        tmp_path,
        {
            "a.py": "from kit.b import thing\n",
            "b.py": "def thing():\n    from kit.pkg import c\n",
            "pkg/__init__.py": "",
            "pkg/c.py": "import kit.a\n",
        },
    )
    assert cycles_report(sources) == ["kit.a → kit.b → kit.pkg.c → kit.a"]


def test_checker_ignores_type_checking_imports_and_accepts_a_tree(tmp_path):
    sources = _fake_kit(
        tmp_path,
        {
            "a.py": "from kit.b import thing\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kit.a import x\nthing = 1\n",
        },
    )
    assert cycles_report(sources) == []


def test_checker_resolves_relative_imports(tmp_path):
    sources = _fake_kit(tmp_path, {"p/__init__.py": "from . import m\n", "p/m.py": "from .. import p\n"})
    assert cycles_report(sources) == ["kit.p → kit.p.m → kit.p"]


def test_checker_counts_lines_from_the_decorator_and_parameters_without_self(tmp_path):
    body = "\n".join(["    x = 1"] * 59)
    sources = _fake_kit(
        tmp_path,
        {
            "f.py": f"@staticmethod\ndef long():\n{body}\n\n\ndef fits():\n{body}\n",
            "g.py": "class C:\n    def m(self, a, b, c, d, e, f, g, h):\n        pass\n\n"
            "    def n(self, a, b, c, d, e, f, g, *h, **i):\n        pass\n",
        },
    )
    assert long_functions(sources) == ["kit/f.py: long is 61 lines (> 60), line 2"]
    assert wide_functions(sources) == ["kit/g.py: C.n takes 9 parameters (> 8), line 5"]


def test_checker_finds_private_reaches_by_import_and_by_attribute(tmp_path):
    sources = _fake_kit(
        tmp_path,
        {
            "ev/__init__.py": "",
            "ev/src.py": "def _dataset():\n    pass\n",
            "ev/core.py": "from kit.ev.src import _dataset\n",
            "ex/__init__.py": "",
            "ex/a.py": "from kit.ev.src import _dataset\n",
            "ex/b.py": "from kit.ev import src\nsrc._dataset()\n",
        },
    )
    assert private_reaches(sources) == [
        "kit/ex/a.py: line 1 imports _dataset from kit.ev.src",
        "kit/ex/b.py: line 2 uses kit.ev.src._dataset",
    ]


def test_checker_finds_argparse_outside_cli(tmp_path):
    sources = _fake_kit(
        tmp_path,
        {"cli/__init__.py": "", "cli/run.py": "import argparse\n", "data/x.py": "def main():\n    import argparse\n"},
    )
    assert argparse_outside_cli(sources) == ["kit/data/x.py: line 2 imports argparse (command lines live in kit/cli/)"]
