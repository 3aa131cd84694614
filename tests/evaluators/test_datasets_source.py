"""Task data through the `datasets` library, on local files in the layouts users have: a
parquet file as the Hub stores wikitext, JSON lines, a `save_to_disk` folder; and the
contiguous perplexity protocol (text in order, whole rows, consecutive windows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunetune.engine.sources import load_hf_directory, minilm_path
from prunetune.errors import SpecError
from prunetune.evaluators.causal_lm import CausalLMTask
from prunetune.evaluators.data import _chunk_text, text_chunks
from prunetune.spec import DatasetSource, SearchSpec, TaskSpec

datasets = pytest.importorskip("datasets")


def _rows() -> list[str]:
    """Real prose with the blank and heading rows of wikitext's layout."""
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics)[:30]:
        out += ["", f" = {key} = \n", topics[key]]
    return out


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetSource]:
    root = tmp_path_factory.mktemp("data")
    rows = _rows()
    ds = datasets.Dataset.from_dict({"text": rows, "id": list(range(len(rows)))})
    parquet = root / "wikitext-2-raw-v1" / "test-00000-of-00001.parquet"
    parquet.parent.mkdir()
    ds.to_parquet(str(parquet))
    (root / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    datasets.DatasetDict({"test": ds, "train": ds.select(range(3))}).save_to_disk(str(root / "saved"))
    return {
        "parquet": DatasetSource(dataset=str(parquet)),
        "jsonl": DatasetSource(dataset=str(root / "test.jsonl")),
        "save_to_disk": DatasetSource(dataset=str(root / "saved"), split="test"),
    }


def test_every_layout_gives_the_rows_in_order(layouts: dict[str, DatasetSource]) -> None:
    expected = _chunk_text("\n\n".join(_rows()), 8, 60)
    for name, source in layouts.items():
        assert text_chunks(source, "embedding") == expected, name


def test_a_spec_reads_a_datasets_source(layouts: dict[str, DatasetSource]) -> None:
    spec = SearchSpec.from_dict({"model": {"source": "minilm"},
                                 "task": {"kind": "embedding", "data": layouts["parquet"].model_dump(),
                                          "calibration": 8, "search": 8, "report": 8}})
    assert isinstance(spec.task.data, DatasetSource)
    from prunetune.evaluators.tasks import EmbeddingTask

    task = EmbeddingTask(load_hf_directory(minilm_path()), spec.task)
    chunks = set(_chunk_text("\n\n".join(_rows()), 8, 60))
    assert set(task.splits.report) <= chunks and len(task.splits.report) == 8


@pytest.mark.parametrize(("source", "field", "words"), [
    ({"dataset": "/no/such/file.parquet"}, "task.data.dataset", "could not load split"),
    ({"dataset": "acme/not-cached"}, "task.data.dataset", "it must be in the datasets cache"),
])
def test_bad_sources_name_the_field(source: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        text_chunks(DatasetSource(**source), "embedding")
    assert err.value.field == field and words in str(err.value)


def test_wrong_split_and_column_are_named(layouts: dict[str, DatasetSource]) -> None:
    saved = layouts["save_to_disk"]
    with pytest.raises(SpecError, match=r"'task.data.split': got 'validation'; the folder holds splits test, train"):
        text_chunks(saved.model_copy(update={"split": "validation"}), "embedding")
    with pytest.raises(SpecError, match=r"'task.data.column': got 'body'; the dataset's columns are text, id"):
        text_chunks(saved.model_copy(update={"column": "body"}), "embedding")


def test_contiguous_protocol_reads_the_rows_in_order(tiny_llama_dir: Path, layouts: dict[str, DatasetSource]) -> None:
    """Windows are consecutive slices of the rows joined in order (bytes here: the tiny
    Llama reads bytes), calibration first, then search, then report."""
    loaded = load_hf_directory(str(tiny_llama_dir))
    spec = TaskSpec(kind="causal-lm", data=layouts["parquet"], protocol="contiguous",
                    calibration=2, search=2, report=2, max_length=64)
    task = CausalLMTask(loaded, spec)
    stream = torch.tensor(list("".join(r + "\n\n" for r in _rows()).encode()), dtype=torch.long)
    windows = torch.cat([task._windows[s] for s in ("calibration", "search", "report")])
    assert torch.equal(windows.reshape(-1), stream[: 6 * 64])
    shuffled = CausalLMTask(loaded, spec.model_copy(update={"protocol": None}))
    assert not torch.equal(shuffled._windows["calibration"], task._windows["calibration"])


def test_protocol_is_for_causal_lm() -> None:
    with pytest.raises(SpecError, match=r"task.protocol 'contiguous' is for kind 'causal-lm'"):
        SearchSpec.from_dict({"model": {"source": "minilm"},
                              "task": {"kind": "embedding", "protocol": "contiguous"}})
