"""Multi-fidelity: representative subsets, the promotion rule, a screened search end to end."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optuna
import pytest
from helpers import digits_spec_dict
from scipy.stats import t as student_t

from prunetune.engine.workbench import build_workbench
from prunetune.errors import SpecError
from prunetune.evaluators.fidelity import subset_indices
from prunetune.search.base import Candidate, TrialResult, TrialState
from prunetune.search.controller import Controller, build_strategy
from prunetune.search.screening import PromotionRule, ScreenedStrategy
from prunetune.search.strategies.random import RandomSearch
from prunetune.spec import SearchSpec
from prunetune.store.studies import TrialRecorder, result_front
from prunetune.workers.base import InProcessExecutor


def test_subset_is_fixed_and_spans_all_lengths() -> None:
    lengths = list(range(100, 0, -1))
    idx = subset_indices(lengths, 0.1)
    assert len(idx) == 10 and idx == subset_indices(lengths, 0.1)
    chosen = sorted(lengths[i] for i in idx)
    assert chosen[0] <= 10 and chosen[-1] >= 90  # not just the shortest
    assert subset_indices(lengths, 1.0) == list(range(100))
    assert len(subset_indices([1, 2, 3], 0.01)) == 1
    with pytest.raises(ValueError, match="fraction"):
        subset_indices(lengths, 0.0)


def test_embedding_fraction_scores_a_representative_subset(minilm_bench) -> None:  # type: ignore[no-untyped-def]
    task = minilm_bench.task
    part = task.split_batches("search", 0.25)
    idx = sorted(i for b in part for i in b["index"].tolist())
    assert len(idx) == 8
    words = sorted(len(task.splits.search[i].split()) for i in range(32))
    picked = sorted(len(task.splits.search[i].split()) for i in idx)
    assert picked[-1] >= words[24]  # long chunks are in the subset, not only short ones
    s = [0.6] * minilm_bench.space.dim
    low = minilm_bench.evaluator.evaluate(s, fidelity=0.25)
    full = minilm_bench.evaluator.evaluate(s)
    assert low["fidelity_level"] == 0.25 and full["fidelity_level"] == 1.0
    assert abs(low["fidelity"] - full["fidelity"]) < 0.1
    assert minilm_bench.evaluator.evaluate(s, fidelity=0.25)["fidelity"] == low["fidelity"]


def _r(n: int, q: float, size: float, fidelity: float, screen: float | None = None) -> TrialResult:
    info = {} if screen is None else {"screen_quality": screen}
    # Each trial number its own allocation: the rule never promotes one allocation twice.
    return TrialResult(n, Candidate((n / 100,), info=info, fidelity=fidelity), TrialState.COMPLETE, q, size)


def _calibrated(pareto: bool) -> PromotionRule:
    """A rule past its warm-up, with four (slice, full) pairs on sizes 100, 80, 60, 40."""
    rule = PromotionRule(pareto=pareto, warmup=0, z=2.0)
    for n, (low, full, size) in enumerate([(0.50, 0.52, 100), (0.60, 0.625, 80), (0.70, 0.72, 60), (0.88, 0.91, 40)]):
        rule.observe(_r(n, full, size, 1.0, screen=low))
    return rule


def test_prediction_is_a_fitted_line_with_a_student_t_interval() -> None:
    rule = _calibrated(pareto=True)
    xs, ys = np.array([0.50, 0.60, 0.70, 0.88]), np.array([0.52, 0.625, 0.72, 0.91])
    slope, intercept = np.polyfit(xs, ys, 1)
    s = math.sqrt(((ys - intercept - slope * xs) ** 2).sum() / 2)
    predicted, margin = rule.predict(0.8)
    assert predicted == pytest.approx(intercept + slope * 0.8)
    leverage = 1 + 1 / 4 + (0.8 - xs.mean()) ** 2 / ((xs - xs.mean()) ** 2).sum()
    assert margin == pytest.approx(student_t.ppf(0.97725, 2) * s * math.sqrt(leverage), rel=1e-3)
    assert rule.predict(0.99)[1] > margin  # further from the pairs: wider


def test_rule_promotes_everything_until_three_pairs_exist() -> None:
    rule = PromotionRule(pareto=False, warmup=0)
    rule.observe(_r(0, 0.91, 100, 1.0, screen=0.89))
    rule.observe(_r(1, 0.81, 100, 1.0, screen=0.80))
    assert rule.predict(0.5) == (0.5, math.inf)
    assert rule.promote(_r(2, 0.1, 100, 0.25), 0)


def test_pareto_rule_promotes_what_could_reach_the_front() -> None:
    rule = _calibrated(pareto=True)
    # At size 50 the best full result at that size or smaller is 0.91 (size 40).
    predicted, margin = rule.predict(0.80)
    assert predicted + margin < 0.91
    assert not rule.promote(_r(10, 0.80, 50, 0.25), 4)
    assert rule.promote(_r(11, 0.80, 30, 0.25), 4)  # smaller than anything full: on the front
    # The first slice score whose prediction plus margin passes 0.91 could still make it.
    x = next(float(x) for x in np.arange(0.80, 0.95, 0.001) if sum(rule.predict(float(x))) > 0.91)
    assert not rule.promote(_r(12, x - 0.001, 50, 0.25), 4) and rule.promote(_r(13, x, 50, 0.25), 4)
    failed = TrialResult(14, Candidate((0.5,), fidelity=0.25), TrialState.FAILED, error="x")
    assert not rule.promote(failed, 4)


def test_warmup_promotes_unconditionally() -> None:
    rule = _calibrated(pareto=True)
    rule.warmup = 5
    assert rule.promote(_r(10, 0.0, 50, 0.25), 4) and not rule.promote(_r(11, 0.0, 50, 0.25), 5)


def test_budget_rule_promotes_what_could_become_the_best() -> None:
    rule = _calibrated(pareto=False)
    # Size does not matter in budget mode: the best trial (0.91) is the front.
    assert not rule.promote(_r(10, 0.80, 10, 0.25), 4)
    assert rule.promote(_r(11, 0.89, 100, 0.25), 4)  # better slice score than the best's


def test_rule_never_promotes_an_allocation_twice() -> None:
    rule = PromotionRule(pareto=True, warmup=5)
    low = _r(0, 0.5, 100, 0.25)
    assert rule.promote(low, 0) and not rule.promote(low, 1)
    again = TrialResult(1, Candidate((0.9,), fidelity=0.25), TrialState.COMPLETE, 0.5, 100)
    rule.observe(TrialResult(2, Candidate((0.9,)), TrialState.COMPLETE, 0.5, 100))
    assert not rule.promote(again, 1)  # scored in full already


def test_rule_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="z"):
        PromotionRule(pareto=True, z=-1.0)
    with pytest.raises(ValueError, match="warmup"):
        PromotionRule(pareto=True, warmup=-1)


def test_screened_search_records_both_fidelities_and_resumes(sqlite_url: str) -> None:
    spec = SearchSpec.from_dict(digits_spec_dict())
    bench = build_workbench(spec)
    screened = ScreenedStrategy(RandomSearch(bench.space, seed=0), fraction=0.25,
                                rule=PromotionRule(pareto=True, warmup=2))
    recorder = TrialRecorder(sqlite_url, "screened", bench.space, "accuracy")
    results = Controller(screened, InProcessExecutor(bench), recorder, 16, "accuracy").run()
    low = [r for r in results if r.candidate.fidelity == 0.25]
    full = [r for r in results if r.candidate.fidelity == 1.0]
    assert low and full and len(low) + len(full) == 16
    assert all(r.candidate.origin == "promoted" for r in full)
    by_number = {r.number: r for r in results}
    for r in full:
        src = by_number[r.candidate.info["screened_trial"]]
        assert src.candidate.sparsities == r.candidate.sparsities
        assert r.metrics["fidelity_level"] == 1.0 and src.metrics["fidelity_level"] == 0.25
    assert all(r.candidate.fidelity == 1.0 for r in result_front(results, pareto=True))
    stored = optuna.load_study(study_name="screened", storage=sqlite_url).trials
    assert sorted({t.user_attrs["fidelity_level"] for t in stored}) == [0.25, 1.0]
    # A fresh strategy rebuilt from storage continues with the same promotion state.
    again = ScreenedStrategy(RandomSearch(bench.space, seed=0), fraction=0.25,
                             rule=PromotionRule(pareto=True, warmup=2))
    recorder2 = TrialRecorder(sqlite_url, "screened", bench.space, "accuracy")
    more = Controller(again, InProcessExecutor(bench), recorder2, 24, "accuracy").run()
    assert len(more) == 24 and again.inner.asked == len([r for r in more if r.candidate.fidelity < 1])


class _Recording(RandomSearch):
    """Random proposals that keep what they are told."""

    def __init__(self, *args, fidelity: float = 1.0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.told: list[TrialResult] = []
        self.fidelity = fidelity

    def _propose(self, index: int) -> Candidate:
        return dataclasses.replace(super()._propose(index), fidelity=self.fidelity)

    def tell(self, results) -> None:  # type: ignore[no-untyped-def]
        self.told.extend(results)


def test_inner_strategy_sees_its_slice_results_at_its_own_fidelity() -> None:
    bench = build_workbench(SearchSpec.from_dict(digits_spec_dict()))
    inner = _Recording(bench.space, seed=0)
    screened = ScreenedStrategy(inner, fraction=0.25, rule=PromotionRule(pareto=True, warmup=1))
    (cand,) = screened.ask(1)
    assert cand.fidelity == 0.25 and cand.origin == "random"
    low = TrialResult(0, cand, TrialState.COMPLETE, 0.8, 100.0)
    screened.tell([low])
    (promoted,) = screened.ask(1)
    assert promoted.fidelity == 1.0 and promoted.info["screen_quality"] == 0.8
    screened.tell([TrialResult(1, promoted, TrialState.COMPLETE, 0.82, 100.0)])
    # NSGA-II pools and Bayesian samplers skip results below fidelity 1: the inner
    # strategy is told its own proposal's slice score, at the fidelity it asked for.
    assert [(r.number, r.candidate.fidelity, r.quality) for r in inner.told] == [(0, 1.0, 0.8)]


def test_inner_strategy_that_screens_itself_is_refused() -> None:
    bench = build_workbench(SearchSpec.from_dict(digits_spec_dict()))
    screened = ScreenedStrategy(_Recording(bench.space, seed=0, fidelity=0.5), fraction=0.25)
    with pytest.raises(ValueError, match="screens on its own"):
        screened.ask(1)
    with pytest.raises(ValueError, match="below 1"):
        ScreenedStrategy(_Recording(bench.space, seed=0), fraction=1.0)


def test_spec_turns_screening_on_for_any_strategy() -> None:
    plain = SearchSpec.from_dict(digits_spec_dict())
    assert "screen" not in plain.to_dict()["strategy"]  # unset: old specs keep their digest
    bench = build_workbench(plain)
    assert not isinstance(build_strategy(plain, bench.space), ScreenedStrategy)
    for name in ("random", "evolutionary", "bayesian"):
        spec = SearchSpec.from_dict(digits_spec_dict(strategy={"name": name, "screen": 0.25}))
        strategy = build_strategy(spec, bench.space)
        assert isinstance(strategy, ScreenedStrategy) and strategy.inner.name == name
        assert {c.fidelity for c in strategy.ask(2)} == {0.25}
    both = SearchSpec.from_dict(digits_spec_dict(
        strategy={"name": "evolutionary", "screen": 0.25, "options": {"screen": 0.5}}))
    with pytest.raises(SpecError, match=r"strategy\.screen"):
        build_strategy(both, bench.space)
    with pytest.raises(SpecError, match=r"strategy\.screen"):
        SearchSpec.from_dict(digits_spec_dict(strategy={"name": "random", "screen": 1.0}))
