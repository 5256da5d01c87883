"""The import graph of ``src/fsqtok``, read from the AST: no module imports a package that contains it
(the way ``hub`` once imported the package ``__init__`` for ``__version__``), no cycle among module-level
imports, and no script, recipe or benchmark imports another through ``sys.path``."""

from __future__ import annotations

import ast
from pathlib import Path

import fsqtok

SRC = Path(fsqtok.__file__).resolve().parent
REPO = SRC.parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str) -> list[tuple[str, bool]]:
    """``(imported fsqtok module, at module level)`` for each import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if is_package(name) else name.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    top |= {id(c) for n in tree.body if isinstance(n, (ast.If, ast.Try)) for c in ast.walk(n)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        if isinstance(node, ast.ImportFrom) and _type_checking_only(tree, node):
            continue
        found += [(t, id(node) in top) for t in targets if t in MODULES]
    return found


def _type_checking_only(tree: ast.Module, node: ast.AST) -> bool:
    return any(isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING" and node in list(ast.walk(n))
               for n in tree.body)


def test_every_module_is_parsed():
    assert {"fsqtok", "fsqtok.hub", "fsqtok.generative.uvim.lm", "fsqtok.datasets.panoptic"} <= set(MODULES)
    assert ("fsqtok.quantizers.fsq", True) in imports("fsqtok.quantizers")  # the parser sees relative imports


def test_no_module_imports_a_package_that_contains_it():
    upward = [(name, target) for name in MODULES for target, _ in imports(name)
              if is_package(target) and name.startswith(target + ".")]
    assert upward == []


def test_no_cycle_among_module_level_imports():
    graph = {name: {t for t, top in imports(name) if top and t != name} for name in MODULES}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [node, nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [])
    assert cycles == []


# the only sys.path edits: loading a reference implementation (not part of fsqtok) from a folder the user names
EXTERNAL_REFERENCE = {"benchmarks/bench_cosmos_port.py", "tests/fixtures/cosmos/make_fixtures.py"}


def _edits_sys_path(node: ast.AST) -> bool:
    """``sys.path.insert/append/extend(...)`` or an assignment to ``sys.path`` (or a slice of it); reading is fine."""
    def is_sys_path(n: ast.AST) -> bool:
        n = n.value if isinstance(n, ast.Subscript) else n
        return isinstance(n, ast.Attribute) and n.attr == "path" and getattr(n.value, "id", "") == "sys"

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("insert", "append", "extend") and is_sys_path(node.func.value)
    return isinstance(node, (ast.Assign, ast.AugAssign)) and any(
        is_sys_path(t) for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))


def test_no_script_recipe_or_benchmark_edits_sys_path():
    files = [p for d in ("scripts", "recipes", "benchmarks", "src", "tests") for p in (REPO / d).rglob("*.py")
             if str(p.relative_to(REPO)) not in EXTERNAL_REFERENCE]
    offenders = sorted({str(p.relative_to(REPO)) for p in files for node in ast.walk(ast.parse(p.read_text()))
                        if _edits_sys_path(node)})
    assert offenders == []
    assert _edits_sys_path(ast.parse("sys.path[:0] = ['x']").body[0]) and not _edits_sys_path(
        ast.parse("env = os.pathsep.join(sys.path)").body[0].value)
