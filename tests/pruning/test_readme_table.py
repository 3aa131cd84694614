"""The README's criterion x granularity table is the one the code supports."""

from __future__ import annotations

from pathlib import Path

from prunetune.pruning.granularity import support_table


def test_readme_shows_the_supported_pairs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert support_table() in readme
