"""A budget-mode search over reconstructed levels on a trained tiny Llama: it beats the
masks it replaces, its report baselines are reconstructed too, and the exported best
trial reloads to the perplexity the job reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunetune.api import load_pruned
from prunetune.engine.runner import run_job
from prunetune.engine.workbench import build_workbench
from prunetune.service.export import export_trial
from prunetune.spec import SearchSpec


def _spec(path: Path, reconstruction: str | None, **extra: object) -> SearchSpec:
    return SearchSpec.from_dict({
        "name": "recon-job", "model": {"path": str(path)},
        "task": {"kind": "causal-lm", "calibration": 16, "search": 16, "report": 32, "max_length": 64,
                 "batch_size": 16},
        "space": {"criterion": "wanda", "max": 0.9, "step": 0.1, "reconstruction": reconstruction},
        "target": {"sparsity": 0.6}, "budget": {"trials": 10}, "strategy": {"name": "evolutionary"},
        "seed": 0, **extra,
    })


def test_search_over_levels_exports_what_it_reported(tiny_llama_dir: Path, tmp_path: Path) -> None:
    masks = build_workbench(_spec(tiny_llama_dir, None))
    spec = _spec(tiny_llama_dir, "sparsegpt")
    bench = build_workbench(spec)
    assert bench.levels is not None and bench.levels.nbytes > 0
    uniform = [0.6] * bench.space.dim
    recon_ppl = bench.evaluator.evaluate(uniform, "report")["perplexity"]
    mask_ppl = masks.evaluator.evaluate(uniform, "report")["perplexity"]
    assert recon_ppl < mask_ppl  # the same allocation, reconstructed, predicts better

    out = run_job(spec, db=f"sqlite:///{tmp_path}/job.db", bench=bench)
    best = out.front[0]
    pruned = round(0.6 * bench.space.prunable_params)  # budget mode: exact to the weight
    assert bench.space.prunable_params - bench.space.nonzero_params(best.candidate.sparsities) + \
        bench.space.extra_params == pruned
    reported = out.reports[best.number]["perplexity"]
    allocation = dict(zip(bench.space.names, best.candidate.sparsities, strict=True))
    export_trial(spec, allocation, tmp_path / "best", {"trial": best.number})
    model = load_pruned(tmp_path / "best")
    assert bench.task.score(model, "report")["perplexity"] == pytest.approx(reported, rel=1e-5)
    zeros = sum(int((model.get_submodule(n).weight == 0).sum()) for n in bench.space.names)
    assert zeros == pruned


def test_level_database_is_read_back_from_the_cache(tiny_llama_dir: Path) -> None:
    spec = _spec(tiny_llama_dir, "sparsegpt")
    first = build_workbench(spec)
    again = build_workbench(spec)
    assert again.levels is not None and first.levels is not None
    assert again.levels.build_seconds == 0.0  # read, not rebuilt
    s = [0.45] * first.space.dim  # between grid levels: the top-up order decides the rest
    a = first.evaluator.evaluate(s, "search")["perplexity"]
    b = again.evaluator.evaluate(s, "search")["perplexity"]
    assert a == b
    # The candidate stays live between evaluations; the next one moves only what differs
    # and leaves exactly the weights a fresh assembly gives.
    other = list(s)
    other[0], other[1] = 0.3, 0.6
    first.evaluator.evaluate(other, "search")
    live = {n: p.detach().clone() for n, p in first.loaded.model.named_parameters()}
    first.pruner.restore()
    assert all(torch.count_nonzero(p) == p.numel() for n, p in first.loaded.model.named_parameters() if "proj" in n)
    first.pruner.apply(other)
    assert all(torch.equal(p, live[n]) for n, p in first.loaded.model.named_parameters())
    first.pruner.restore()
