"""Bayesian search: Optuna over a low-dimensional grouping, budget and Pareto mode."""

from __future__ import annotations

import pytest
from search.synthetic import drive, make_space

from prunetune.search.strategies.bayesian import BayesianSearch


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_budget_mode_finds_better_than_uniform(sampler: str) -> None:
    space = make_space(0.6)
    results = drive(BayesianSearch(space, seed=0, sampler=sampler, startup=6), 30)
    assert results[0].candidate.origin == "warm-start"
    assert max(r.quality for r in results) > results[0].quality + 0.02  # type: ignore[operator]


def test_the_sampler_sees_one_offset_per_group() -> None:
    space = make_space(0.6)
    for grouping, dim in (("per-block", 4), ("per-type", 6), ("block+type", 10), ("depth", 3)):
        strategy = BayesianSearch(space, seed=0, grouping=grouping, knots=3, warm_start=[])
        cand = strategy.ask(1)[0]
        assert len(cand.info["x"]) == dim
        # Layers of one group share their offset (before projection onto the budget).
        if grouping == "per-block":
            by_block = {layer.block: set() for layer in space.layers}
            for s, layer in zip(cand.sparsities, space.layers, strict=True):
                by_block[layer.block].add(round(s, 1))
            assert all(len(v) <= 2 for v in by_block.values())


def test_pareto_mode_is_multi_objective_over_the_level() -> None:
    space = make_space(None)
    strategy = BayesianSearch(space, seed=0)
    results = drive(strategy, 30)
    assert strategy.study.directions[1].name == "MINIMIZE"
    levels = [r.candidate.info.get("level") for r in results if "level" in r.candidate.info]
    assert len(levels) >= 20 and max(levels) - min(levels) > 0.4  # type: ignore[operator]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sampler": "cmaes"}, r"option 'sampler': got 'cmaes'; must be one of tpe, gp"),
        ({"grouping": "per-head"}, r"option 'grouping': got 'per-head'; must be one of"),
        ({"radius": 0.0}, r"option 'radius': got 0.0; must be in \(0, 1\]"),
    ],
)
def test_bad_options_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BayesianSearch(make_space(0.6), **options)


def test_gp_is_refused_in_pareto_mode_with_the_fix() -> None:
    with pytest.raises(ValueError, match="use 'tpe' for Pareto mode"):
        BayesianSearch(make_space(None), sampler="gp")
