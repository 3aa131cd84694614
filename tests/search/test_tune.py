"""PrunetuneSearcher drives a prunetune strategy from Ray Tune with a user's trainable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prunetune.engine.workbench import build_workbench
from prunetune.spec import SearchSpec

ray = pytest.importorskip("ray")
from ray import tune  # noqa: E402

from prunetune.search.tune import PrunetuneSearcher  # noqa: E402
from prunetune.workers.ray_session import start_ray  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_session() -> Iterator[None]:
    session = start_ray(None, num_cpus=2)
    yield
    session.close()


def trainable(config: dict[str, Any], bench: Any) -> None:
    metrics = bench.evaluator.evaluate(config["sparsities"])
    tune.report({"accuracy": metrics["accuracy"], "nonzero_params": metrics["nonzero_params"]})


def test_tune_runs_a_prunetune_strategy(tmp_path: Path) -> None:
    # Imported here, not at module level: Tune's workers import this module to unpickle
    # `trainable`, and tests/ (where helpers lives) is not on their path.
    from helpers import digits_spec_dict

    spec = SearchSpec.from_dict(digits_spec_dict())
    bench = build_workbench(spec)
    searcher = PrunetuneSearcher.for_space(bench.space, "random", seed=0, budget=4,
                                           metric="accuracy", mode="max")
    tuner = tune.Tuner(
        tune.with_parameters(trainable, bench=bench),
        tune_config=tune.TuneConfig(search_alg=searcher, metric="accuracy", mode="max",
                                    num_samples=4, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="prunetune", verbose=0),
    )
    grid = tuner.fit()

    assert len(grid) == 4 and not grid.errors
    assert len(searcher.results) == 4 and all(r.ok for r in searcher.results)
    told = {r.candidate.sparsities: float(r.quality or 0.0) for r in searcher.results}
    for i in range(len(grid)):
        result = grid[i]
        assert result.metrics is not None and result.config is not None
        sparsities = tuple(result.config["sparsities"])
        assert told[sparsities] == result.metrics["accuracy"]
        assert 0.0 < result.metrics["accuracy"] <= 1.0
    # the same candidates, in order, as the strategy proposes on its own
    again = PrunetuneSearcher.for_space(bench.space, "random", seed=0, budget=4,
                                        metric="accuracy").strategy.ask(4)
    assert {c.sparsities for c in again} == set(told)
    best = grid.get_best_result()
    assert best.metrics is not None and best.metrics["accuracy"] == max(told.values())


def test_min_mode_is_negated_for_the_strategy() -> None:
    from helpers import digits_spec_dict

    spec = SearchSpec.from_dict(digits_spec_dict())
    bench = build_workbench(spec)
    searcher = PrunetuneSearcher.for_space(bench.space, "random", metric="loss", mode="min")
    searcher.set_search_properties(None, None, {})
    config = searcher.suggest("t1")
    assert isinstance(config, dict) and len(config["sparsities"]) == bench.space.dim
    searcher.on_trial_complete("t1", {"loss": 0.25})
    searcher.suggest("t2")
    searcher.on_trial_complete("t2", None, error=True)
    ok, failed = searcher.results
    assert ok.quality == -0.25 and ok.size == bench.space.nonzero_params(config["sparsities"])
    assert not failed.ok and failed.error == "trial raised"
