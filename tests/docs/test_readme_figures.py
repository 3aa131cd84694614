"""Every decimal figure README.md and the pages under docs/ quote comes from a run: it lies
in what ``benchmarks/readme_tables.py`` generates (README.md's Results block between the
results markers, and the whole of docs/results.md), or SOURCED names the result file that
holds it (checked: some value of that file, to the digits shown, or a figure in one of its
generated tables), or it is a setting, a version or arithmetic that NOT_MEASUREMENTS names
with its reason. A hand-typed measurement fails."""

from __future__ import annotations

import ast
import io
import json
import math
import re
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GENERATED_PAGE = ROOT / "docs" / "results.md"  # written whole by benchmarks/readme_tables.py
START, END = "<!-- results:start -->", "<!-- results:end -->"
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.]|\.\d)")

# Decimals outside the generated pages and blocks that are not measurements, each with its reason.
NOT_MEASUREMENTS = {
    "3.10": "Python version",
    "2.13": "torch version",
    "0.14": "compressed-tensors version",
    "0.0": "spec setting (space.min)",
    "0.9": "spec setting (space.max) and the grid's upper level",
    "0.05": "spec setting (space.step, grid step)",
    "0.8": "spec setting (target.sparsities)",
    "0.01": "spec default (reconstruction damping)",
    "0.08": "OWL option default (lam)",
    "0.2": "strategy option default (radius); 0.2 s from NVMe arithmetic",
    "0.04": "policy-gradient option default",
    "0.3": "an example call's sparsity",
    "0.4": "arithmetic of the 7 B estimate (GB read per child)",
    "1.4": "arithmetic of the 7 B estimate (bytes a weight)",
    "6.5": "a Llama-2-7B's weight count (B)",
    "0.008": "the full range behind the ±0.004 half-range Results shows for evolutionary at 0.7/256",
    "0.011": "best search-split score minus its REPORT score, from search_quality-s0.7-b256-n3 runs",
    "0.1": "grid step of the GPU reconstruction run (a setting)",
}

# Decimals in the package's docstrings and comments that are not measurements (a benchmark
# figure belongs in benchmarks/results/, not in a docstring), each with its reason.
PACKAGE_NOT_MEASUREMENTS = {
    **NOT_MEASUREMENTS,
    "0.5": "a sparsity in an example or a screen fraction",
    "0.6": "a front level (target.sparsities default)",
    "0.7": "a front level and an example target",
    "1.0": "full fidelity (a fraction of the split)",
    "1.5": "an example of a bad value in an error message; OWL's M range",
    "2.3": "the normal tail beyond two standard errors, in percent (screening's drop rule)",
    "22.7": "MiniLM's parameter count in millions (a property of the model)",
}

# Figures outside the generated pages and blocks, and the result file (benchmarks/results/) each is in.
SOURCED: dict[str, str] = {}


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)] if math.isfinite(value) else []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _strings(v)]
    if isinstance(value, list):
        return [x for v in value for x in _strings(v)]
    return []


def file_figures(name: str) -> set[str]:
    """The figures a result file holds: each value at 1 to 4 decimals (and as a percent),
    and the decimals written in its own generated tables (strings)."""
    text = (ROOT / "benchmarks" / "results" / name).read_text()
    try:
        docs = [json.loads(text)]
    except json.JSONDecodeError:  # reliability.json: one JSON object a line
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    out: set[str] = set()
    for d in docs:
        for v in _numbers(d):
            out |= {f"{abs(v) * k:.{n}f}" for n in range(1, 5) for k in (1, 100)}
        for t in _strings(d):
            out |= set(DECIMAL.findall(t))
    return out


def outside_figures(text: str) -> list[tuple[int, str]]:
    """(line, figure) for every decimal outside a generated block (the whole text when it
    has none)."""
    if START not in text:
        return [(text.count("\n", 0, m.start()) + 1, m.group().lstrip("-")) for m in DECIMAL.finditer(text)]
    pre = text.split(START, 1)[0]
    end = text.index(END)
    found = []
    for part, offset in ((pre, 0), (text[end:], end)):
        for m in DECIMAL.finditer(part):
            found.append((text.count("\n", 0, offset + m.start()) + 1, m.group().lstrip("-")))
    return found


