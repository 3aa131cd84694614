"""Importance criteria on real tensors: shapes, the planted-weights ranking, and that
calibration passes leave the model as they found it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pruning.tiny import tiny_gpt2, token_calibration
from torch import nn

from prunetune.pruning.calibration import Calibration
from prunetune.pruning.importance import CRITERIA, get_criterion
from prunetune.pruning.layers import discover_layers
from prunetune.pruning.scoring import score_layers

PLANTED = [0, 1, 2, 3]  # small weights on large inputs: they matter
IDLE = [4, 5, 6, 7]  # large weights on near-zero inputs: they do not


def _planted() -> tuple[nn.Module, Calibration]:
    """A regression layer at its true weights; targets carry noise, so per-batch
    gradients are not zero (as on any real calibration set)."""
    torch.manual_seed(0)
    w = torch.full((16,), 0.3)
    w[PLANTED], w[IDLE] = 0.05, 1.0
    scale = torch.ones(16)
    scale[PLANTED], scale[IDLE] = 20.0, 0.01
    model = nn.Sequential(nn.Linear(16, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(w[None, :])
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(32):
        x = torch.randn(64, 16, generator=gen) * scale
        y = x @ w[:, None] + 0.5 * torch.randn(64, 1, generator=gen)
        batches.append((x, y))
    cal = Calibration(batches, forward=lambda m, b: m(b[0]), loss=lambda m, b: F.mse_loss(m(b[0]), b[1]))
    return model, cal


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each weight from the least (0) to the most important."""
    return torch.argsort(torch.argsort(scores.reshape(-1), stable=True))


@pytest.mark.parametrize("criterion", ["fisher", "taylor", "monte-carlo"])
def test_planted_weights_rank_above_where_magnitude_puts_them(criterion: str) -> None:
    model, cal = _planted()
    layers = discover_layers(model)
    options = {"samples": 400, "rate": 0.25} if criterion == "monte-carlo" else {}
    magnitude = _ranks(score_layers(model, layers, "magnitude")["0"])
    ranked = _ranks(score_layers(model, layers, get_criterion(criterion, **options), cal)["0"])
    assert magnitude[PLANTED].max() <= 3  # magnitude calls them the least important
    assert ranked[PLANTED].min() >= 12  # the data-aware criteria call them the most important
    assert ranked[IDLE].max() < ranked[PLANTED].min()


def test_gradient_criteria_leave_flags_and_grads_alone() -> None:
    model = tiny_gpt2()
    model.transformer.wte.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    layers = discover_layers(model)
    for name in ("taylor", "fisher", "gradient-l1", "gradient-l2"):
        scores = score_layers(model, layers, name, token_calibration())
        for layer in layers:
            assert scores[layer.name].shape == (layer.rows, layer.cols)
            assert torch.isfinite(scores[layer.name]).all()
            assert scores[layer.name].abs().sum() > 0, (name, layer.name)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())


def test_monte_carlo_is_reproducible_and_restores_weights() -> None:
    model, cal = _planted()
    before = model[0].weight.detach().clone()
    crit = get_criterion("monte-carlo", samples=16, rate=0.3, seed=3)
    a = score_layers(model, discover_layers(model), crit, cal)["0"]
    b = score_layers(model, discover_layers(model), crit, cal)["0"]
    assert torch.equal(a, b)
    assert torch.equal(model[0].weight, before)


def test_monte_carlo_noise_mode_scores_without_a_loss() -> None:
    model, cal = _planted()
    cal = Calibration(cal.batches[:2], forward=cal.forward)  # no loss: output change is measured
    crit = get_criterion("monte-carlo", samples=256, rate=0.3, noise=0.5)
    ranks = _ranks(score_layers(model, discover_layers(model), crit, cal)["0"])
    assert ranks[IDLE].max() < ranks[PLANTED].min()


def test_structure_only_criteria_refuse_single_weights() -> None:
    model, _ = _planted()
    for name in ("apoz", "bn-gamma"):
        with pytest.raises(ValueError, match="structures"):
            score_layers(model, discover_layers(model), name)


def test_unknown_criterion_and_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match=r"'nope' is unknown; allowed: .*wanda"):
        get_criterion("nope")
    with pytest.raises(ValueError, match="rate must be in"):
        get_criterion("monte-carlo", rate=1.5)
    with pytest.raises(ValueError, match="takes no options"):
        get_criterion("magnitude", samples=3)
    assert len(CRITERIA) == 11


def test_gradient_criterion_without_loss_says_how_to_fix() -> None:
    model, cal = _planted()
    no_loss = Calibration(cal.batches[:1], forward=cal.forward)
    with pytest.raises(ValueError, match="needs a loss"):
        score_layers(model, discover_layers(model), "taylor", no_loss)
    with pytest.raises(ValueError, match="needs calibration data"):
        score_layers(model, discover_layers(model), "fisher")
