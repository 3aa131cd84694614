"""The package's layering: no import circles, and the import-linter contracts hold and bite."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prunetune"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, from every import statement in
    the module (at module level, inside functions and under ``TYPE_CHECKING`` alike);
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module."""
    root = package.parent
    files = {module_name(p, root): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{alias.name}" if f"{mod}.{alias.name}" in files else mod
                           for alias in node.names]
            for target in targets:
                # The deepest module of the package that the import names.
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and target != package.name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph(PACKAGE)
    assert "prunetune.spec" in graph["prunetune.engine.workbench"]
    # cli/service.py imports the app inside a function only.
    assert "prunetune.service.app" in graph["prunetune.cli.service"]


def test_no_import_circle() -> None:
    found = circles(import_graph(PACKAGE))
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_circles_finds_a_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    assert circles(import_graph(pkg)) == [["pkg.a", "pkg.sub.b"]]


def _lint_imports() -> Path:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return exe


def test_import_contracts_hold() -> None:
    done = subprocess.run([_lint_imports()], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# A wrong import added to a copy of the package, and the arrow lint-imports must name.
WRONG_IMPORTS = [
    ("pruning/masks.py", "from prunetune.store import studies", "prunetune.pruning.masks -> prunetune.store.studies"),
    ("store/studies.py", "from prunetune.search import base", "prunetune.store.studies -> prunetune.search.base"),
    ("search/controller.py", "from prunetune.engine import workbench",
     "prunetune.search.controller -> prunetune.engine.workbench"),
]


@pytest.mark.parametrize(("path", "line", "arrow"), WRONG_IMPORTS, ids=[w[0] for w in WRONG_IMPORTS])
def test_import_contracts_fail_on_a_wrong_import(tmp_path: Path, path: str, line: str, arrow: str) -> None:
    """A copy of the package with one import against the contracts: lint-imports must
    refuse it and name the arrow (a forbidden one, and one that runs up the layers)."""
    exe = _lint_imports()
    shutil.copytree(PACKAGE, tmp_path / "prunetune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    module = tmp_path / "prunetune" / path
    module.write_text(module.read_text(encoding="utf-8") + f"\n{line}  # noqa\n")
    # The copy, not the installed package, must be the one analysed.
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode != 0, done.stdout
    assert arrow in done.stdout


def test_the_search_space_imports_no_torch() -> None:
    """Strategies see the space; spaces/ stays free of torch (layer discovery is in pruning/)."""
    code = "import sys, prunetune.spaces.space, prunetune.search.strategies.owl_stats; assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