def generated_figures(*texts: str) -> set[str]:
    """The decimals inside the generated blocks of ``texts``."""
    return {f for t in texts if START in t for f in DECIMAL.findall(t.split(START, 1)[1].split(END, 1)[0])}


def unexplained(text: str, sourced: dict[str, str], generated: set[str] | None = None) -> list[tuple[int, str]]:
    generated = generated_figures(text) if generated is None else generated
    held = {name: file_figures(name) for name in set(sourced.values())}
    return [(line, fig) for line, fig in outside_figures(text)
            if fig not in generated and fig not in NOT_MEASUREMENTS
            and not (fig in sourced and fig in held[sourced[fig]])]


def prose_decimals(source: str) -> list[tuple[int, str]]:
    """(line, figure) for every decimal in a Python source's docstrings and comments."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                doc = first.value.value
                found += [(first.lineno + doc.count("\n", 0, m.start()), m.group().lstrip("-"))
                          for m in DECIMAL.finditer(doc)]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found += [(tok.start[0], m.group().lstrip("-")) for m in DECIMAL.finditer(tok.string)]
    return sorted(found)


def pages() -> dict[str, str]:
    """README.md and every hand-written page under docs/, by path."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in found if p != GENERATED_PAGE}


def test_the_results_page_is_generated() -> None:
    readme = (ROOT / "README.md").read_text()
    assert START in readme and END in readme
    assert GENERATED_PAGE.read_text().startswith("<!-- generated by benchmarks/readme_tables.py")


def test_no_page_quotes_a_decimal_figure_that_no_run_produced() -> None:
    readme = (ROOT / "README.md").read_text()
    generated = generated_figures(readme) | set(DECIMAL.findall(GENERATED_PAGE.read_text()))
    missing = [(name, line, fig) for name, text in pages().items()
               for line, fig in unexplained(text, SOURCED, generated)]
    assert missing == [], "figures from no result file (page:line: figure): " + ", ".join(
        f"{name}:{line}: {fig}" for name, line, fig in missing)


def test_a_hand_typed_figure_is_caught() -> None:
    readme = f"intro 0.05 and 3.10\n{START}\n| x | 0.414 |\n{END}\nuniform 0.414; tried: 0.342, 0.25\n"
    assert unexplained(readme, {}) == [(5, "0.342"), (5, "0.25")]
    # Named with a file that holds it: accepted; with one that does not: still caught.
    assert unexplained(readme, {"0.25": "multifidelity.json"}) == [(5, "0.342")]
    assert unexplained(readme, {"0.25": "multifidelity.json", "0.342": "export_formats.json"}) == [(5, "0.342")]
    # A page without a generated block: every decimal is checked, against what is generated elsewhere.
    page = "uniform 0.414 and 0.342\n"
    assert unexplained(page, {}, generated={"0.414"}) == [(1, "0.342")]


def test_the_package_quotes_no_measured_figure() -> None:
    """Docstrings and comments in prunetune/ state settings and facts, never a benchmark's
    figure (those go stale; the results page is generated)."""
    unknown = [(p.relative_to(ROOT).as_posix(), line, fig)
               for p in sorted((ROOT / "prunetune").rglob("*.py"))
               for line, fig in prose_decimals(p.read_text()) if fig not in PACKAGE_NOT_MEASUREMENTS]
    assert unknown == [], "decimals in docstrings or comments that no list explains: " + ", ".join(
        f"{name}:{line}: {fig}" for name, line, fig in unknown)


def test_a_figure_in_a_docstring_or_comment_is_found() -> None:
    source = 'def f():\n    """Reaches 0.342 on REPORT."""\n    x = 0.25  # about 0.29 faster\n'
    assert prose_decimals(source) == [(2, "0.342"), (3, "0.29")]  # the code's 0.25 is not prose
