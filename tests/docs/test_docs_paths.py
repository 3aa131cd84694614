"""Every file path and module the documentation names exists, so a moved module cannot leave
the docs pointing at nothing."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `prunetune/...`, `benchmarks/...`, `tests/...`, `examples/...`, `tools/...` in backticks.
PATH = re.compile(r"`((?:prunetune|benchmarks|tests|examples|tools)/[\w./-]+?)/?`")
# prunetune.a.b or prunetune.a.b.NAME; not a file name (`prunetune.json`, sqlite:///prunetune.db).
DOTTED = re.compile(r"(?<![\w/.-])(prunetune(?:\.\w+)+)(?!\.?\w)")
FILE_NAMES = {"prunetune.json", "prunetune.db"}


def pages() -> dict[str, str]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in found}


def resolves(dotted: str) -> bool:
    """A module, or a name defined at the top of one (``prunetune.search.registry.STRATEGIES``)."""
    parts = dotted.split(".")
    if len(parts) == 2:  # the package's own names are lazy (prunetune/__init__.py)
        import prunetune

        if parts[1] in prunetune.__all__:
            return True
    origin = None
    for cut in range(1, len(parts) + 1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:cut]))
        except ModuleNotFoundError:  # the parent is a module, not a package
            spec = None
        if spec is None:
            if origin is None or cut < len(parts):
                return False
            text = Path(origin).read_text()
            return re.search(rf"^(?:class |def )?{re.escape(parts[-1])}\b", text, re.M) is not None
        origin = spec.origin
    return True


def test_named_paths_exist() -> None:
    missing = [(name, p) for name, text in pages().items() for p in PATH.findall(text)
               if not (ROOT / p).exists()]
    assert missing == [], f"paths the docs name that do not exist: {missing}"


def test_named_modules_exist() -> None:
    missing = [(name, d) for name, text in pages().items() for d in sorted(set(DOTTED.findall(text)))
               if d not in FILE_NAMES and not resolves(d)]
    assert missing == [], f"modules or names the docs name that do not exist: {missing}"
