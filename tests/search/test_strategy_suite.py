"""The suite every registered strategy must pass (STYLE habit 10).

Reproducible from its seed; failed and NaN results tolerated; every candidate exact on
the budget in budget mode; a job resumed from its SQLite study continues, not restarts.
"""

from __future__ import annotations

import pytest
from helpers import digits_spec_dict
from search.synthetic import drive, make_context, make_space

from prunetune.engine.runner import run_job
from prunetune.search.base import Strategy
from prunetune.search.registry import STRATEGIES, strategy_class
from prunetune.spaces.space import SearchSpace
from prunetune.spec import SearchSpec
from prunetune.store.studies import TrialRecorder

ALL = sorted(STRATEGIES)
DETERMINISTIC = {"uniform", "owl"}  # baselines: the same allocations whatever the seed


def build(name: str, space: SearchSpace, seed: int = 0, budget: int = 24, **options: object) -> Strategy:
    cls = strategy_class(name)
    if cls.uses_context:
        options["context"] = make_context(space)
    return cls(space, seed=seed, budget=budget, **options)  # type: ignore[call-arg]


def exact(space: SearchSpace, sparsities: tuple[float, ...]) -> bool:
    assert space.target is not None
    pruned = sum(round(s * n) for s, n in zip(sparsities, space.numels, strict=True))
    return pruned == round(space.target * space.prunable_params)


@pytest.mark.parametrize("mode", ["budget", "pareto"])
@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_candidates(name: str, mode: str) -> None:
    space = make_space(0.6 if mode == "budget" else None)
    runs = [[r.candidate for r in drive(build(name, space, seed=seed), 20)] for seed in (3, 3, 4)]
    assert [c.sparsities for c in runs[0]] == [c.sparsities for c in runs[1]]
    assert [c.fidelity for c in runs[0]] == [c.fidelity for c in runs[1]]
    if name not in DETERMINISTIC:
        assert [c.sparsities for c in runs[0]] != [c.sparsities for c in runs[2]]


@pytest.mark.parametrize("mode", ["budget", "pareto"])
@pytest.mark.parametrize("name", ALL)
def test_failed_and_nan_results_tolerated(name: str, mode: str) -> None:
    space = make_space(0.6 if mode == "budget" else None)
    strategy = build(name, space, seed=1, budget=30)

    def fail(number: int) -> str | None:
        return "error" if number % 3 == 1 else "nan" if number % 3 == 2 else None

    results = drive(strategy, 30, fail, batch=2)
    assert results, "the strategy proposed nothing"
    if name not in DETERMINISTIC:
        assert len(results) == 30  # it keeps proposing after failures
        assert len({r.candidate.sparsities for r in results}) > 3
    for r in results:
        assert len(r.candidate.sparsities) == space.dim
        assert all(space.lo - 1e-12 <= s <= space.hi + 1e-12 for s in r.candidate.sparsities)


@pytest.mark.parametrize("name", ALL)
def test_every_candidate_exact_on_the_budget(name: str) -> None:
    for target in (0.3, 0.6, 0.9):
        space = make_space(target)
        strategy = build(name, space, seed=2, budget=40)
        strategy.warm_start([[0.95] * space.dim])  # a warm start far off the budget is projected too
        results = drive(strategy, 40, batch=3)
        assert results
        for r in results:
            assert exact(space, r.candidate.sparsities), (name, target, r.candidate.origin)


@pytest.mark.parametrize("name", ALL)
def test_warm_start_is_evaluated_first(name: str) -> None:
    space = make_space(0.6)
    strategy = build(name, space, seed=0)
    shape = [0.4 + 0.4 * layer.block / 3 for layer in space.layers]
    strategy.warm_start([shape])
    opening = strategy.ask(2)  # after the strategy's own default warm start, if any
    warm = [c.sparsities for c in opening if c.origin == "warm-start"]
    assert tuple(space.project(shape)) in warm


@pytest.fixture(scope="module")
def digits_bench():  # type: ignore[no-untyped-def]
    """The real digits MLP with Wanda scores, in budget mode at 0.8, built once."""
    from prunetune.engine.workbench import build_workbench

    return build_workbench(SearchSpec.from_dict(digits_spec_dict(target={"sparsity": 0.8})))


@pytest.mark.parametrize("name", ALL)
def test_resume_from_sqlite_continues(name: str, sqlite_url: str, digits_bench) -> None:  # type: ignore[no-untyped-def]
    """Stop a real job after 5 trials, start it again on the same study: it goes on to
    the full budget without repeating its opening, and strategies whose state is a replay
    of the trials (evolutionary, policy gradient) propose what an unbroken run would."""

    def spec(trials: int) -> SearchSpec:
        return SearchSpec.from_dict(digits_spec_dict(
            strategy={"name": name}, budget={"trials": trials}, target={"sparsity": 0.8}, seed=5,
        ))

    first = run_job(spec(5), db=sqlite_url, study_name="job", bench=digits_bench)
    run_job(spec(10), db=sqlite_url, study_name="job", bench=digits_bench)
    stored = TrialRecorder(sqlite_url, "job", digits_bench.space, "accuracy", create=False).results()
    before = [r.candidate.sparsities for r in first.results]
    after = [r.candidate.sparsities for r in stored]
    assert after[: len(before)] == before
    if name in DETERMINISTIC:
        assert len(after) == len(before)  # exhausted: nothing new, nothing repeated
        return
    assert len(stored) == 10
    assert [r.candidate.origin for r in stored[5:]].count("warm-start") == 0
    if name in ("evolutionary", "policy-gradient"):
        unbroken = run_job(spec(10), db=sqlite_url, study_name="unbroken", bench=digits_bench)
        assert [r.candidate.sparsities for r in unbroken.results] == after
