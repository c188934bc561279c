"""The layers point one way: web (pages and API) -> ml -> crm.

Every module of crm/, ml/ and web/ is read with ``ast`` (no import is run), its project imports
collected, those inside functions included, and the test fails on:

- an import cycle between modules;
- a crm module importing ml or web, or an ml module importing web;
- an import inside a function without a comment on its line or the line above saying why.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crm", "ml", "web")
# The layer of each top-level package; a module may import its own layer and the ones below.
LAYER = {"crm": 0, "ml": 1, "web": 2}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict:
    """{dotted name: path} of every module of the packages, migrations aside (frozen history:
    their RunPython functions import inside by Django's convention, from the historical models)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                out[_module_name(path)] = path
    return out


MODULES = project_modules()


class _Imports(ast.NodeVisitor):
    """(line, target module, inside a function) for each import of a project module."""

    def __init__(self, module: str, is_package: bool):
        self.module, self.is_package = module, is_package
        self.depth = 0
        self.found = []

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, node, name: str):
        if name.split(".")[0] in PACKAGES:
            self.found.append((node.lineno, _resolve(name), self.depth > 0))

    def visit_Import(self, node):
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:
            here = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            here = here[:len(here) - (node.level - 1)]
            base = ".".join([*here, base] if base else here)
        for alias in node.names:
            # "from crm import selectors" imports the module crm.selectors; "from crm.models import
            # Customer" the module crm.models.
            self._add(node, f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)


def _resolve(name: str) -> str:
    """The longest prefix of ``name`` that is a project module."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or name


def imports_of(module: str) -> list:
    path = MODULES[module]
    visitor = _Imports(module, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return visitor.found


IMPORTS = {module: imports_of(module) for module in MODULES}


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_layers_walk_finds_the_packages():
    assert {"crm.models", "ml.models", "web.urls"} <= set(MODULES)
    assert any(target == "crm.models" for _line, target, _inner in IMPORTS["ml.models"])


def test_layers_no_import_cycle():
    graph = {m: {target for _line, target, _inner in found if target in MODULES and target != m}
             for m, found in IMPORTS.items()}
    # A package's __init__ is imported with any of its modules; only the edges written count.
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_point_one_way(module):
    layer = LAYER[module.split(".")[0]]
    upward = sorted({(line, target) for line, target, _inner in IMPORTS[module]
                     if LAYER[target.split(".")[0]] > layer})
    upward = [f"line {line}: {target}" for line, target in upward]
    assert not upward, f"{module} imports a layer above it:\n" + "\n".join(upward)


_NOT_A_REASON = re.compile(r"noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore(\[[^\]]*\])?|nosec(\s+B[0-9]+)?"
                           r"|[-–—:;,.()]")


def _has_reason(lines: list, lineno: int) -> bool:
    """A comment on the import's line or on the line above, with words besides linter codes (a lone
    ``noqa: PLC0415`` says nothing about why)."""
    for text in lines[max(0, lineno - 2):lineno]:
        if "#" in text and _NOT_A_REASON.sub("", text.split("#", 1)[1]).strip():
            return True
    return False


def _inner_imports(module: str) -> list:
    """(line, text) of each import inside a function of the module, of any module (project or not)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    out.append(inner.lineno)
    return sorted(set(out))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_imports_inside_functions_say_why(module):
    lines = MODULES[module].read_text(encoding="utf-8").splitlines()
    silent = [f"line {n}: {lines[n - 1].strip()}" for n in _inner_imports(module) if not _has_reason(lines, n)]
    assert not silent, f"{module}: imports inside a function without a comment saying why:\n" + "\n".join(silent)


def test_layers_checks_catch_planted_faults():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    lines = ["def f():", "    from crm import models", "    # the worker process only", "    import celery",
             "    import json  # noqa: PLC0415"]
    assert [n for n in (2, 4, 5) if not _has_reason(lines, n)] == [2, 5]
