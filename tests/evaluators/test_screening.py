"""Multi-fidelity: representative subsets, the promotion rule, a screened search end to end."""

from __future__ import annotations

import optuna
import pytest
from helpers import digits_spec_dict

from prunetune.evaluators.fidelity import subset_indices
from prunetune.evaluators.screening import PromotionRule, ScreenedStrategy
from prunetune.search.base import Candidate, TrialResult, TrialState
from prunetune.search.controller import Controller, pareto_front
from prunetune.search.strategies.random import RandomSearch
from prunetune.spec import SearchSpec
from prunetune.store.studies import TrialRecorder
from prunetune.workbench import build_workbench
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
    return TrialResult(n, Candidate((0.5,), info=info, fidelity=fidelity), TrialState.COMPLETE, q, size)


def test_pareto_rule_promotes_what_could_reach_the_front() -> None:
    rule = PromotionRule(pareto=True, warmup=1, z=2.0)
    assert rule.promote(_r(0, 0.5, 100, 0.25), 0)  # warm-up
    for r in (_r(0, 0.50, 100, 0.25), _r(1, 0.52, 100, 1.0, screen=0.50), _r(2, 0.91, 50, 1.0, screen=0.88)):
        rule.observe(r)
    # Gaps 0.02 and 0.03: mean 0.025, standard deviation 0.00707.
    assert rule.gap == pytest.approx(0.025) and rule.margin == pytest.approx(2 * 0.0070711, rel=1e-4)
    # At size 60 the best full result at that size or smaller is 0.91.
    assert not rule.promote(_r(3, 0.86, 60, 0.25), 1)  # predicts 0.885 + 0.014 < 0.91
    assert rule.promote(_r(4, 0.875, 60, 0.25), 1)  # 0.9 + 0.014 > 0.91: could still make it
    assert rule.promote(_r(5, 0.1, 10, 0.25), 1)  # smaller than anything full: on the front
    failed = TrialResult(6, Candidate((0.5,), fidelity=0.25), TrialState.FAILED, error="x")
    assert not rule.promote(failed, 1)


def test_budget_rule_promotes_the_top_fraction() -> None:
    rule = PromotionRule(pareto=False, top=0.25, warmup=0)
    verdicts = []
    for n, q in enumerate([0.1, 0.2, 0.3, 0.4, 0.05, 0.5, 0.35, 0.45]):
        r = _r(n, q, 1, 0.25)
        rule.observe(r)
        verdicts.append(rule.promote(r, 0))
    assert verdicts == [True, True, True, True, False, True, False, True]


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
    assert all(r.candidate.fidelity == 1.0 for r in pareto_front(results, pareto=True))
    stored = optuna.load_study(study_name="screened", storage=sqlite_url).trials
    assert sorted({t.user_attrs["fidelity_level"] for t in stored}) == [0.25, 1.0]
    # A fresh strategy rebuilt from storage continues with the same promotion state.
    again = ScreenedStrategy(RandomSearch(bench.space, seed=0), fraction=0.25,
                             rule=PromotionRule(pareto=True, warmup=2))
    recorder2 = TrialRecorder(sqlite_url, "screened", bench.space, "accuracy")
    more = Controller(again, InProcessExecutor(bench), recorder2, 24, "accuracy").run()
    assert len(more) == 24 and again.inner.asked == len([r for r in more if r.candidate.fidelity < 1])
