"""The uniform and OWL baselines of a job's report, scored on the REPORT split.

Each baseline is built through the strategy registry with the space's target set to
one sparsity level (budget mode), so the allocation is exactly what ``strategy: {name:
uniform}`` or ``{name: owl}`` would evaluate at that level, and scored on the same REPORT
split as the front. The result is kept in the job's study (user attribute
``baselines``), so the report can be drawn later without the model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from prunetune.engine.report_split import score_on_report
from prunetune.search.registry import strategy_class
from prunetune.spaces.space import SearchSpace
from prunetune.store.studies import BASELINES_KEY, baselines

if TYPE_CHECKING:
    from prunetune.engine.workbench import Workbench
    from prunetune.search.executor import Executor
    from prunetune.spec import SearchSpec

DEFAULT_STRATEGIES = ("uniform", "owl")
# Evaluation numbers of baselines: far above any trial number, so they never collide.
_FIRST_NUMBER = 1 << 40


def baseline_levels(space: SearchSpace, count: int | None = None) -> list[float]:
    """Budget mode: the target. Pareto mode: the front levels, or ``count`` levels evenly
    over (min, max]."""
    if space.target is not None:
        return [space.target]
    if count is None:
        return space.front_levels()
    span = space.hi - space.lo
    return [round(space.lo + span * (i + 1) / count, 4) for i in range(count)]


def baseline_allocations(
    spec: SearchSpec, bench: Workbench, names: tuple[str, ...], levels: list[float]
) -> list[tuple[str, float, tuple[float, ...]]]:
    """(strategy, level, per-layer sparsities) for each baseline strategy and level."""
    context = None
    out = []
    for name in names:
        cls = strategy_class(name)
        for level in levels:
            space = dataclasses.replace(bench.space, target=level)
            kwargs: dict[str, Any] = {}
            if cls.uses_context:
                context = context or bench.search_context()
                kwargs["context"] = context
            strategy = cls(space, seed=spec.seed, budget=1, **kwargs)
            asked = strategy.ask(1)
            if asked:
                out.append((name, level, tuple(asked[0].sparsities)))
    return out


def evaluate_baselines(
    executor: Executor, allocations: list[tuple[str, float, tuple[float, ...]]], quality_name: str
) -> dict[str, list[dict[str, Any]]]:
    """Score the allocations on the REPORT split: ``{strategy: [point, ...]}`` by level."""
    outcomes = score_on_report(executor, {_FIRST_NUMBER + i: sp for i, (_, _, sp) in enumerate(allocations)})
    got = {n - _FIRST_NUMBER: dict(o.metrics) if o.error is None else {} for n, o in outcomes.items()}
    out: dict[str, list[dict[str, Any]]] = {}
    for i, (name, level, sparsities) in enumerate(allocations):
        m = got.get(i, {})
        q = m.get(quality_name)
        out.setdefault(name, []).append({
            "level": level,
            "quality": float(q) if isinstance(q, (int, float)) and math.isfinite(q) else None,
            "nonzero_params": m.get("nonzero_params"),
            "sparsity": m.get("sparsity"),
            "latency_seconds": m.get("latency_seconds"),  # None unless task.latency_repeats
            "allocation": list(sparsities),
        })
    return out


def job_baselines(spec: SearchSpec, bench: Workbench, executor: Executor, recorder: Any,
                  stopped: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The job's baselines: read back from its study when a previous attempt scored them,
    else scored now and stored (study attribute ``baselines``). None for a stopped job or
    ``report.baselines: []``."""
    names = DEFAULT_STRATEGIES if spec.report is None else tuple(spec.report.baselines)
    levels = None if spec.report is None else spec.report.levels
    if not names:
        return {}
    stored = baselines(recorder.study)
    if stored:
        return stored
    if stopped:
        return {}
    allocations = baseline_allocations(spec, bench, names, baseline_levels(bench.space, levels))
    scored = evaluate_baselines(executor, allocations, bench.task.quality_name)
    recorder.set_attrs({BASELINES_KEY: scored})
    return scored
