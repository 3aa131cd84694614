"""Synthetic search problems for the strategy suite: real strategies, a known objective.

The objective stands in for a model's quality: every layer has a sensitivity, deeper
blocks are more sensitive, so the best allocation at a budget is far from uniform and a
strategy that learns can be told apart from one that does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from prunetune.search.base import Candidate, SearchContext, Strategy, TrialResult, TrialState
from prunetune.search.strategies.owl_stats import layer_stats
from prunetune.spaces.space import PrunableLayer, SearchSpace

KINDS = ("q", "k", "v", "o", "up", "down")


def synthetic_layers(blocks: int = 4) -> tuple[PrunableLayer, ...]:
    layers = []
    for b in range(blocks):
        for kind in KINDS:
            rows, cols = (64, 16) if kind == "up" else (16, 64) if kind == "down" else (16, 16)
            layers.append(PrunableLayer(f"block.{b}.{kind}", rows, cols, False, b, kind))
    return tuple(layers)


def make_space(target: float | None = 0.6, blocks: int = 4) -> SearchSpace:
    return SearchSpace(synthetic_layers(blocks), lo=0.0, hi=0.95, step=0.05, target=target, extra_params=100)


def make_context(space: SearchSpace, seed: int = 0) -> SearchContext:
    """Statistics of random heavy-tailed scores; later blocks get more outliers."""
    gen = torch.Generator().manual_seed(seed)
    scores = {}
    for layer in space.layers:
        base = torch.rand(layer.rows, layer.cols, generator=gen)
        tail = torch.rand(layer.rows, layer.cols, generator=gen) < 0.01 * (1 + layer.block)
        scores[layer.name] = base + tail * 20.0
    return SearchContext(stats=layer_stats(scores, space.layers))


def quality(space: SearchSpace, sparsities: Sequence[float]) -> float:
    """Higher is better; sensitivity grows with depth and is larger for v and down."""
    s = np.asarray(sparsities)
    sens = np.array([(1 + layer.block) ** 2 * (2.0 if layer.kind in ("v", "down") else 1.0) for layer in space.layers])
    w = np.asarray(space.numels) / space.prunable_params
    return float(1.0 - np.sum(w * sens * s**3))


def evaluate(space: SearchSpace, number: int, cand: Candidate, fail: Callable[[int], str | None] | None = None) -> TrialResult:
    """A finished trial: ``fail(number)`` may return "error" or "nan" to break it."""
    how = fail(number) if fail else None
    if how == "error":
        return TrialResult(number, cand, TrialState.FAILED, error="RuntimeError: injected")
    q = float("nan") if how == "nan" else quality(space, cand.sparsities)
    if cand.fidelity < 1.0 and how is None:
        q -= 0.001 * (1 - cand.fidelity)  # a slice scores a little differently
    return TrialResult(number, cand, TrialState.COMPLETE, quality=q, size=float(space.nonzero_params(cand.sparsities)))


def drive(strategy: Strategy, trials: int, fail: Callable[[int], str | None] | None = None, batch: int = 1) -> list[TrialResult]:
    """The controller's loop in miniature: ask up to ``batch``, evaluate, tell."""
    out: list[TrialResult] = []
    while len(out) < trials:
        cands = strategy.ask(min(batch, trials - len(out)))
        if not cands:
            break
        results = [evaluate(strategy.space, len(out) + i, c, fail) for i, c in enumerate(cands)]
        out += results
        strategy.tell(results)
    return out
