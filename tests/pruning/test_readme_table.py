"""The docs' criterion x granularity table (docs/pruning.md) is the one the code supports."""

from __future__ import annotations

from pathlib import Path

from prunetune.pruning.granularity import support_table


def test_the_docs_show_the_supported_pairs() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "pruning.md").read_text()
    assert support_table() in page
