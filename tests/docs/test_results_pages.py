"""benchmarks/readme_tables.py: which front-search file it reads, and --check naming the stale page."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import readme_tables  # noqa: E402


def test_the_front_search_reads_the_file_with_the_most_seeds(tmp_path: Path) -> None:
    for name in ("pareto_front-minilm-b256-n1", "pareto_front-minilm-b256-n3", "pareto_front-minilm-b64-n3",
                 "pareto_front-llama-b64-n3", "pareto_front-minilm-sparsegpt-b64-n1",
                 "pareto_front-minilm-b256-n5.partial"):  # an interrupted run's checkpoint is not read
        (tmp_path / f"{name}.json").write_text("{}")
    assert [p.name for p in readme_tables.front_search_files(tmp_path)] == [
        "pareto_front-llama-b64-n3.json", "pareto_front-minilm-b256-n3.json", "pareto_front-minilm-b64-n3.json",
        "pareto_front-minilm-sparsegpt-b64-n1.json"]


@pytest.mark.parametrize("stale", ["README.md", "results.md"])
def test_check_names_the_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], stale: str) -> None:
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    shutil.copy(ROOT / "README.md", readme)
    shutil.copy(ROOT / "docs" / "results.md", page)
    monkeypatch.setattr(readme_tables, "README", readme)
    monkeypatch.setattr(readme_tables, "PAGE", page)
    monkeypatch.setattr(readme_tables, "FIGURE", tmp_path / "docs" / "results-fronts.png")
    assert readme_tables.main([]) == 0  # both brought up to date (CI checks the committed ones)
    assert readme_tables.main(["--check"]) == 0
    target = readme if stale == "README.md" else page
    target.write_text(target.read_text().replace("| 0.5 | 64 |", "| 0.5 | 65 |", 1))
    assert readme_tables.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert f"stale: {target}" in err
    assert err.count("stale:") == 1
