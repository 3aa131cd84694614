"""OWL baseline and the score statistics strategies receive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import minilm_spec_dict
from search.synthetic import make_context, make_space

from prunetune.errors import SpecError
from prunetune.search.base import SearchContext
from prunetune.search.controller import build_strategy
from prunetune.search.strategies.owl import OWLBaseline
from prunetune.search.strategies.owl_stats import block_outlier_ratios, layer_stats
from prunetune.spec import SearchSpec


def test_outlier_ratio_matches_a_direct_count() -> None:
    space = make_space(0.6)
    gen = torch.Generator().manual_seed(0)
    scores = {layer.name: torch.rand(layer.rows, layer.cols, generator=gen) ** 8 for layer in space.layers}
    stats = layer_stats(scores, space.layers)
    for layer, st in zip(space.layers, stats, strict=True):
        x = scores[layer.name].double()
        for m in (2.0, 5.0):
            direct = float((x > m * x.mean()).double().mean())
            assert st.outlier_ratio(m) == pytest.approx(direct, abs=0.02)


def test_blocks_with_more_outliers_are_pruned_less_and_the_budget_is_exact() -> None:
    space = make_space(0.6)
    ctx = make_context(space)  # outliers grow with depth
    cand = OWLBaseline(space, context=ctx, lam=0.1).ask(5)
    assert len(cand) == 1  # budget mode: one allocation
    s = np.asarray(cand[0].sparsities)
    by_block = [s[[layer.block == b for layer in space.layers]].mean() for b in range(4)]
    assert by_block == sorted(by_block, reverse=True)
    assert by_block[0] - by_block[3] == pytest.approx(0.2, abs=0.03)  # the 2 λ spread
    pruned = sum(round(a * n) for a, n in zip(s, space.numels, strict=True))
    assert pruned == round(0.6 * space.prunable_params)


def test_pareto_mode_sweeps_levels_with_owl_shape() -> None:
    space = make_space(None)
    cands = OWLBaseline(space, budget=6, context=make_context(space)).ask(10)
    levels = [space.overall_sparsity(c.sparsities) for c in cands]
    assert len(cands) == 6 and levels == sorted(levels)


def test_owl_without_statistics_says_how_to_run_it() -> None:
    with pytest.raises(ValueError, match="needs score statistics"):
        OWLBaseline(make_space(0.6))
    with pytest.raises(ValueError, match=r"option 'lam': got 0.7; must be in \[0, 0.5\]"):
        OWLBaseline(make_space(0.6), context=SearchContext(), lam=0.7)


def test_bad_options_through_the_spec_are_a_spec_error_on_the_field() -> None:
    spec = SearchSpec.from_dict(minilm_spec_dict(strategy={"name": "bayesian", "options": {"sampler": "cmaes"}},
                                                 target={"sparsity": 0.5}))
    with pytest.raises(SpecError, match=r"spec field 'strategy\.options\.sampler': got 'cmaes'; must be one of"):
        build_strategy(spec, make_space(0.5))
    spec = SearchSpec.from_dict(minilm_spec_dict(strategy={"name": "evolutionary", "options": {"lambda_": 3}}))
    with pytest.raises(SpecError, match="not accepted by 'evolutionary'"):
        build_strategy(spec, make_space(None))


def test_minilm_statistics_and_owl_allocation(minilm_bench) -> None:  # type: ignore[no-untyped-def]
    """On the real MiniLM: 36 layers of statistics, flat block outlier ratios (about 1%,
    as measured), and an OWL allocation exact on the budget."""
    ctx = minilm_bench.search_context()
    space = minilm_bench.space
    assert len(ctx.stats) == space.dim == 36
    ratios = block_outlier_ratios(space, ctx.stats, 5.0)
    assert 0.001 < min(ratios) <= max(ratios) < 0.05
    spec = SearchSpec.from_dict(minilm_spec_dict(strategy={"name": "owl"}, target={"sparsity": 0.7}))
    import dataclasses

    budget_space = dataclasses.replace(space, target=0.7)
    strategy = build_strategy(spec, budget_space, context=lambda: ctx)
    s = strategy.ask(1)[0].sparsities
    assert sum(round(a * n) for a, n in zip(s, space.numels, strict=True)) == round(0.7 * space.prunable_params)
