"""Causal-LM task on a tiny Llama trained in the fixture (real weights, real text)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from prunetune.engine.sources import load_hf_directory
from prunetune.engine.workbench import build_workbench
from prunetune.errors import SpecError
from prunetune.evaluators.causal_lm import ByteTokenizer, CausalLMTask, coarse_kl, teacher_topk
from prunetune.spec import SearchSpec, TaskSpec


def _spec(path: Path, **task: object) -> SearchSpec:
    t = {"kind": "causal-lm", "calibration": 16, "search": 32, "report": 32, "max_length": 64, "batch_size": 16}
    t.update(task)
    return SearchSpec.from_dict({"model": {"path": str(path)}, "task": t,
                                 "space": {"criterion": "wanda", "max": 0.9}})


@pytest.fixture(scope="module")
def llama_bench(tiny_llama_dir: Path):  # type: ignore[no-untyped-def]
    return build_workbench(_spec(tiny_llama_dir))


def test_perplexity_rises_with_uniform_sparsity(llama_bench) -> None:  # type: ignore[no-untyped-def]
    ev, dim = llama_bench.evaluator, llama_bench.space.dim
    dense, half, most = (ev.evaluate([s] * dim) for s in (0.0, 0.5, 0.8))
    assert dense["perplexity"] < half["perplexity"] < most["perplexity"]
    assert dense["kl_to_dense"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < half["kl_to_dense"] < most["kl_to_dense"]
    assert dense["neg_perplexity"] == -dense["perplexity"]
    # A trained model: far better than uniform over 256 bytes.
    assert dense["perplexity"] < 40
    assert dense["seq_len"] == 64 and dense["stride"] == 64 and dense["tokens_scored"] == 32 * 63


def test_overlapping_windows_score_each_token_once(tiny_llama_dir: Path) -> None:
    loaded = load_hf_directory(str(tiny_llama_dir))
    assert loaded.tokenizer is None  # a byte-level model
    spec = TaskSpec(kind="causal-lm", calibration=4, search=8, report=8, max_length=64, stride=16)
    task = CausalLMTask(loaded, spec)
    task.prepare(loaded.model)
    m = task.score(loaded.model, "search")
    # First window scores 63 targets, each later one its 16 new tokens.
    assert m["tokens_scored"] == 63 + 7 * 16 and m["stride"] == 16
    w = task._windows["search"]
    assert torch.equal(w[1, :48], w[0, 16:])  # consecutive windows overlap by 48 tokens
    hashes = task.data_hashes()
    assert len(set(hashes.values())) == 4  # calibration, search, report, validation


def test_splits_are_disjoint_regions_and_fractions_are_subsets(llama_bench) -> None:  # type: ignore[no-untyped-def]
    task = llama_bench.task
    seen = [set(map(tuple, task._windows[s].tolist())) for s in ("calibration", "search", "report")]
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    part = task.split_batches("search", 0.25)
    idx = torch.cat([b["index"] for b in part]).tolist()
    assert len(idx) == 8 and idx == sorted(set(idx)) and idx[-1] > 16  # spread over the split
    low = llama_bench.evaluator.evaluate([0.5] * llama_bench.space.dim, fidelity=0.25)
    assert low["fidelity_level"] == 0.25 and low["tokens_scored"] == 8 * 63


def test_loss_is_next_token_cross_entropy(llama_bench) -> None:  # type: ignore[no-untyped-def]
    task, model = llama_bench.task, llama_bench.loaded.model
    batch = task.calibration_batches()[0]
    with torch.no_grad():
        ours = task.loss(model, batch)
        theirs = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_coarse_kl_is_exact_with_full_vocabulary_and_a_bound_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    t, s = torch.randn(5, 50, generator=gen), torch.randn(5, 50, generator=gen)
    exact = (torch.softmax(t, -1) * (torch.log_softmax(t, -1) - torch.log_softmax(s, -1))).sum(-1)
    assert torch.allclose(coarse_kl(teacher_topk(t, 50), s), exact, atol=1e-5)
    bound = coarse_kl(teacher_topk(t, 10), s)
    assert bool((bound <= exact + 1e-5).all()) and bool((bound >= 0).all())


def test_too_little_text_names_the_fields(tiny_llama_dir: Path) -> None:
    loaded = load_hf_directory(str(tiny_llama_dir))
    spec = TaskSpec(kind="causal-lm", calibration=100_000, search=1, report=1, max_length=512)
    with pytest.raises(SpecError, match=r"task\.calibration"):
        CausalLMTask(loaded, spec)
    assert ByteTokenizer().encode("é") == [195, 169]
    assert math.isfinite(float(len(ByteTokenizer().encode("x"))))
