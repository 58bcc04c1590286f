"""The package reads as the method: every module imports on its own, and imports only downward (no circles)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import inheritune_hf

PACKAGE = Path(inheritune_hf.__file__).parent


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_modules(name: str) -> set[str]:
    """Package modules that `name` imports anywhere in its source, also inside functions (lazy imports count)."""
    path = PACKAGE.parent / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    # Imports only for type checkers are dependencies too: a circle through them is still a circle.
    skipped: set[int] = set()
    found = set()
    known = set(module_names())
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


# Importing torch and transformers takes seconds, ~30 fresh interpreters would take minutes. So one interpreter
# first lists the third-party modules the package pulls in; a second imports exactly those, and then forks a child
# per module of the package. Each child starts with no module of this package imported, so a circle or a missing
# import shows exactly as in a fresh interpreter.
LIST_THIRD_PARTY = """
import importlib, sys
for name in sys.argv[1:]:  # every module of the package: the package itself imports none of them
    importlib.import_module(name)
print("\\n".join(m for m in list(sys.modules) if not m.startswith(("inheritune_hf", "__main__"))))
"""
FORK_EACH = """
import importlib, os, sys, traceback
for module in sys.stdin.read().split():
    try:
        importlib.import_module(module)
    except BaseException:
        pass
assert not [m for m in sys.modules if m.startswith("inheritune_hf")]
failed = 0
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed += 1
        print(f"FAILED: import {name}", flush=True)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    names = module_names()
    assert len(names) > 20 and "inheritune_hf.rounds" in names
    listed = subprocess.run(
        [sys.executable, "-c", LIST_THIRD_PARTY, *names], capture_output=True, text=True, check=True
    )
    result = subprocess.run(
        [sys.executable, "-c", FORK_EACH, *names], input=listed.stdout, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_modules_import_only_downward_no_circles():
    graph = {name: imported_modules(name) - {"inheritune_hf"} for name in module_names()}
    # A package's __init__ re-exports what lies below it; the edges that matter run between modules.
    graph = {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + "."):
                continue  # a package importing its own submodules (its __init__)
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_modules():
    # A name with a leading underscore is a module's own business; a second module that needs it wants it public.
    crossing = []
    for name in module_names():
        path = PACKAGE.parent / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("inheritune_hf")):
                crossing += [f"{name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert not crossing, crossing
