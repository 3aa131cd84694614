"""The four splits of every task kind: calibration, search, report and validation are
disjoint; validation is cut after the other three, so they are the same as before it
existed (every published figure reproduces); a validation split the data cannot hold
names task.validation; ``split="validation"`` scores it against its own dense reference."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import digits_spec_dict

from prunetune.engine.sources import load_hf_directory
from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.errors import SpecError
from prunetune.evaluators.causal_lm import CausalLMTask
from prunetune.evaluators.data import pydoc_chunks, split_text
from prunetune.spec import SearchSpec, TaskSpec

SPLITS = ("calibration", "search", "report", "validation")
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _disjoint(rows: dict[str, set]) -> None:  # type: ignore[type-arg]
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not (rows[a] & rows[b]), f"{a} and {b} share {len(rows[a] & rows[b])} examples"


def _validation_is_scored(bench: Workbench, quality: str, continuous: str) -> None:
    """Dense and pruned on validation; ``continuous``: a metric that differs between two
    different sets of examples (accuracy on 200 images may tie by chance)."""
    ev, dim = bench.evaluator, bench.space.dim
    dense = ev.evaluate([0.0] * dim, split="validation")
    pruned = {s: ev.evaluate([0.8] * dim, split=s) for s in ("search", "validation")}
    assert pruned["validation"][quality] < dense[quality]
    assert pruned["validation"][continuous] != pruned["search"][continuous]


def _held_out_slices(task, x: torch.Tensor, calibration: int, sizes: list[int]) -> None:  # type: ignore[no-untyped-def]
    """The digits task's splits are these consecutive slices of the model's image order:
    calibration from the training images, the other three from the 797 held out."""
    assert torch.equal(task._x["calibration"], x[:calibration])
    start = 1000
    for split, n in zip(SPLITS[1:], sizes, strict=True):
        assert torch.equal(task._x[split], x[start : start + n]), split
        start += n


def test_text_splits_are_disjoint_and_the_published_three_unchanged() -> None:
    chunks = pydoc_chunks()
    splits = split_text(chunks, 256, 128, 512)  # search_quality.py's sizes; validation: as search
    rows = {s: set(getattr(splits, s)) for s in SPLITS}
    assert [len(rows[s]) for s in SPLITS] == [256, 128, 512, 128]
    _disjoint(rows)
    # The hashes the published search-quality figures were produced on, before validation.
    published = json.loads((RESULTS / "search_quality-s0.7-b64-n3-20261130T092951.json").read_text())
    hashes = splits.hashes()
    assert {k: hashes[k] for k in ("calibration", "search", "report")} == published["provenance"]["data_hashes"]
    assert split_text(chunks, 256, 128, 512, validation=0).hashes()["report"] == hashes["report"]
    left = len(chunks) - 896
    assert len(split_text(chunks, 256, 128, 512, validation=left).validation) == left
    with pytest.raises(SpecError, match=r"task\.validation.*leaves 737 chunks"):
        split_text(chunks, 256, 128, 512, validation=left + 1)


def test_embedding_task_scores_a_disjoint_validation_split(minilm_bench: Workbench) -> None:
    task = minilm_bench.task
    rows = {s: set(getattr(task.splits, s)) for s in SPLITS}
    assert len(rows["validation"]) == len(rows["search"]) == 32
    _disjoint(rows)
    assert len(set(task.data_hashes().values())) == 4
    _validation_is_scored(minilm_bench, "fidelity", "fidelity")


def test_classification_held_out_images_and_sklearn_sets(tmp_path: Path) -> None:
    bench = build_workbench(SearchSpec.from_dict(digits_spec_dict()))
    # Search and report are the images they were; validation (as many as search; 297
    # held-out images are left) comes after them.
    _held_out_slices(bench.task, bench.loaded.extras["x"], 128, [200, 300, 200])
    _validation_is_scored(bench, "accuracy", "kl_to_dense")

    from prunetune.evaluators.classification import ClassificationTask, _cut

    iris = {"kind": "classification", "data": "sklearn:iris", "calibration": 30, "search": 50, "report": 50}
    # Iris has 150 rows: 20 are left, and validation takes them all by default.
    cut = _cut(150, TaskSpec(**iris))
    assert [len(cut[s]) for s in SPLITS] == [30, 50, 50, 20]
    _disjoint({s: set(cut[s]) for s in SPLITS})
    assert cut["report"] == _cut(150, TaskSpec(**iris, validation=0))["report"]
    task = ClassificationTask(bench.loaded, TaskSpec(**iris))
    assert len(task._y["validation"]) == 20
    with pytest.raises(SpecError, match=r"task\.validation.*leaves 20 examples"):
        ClassificationTask(bench.loaded, TaskSpec(**iris, validation=21))
    with pytest.raises(SpecError, match=r"task\.validation.*leaves 97 held-out images"):
        build_workbench(SearchSpec.from_dict(digits_spec_dict(
            task={"kind": "classification", "data": "digits", "calibration": 64, "search": 300, "report": 400,
                  "validation": 98})))


def test_nothing_left_for_validation_is_an_error_when_scored() -> None:
    bench = build_workbench(SearchSpec.from_dict(digits_spec_dict(
        task={"kind": "classification", "data": "digits", "calibration": 64, "search": 397, "report": 400})))
    assert len(bench.task._y["validation"]) == 0
    assert bench.evaluator.evaluate([0.5] * bench.space.dim, split="report")["accuracy"] > 0
    with pytest.raises(SpecError, match=r"task\.validation"):
        bench.evaluator.evaluate([0.5] * bench.space.dim, split="validation")
    with pytest.raises(SpecError, match=r"split.*allowed: calibration, search, report, validation"):
        bench.evaluator.evaluate([0.5] * bench.space.dim, split="test")  # type: ignore[arg-type]


def test_causal_lm_splits_are_disjoint_regions_with_validation_last(tiny_llama_dir: Path) -> None:
    loaded = load_hf_directory(str(tiny_llama_dir))
    sizes = {"calibration": 8, "search": 16, "report": 16, "max_length": 64, "stride": 32}
    task = CausalLMTask(loaded, TaskSpec(kind="causal-lm", **sizes))
    before = CausalLMTask(loaded, TaskSpec(kind="causal-lm", validation=0, **sizes))
    assert len(task._windows["validation"]) == 16 and len(before._windows["validation"]) == 0
    for s in ("calibration", "search", "report"):
        assert torch.equal(task._windows[s], before._windows[s])
    # Tokens of the stream each split reads (start of each window's new part): disjoint.
    starts = {s: {tuple(w[-32:].tolist()) for w in task._windows[s]} for s in SPLITS}
    _disjoint(starts)
    task.prepare(loaded.model)
    dense = task.score(loaded.model, "validation")
    assert dense["kl_to_dense"] == pytest.approx(0.0, abs=1e-6)
    assert dense["tokens_scored"] == 63 + 15 * 32
    with pytest.raises(SpecError, match=r"task\.validation.*windows"):
        CausalLMTask(loaded, TaskSpec(kind="causal-lm", validation=100_000, **sizes))


USER_MODULE = textwrap.dedent('''
    def accuracy(model, batch):
        return float((model(batch["x"]).argmax(-1) == batch["labels"]).float().mean())
''')


def test_callable_task_scores_validation_through_its_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"split_metrics_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = SearchSpec.from_dict(digits_spec_dict(task={"kind": "callable", "function": f"{name}:accuracy",
                                                           "data": "digits", "calibration": 64, "search": 200,
                                                           "report": 300, "validation": 150}))
        bench = build_workbench(spec)
        inner = bench.task.inner
        _held_out_slices(inner, bench.loaded.extras["x"], 64, [200, 300, 150])
        ev, dim = bench.evaluator, bench.space.dim
        # The user's function sees the validation images: its score is their accuracy.
        model, x, y = bench.loaded.model, inner._x["validation"], inner._y["validation"]
        with torch.no_grad():
            expect = float((model(x).argmax(-1) == y).float().mean())
        assert ev.evaluate([0.0] * dim, split="validation")["score"] == pytest.approx(expect)
        assert ev.evaluate([0.9] * dim, split="validation")["score"] < expect
    finally:
        sys.modules.pop(name, None)
