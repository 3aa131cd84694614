"""Reconstruction: the SparseGPT solver, the level database, the level pruner and the
one-shot API, on real layers of tiny real models (Linear, GPT-2 Conv1D, Conv2d)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pruning.tiny import image_calibration, small_cnn, tiny_gpt2, tiny_llama, token_calibration
from torch import nn

from prunetune.api import export, load_pruned, prune
from prunetune.pruning.calibration import collect_input_stats
from prunetune.pruning.layers import discover_layers, weight_matrix
from prunetune.pruning.levels import (
    LevelCache,
    LevelPruner,
    build_levels,
    grid_counts,
    pack_bits,
    unpack_bits,
)
from prunetune.pruning.masks import Pruner
from prunetune.pruning.reconstruction import LayerSolver, SparseGPTConfig
from prunetune.pruning.scoring import score_layers


def _correlated_inputs(n: int = 800, d: int = 48, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=gen) + torch.eye(d)  # correlated features, as activations are
    return torch.randn(n, d, generator=gen) @ mix


def _output_error(w: torch.Tensor, dense: torch.Tensor, x: torch.Tensor) -> float:
    return float(((w - dense) @ x.T).pow(2).mean())


@pytest.mark.parametrize("groups", ["row", "layer"])
def test_solver_prunes_exactly_k_and_beats_wanda_masks(groups: str) -> None:
    x = _correlated_inputs()
    w = torch.randn(24, 48, generator=torch.Generator().manual_seed(1))
    solver = LayerSolver(w, (x.T @ x).double(), SparseGPTConfig(block_size=16, groups=groups))  # type: ignore[arg-type]
    for k in (0, 1, 577, 24 * 48 * 7 // 10, 24 * 48 - 1):
        out = solver.prune(k)
        assert int((out == 0).sum()) == k
    k = 24 * 48 * 7 // 10
    wanda = w.abs() * x.norm(dim=0)
    masked = w.clone().reshape(-1)
    masked[torch.argsort(wanda.reshape(-1))[:k]] = 0
    solved = solver.prune(k)
    assert _output_error(solved, w, x) < 0.9 * _output_error(masked.view_as(w), w, x)
    # The update is what pays: the same mask without it loses more.
    assert _output_error(solved, w, x) < 0.85 * _output_error(w * (solved != 0), w, x)
    if groups == "row":  # every row loses the same number (within one per block)
        per_row = (solver.prune(24 * 16) == 0).sum(dim=1)
        assert int(per_row.max() - per_row.min()) <= 3


def test_solver_keeps_the_n_m_pattern_and_rejects_bad_input() -> None:
    x = _correlated_inputs()
    w = torch.randn(8, 48)
    solver = LayerSolver(w, (x.T @ x).double())
    out = solver.prune(0, pattern=(2, 4))
    assert torch.equal((out.view(8, 12, 4) == 0).sum(-1), torch.full((8, 12), 2))
    with pytest.raises(ValueError, match="k must be in"):
        solver.prune(8 * 48 + 1)
    with pytest.raises(ValueError, match="gram must be"):
        LayerSolver(w, torch.eye(10))
    with pytest.raises(ValueError, match="damping"):
        SparseGPTConfig(damping=0.0)


def test_bits_round_trip() -> None:
    mask = torch.rand(37, 13) > 0.4
    assert torch.equal(unpack_bits(pack_bits(mask), mask.numel()).view(37, 13), mask)


def _database(model: nn.Module, cal, tmp_path: Path | None = None):  # type: ignore[no-untyped-def]
    layers = discover_layers(model)
    stats = collect_input_stats(model, layers, cal.batches, cal.forward, cal.token_mask, gram=True)
    modules = dict(model.named_modules())
    weights = {layer.name: weight_matrix(modules[layer.name], layer).detach().clone() for layer in layers}
    grid = [0.0, 0.25, 0.5, 0.75]
    counts, caps = grid_counts(layers, grid, 0.9)
    return layers, stats, weights, build_levels(weights, stats, counts, caps, SparseGPTConfig(block_size=8))


@pytest.mark.parametrize(("build", "cal"), [(tiny_llama, token_calibration), (tiny_gpt2, token_calibration),
                                            (small_cnn, image_calibration)],
                         ids=["llama-linear", "gpt2-conv1d", "cnn-conv2d"])
def test_level_pruner_assembles_exact_counts_and_restores_bit_for_bit(build, cal) -> None:  # type: ignore[no-untyped-def]
    model = build()
    calibration = cal()
    layers, stats, weights, db = _database(model, calibration)
    pruner = LevelPruner(model, layers, db)
    modules = dict(model.named_modules())
    dense = {n: p.detach().clone() for n, p in model.state_dict().items()}
    for s in (0.25, 0.5, 0.61, 0.9):  # on the grid, between levels, at the cap
        pruner.apply([s] * len(layers))
        for layer, k in zip(layers, pruner.counts([s] * len(layers)), strict=True):
            w = weight_matrix(modules[layer.name], layer)
            assert int((w == 0).sum()) == k, (layer.name, s)
        pruner.restore()
        for n, p in model.state_dict().items():
            assert torch.equal(p, dense[n]), n
    # A grid level is the solver's own answer (values stored in half precision).
    layer = layers[0]
    k = round(0.5 * layer.numel)
    solved = LayerSolver(weights[layer.name], stats[layer.name].gram, SparseGPTConfig(block_size=8)).prune(k)  # type: ignore[arg-type]
    assert torch.allclose(db.weight(layer.name, k, weights[layer.name]), solved, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="level database that goes up to"):
        db.weight(layer.name, layer.numel, weights[layer.name])
    # Just below a level: every row but one comes whole from that level (rows are fitted
    # independently), the last from the level below with the few missing weights removed.
    near = db.weight(layer.name, k - 3, weights[layer.name])
    assert int((near == 0).sum()) == k - 3
    from_above = (near == db.weight(layer.name, k, weights[layer.name])).all(dim=1)
    assert int((~from_above).sum()) == 1

def test_level_pruner_reconstructs_better_than_masks_on_the_same_layers() -> None:
    model = tiny_llama()
    cal = token_calibration()
    layers, _, _, db = _database(model, cal)
    with torch.no_grad():
        dense_out = [cal.forward(model, b).logits for b in cal.batches]

    def error(pruner: Pruner) -> float:
        with pruner.applied([0.75] * len(layers)), torch.no_grad():
            return sum(float((cal.forward(model, b).logits - d).pow(2).mean())
                       for b, d in zip(cal.batches, dense_out, strict=True))

    masked = Pruner(model, layers, score_layers(model, layers, "wanda", cal))
    assert error(LevelPruner(model, layers, db)) < error(masked)


def test_level_cache_round_trip(tmp_path: Path) -> None:
    model = tiny_gpt2()
    layers, _, weights, db = _database(model, token_calibration())
    cache = LevelCache(tmp_path)
    assert cache.get("k") is None
    cache.put("k", db)
    back = cache.get("k")
    assert back is not None and back.nbytes == db.nbytes and back.caps == db.caps
    for layer in layers:
        for k in (0, round(0.3 * layer.numel), round(0.75 * layer.numel)):
            assert torch.equal(back.weight(layer.name, k, weights[layer.name]),
                               db.weight(layer.name, k, weights[layer.name]))
    cache.path("k").write_bytes(b"truncated")
    assert cache.get("k") is None  # a broken file is rebuilt, not read


@pytest.mark.parametrize("sequential", [False, True])
def test_prune_with_reconstruction_exports_and_reloads(tmp_path: Path, sequential: bool) -> None:
    model = tiny_llama()
    cal = token_calibration()
    with torch.no_grad():
        dense_out = [model(input_ids=b["input_ids"]).logits for b in cal.batches]
    report = prune(model, 0.6, calibration=cal, reconstruction="sparsegpt", sequential=sequential)
    assert report.sparsity == pytest.approx(0.6, abs=1e-3)
    assert report.criterion == "sparsegpt" and ("sequential" in report.mode) == sequential
    export(model, tmp_path / "out")
    back = load_pruned(tmp_path / "out")
    with torch.no_grad():
        for b, d in zip(cal.batches, dense_out, strict=True):
            here, there = model(input_ids=b["input_ids"]).logits, back(input_ids=b["input_ids"]).logits
            assert torch.allclose(here, there, atol=1e-5)
            assert not torch.allclose(here, d, atol=1e-3)  # it did prune


def test_sequential_wanda_differs_from_independent_after_the_first_block() -> None:
    cal = token_calibration()
    independent, sequential = tiny_llama(), tiny_llama()
    prune(independent, 0.5, criterion="wanda", calibration=cal)
    prune(sequential, 0.5, criterion="wanda", calibration=cal, sequential=True)
    a, b = dict(independent.named_parameters()), dict(sequential.named_parameters())
    first = "model.layers.0.self_attn.q_proj.weight"
    later = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(a[first] == 0, b[first] == 0)  # the first block sees the same inputs
    assert not torch.equal(a[later] == 0, b[later] == 0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"reconstruction": "obs"}, "reconstruction 'obs' is unknown"),
    ({"reconstruction": "sparsegpt", "granularity": "heads"}, "removes structures"),
    ({"reconstruction": "sparsegpt", "mode": "global"}, "takes mode 'per-layer'"),
    ({"reconstruction": "sparsegpt", "calibration": None}, "needs calibration"),
])
def test_bad_reconstruction_input_is_named(kwargs: dict, message: str) -> None:
    args = {"calibration": token_calibration(), **kwargs}
    with pytest.raises(ValueError, match=message):
        prune(tiny_llama(), 0.5, **args)
