"""The search loop: ask the strategy, keep the executor full, record, tell.

Dispatch is steady-state: whenever an evaluation finishes, its result is recorded and
told to the strategy, and a new candidate is asked for, so no worker idles waiting for
a generation to finish. Failed evaluations are recorded with their reason and count
toward the budget; the job goes on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prunetune.errors import OptionError, SpecError
from prunetune.pareto import best_at_sizes, thin
from prunetune.search.base import Candidate, SearchContext, Strategy, TrialResult, TrialState
from prunetune.search.executor import Executor, Outcome
from prunetune.search.registry import strategy_class
from prunetune.search.screening import ScreenedStrategy
from prunetune.spaces.space import SearchSpace
from prunetune.spec import SearchSpec
from prunetune.store.studies import SIZE_NAME, TrialRecorder

Progress = Callable[[int, int, "TrialResult | None"], None]


def build_strategy(
    spec: SearchSpec,
    space: SearchSpace,
    context: SearchContext | Callable[[], SearchContext] | None = None,
) -> Strategy:
    """Instantiate the spec's strategy; bad options become a SpecError on that field.

    ``context`` (score statistics, or a function that builds them) is passed only to
    strategies that use it (``uses_context``), so the others cost nothing extra.
    """
    cls = strategy_class(spec.strategy.name)
    options = dict(spec.strategy.options)
    # strategy.options.seed: the search's own seed (default: the job's seed, which also
    # seeds the model and data), so a rerun can explore differently on the same model.
    seed = options.pop("seed", spec.seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SpecError("strategy.options.seed", seed, "a non-negative integer")
    if cls.uses_context and context is not None:
        options_with = dict(options, context=context() if callable(context) else context)
    else:
        options_with = options
    try:
        strategy = cls(space, seed=seed, budget=spec.budget.trials, **options_with)  # type: ignore[call-arg]
    except TypeError as err:
        raise SpecError("strategy.options", options, f"not accepted by {spec.strategy.name!r}: {err}") from None
    except OptionError as err:
        raise SpecError(f"strategy.options.{err.option}", err.value, err.allowed) from None
    except ValueError as err:
        raise SpecError("strategy.options", options, str(err)) from None
    if spec.strategy.screen is None:
        return strategy
    if options.get("screen", 0.0) not in (0, 1):
        raise SpecError("strategy.screen", spec.strategy.screen,
                        "the strategy screens on its own too (strategy.options.screen); keep one of the two")
    return ScreenedStrategy(strategy, fraction=spec.strategy.screen)


@dataclass
class SearchOutcome:
    results: list[TrialResult]
    front: list[TrialResult]
    reports: dict[int, dict[str, float]]
    dense: dict[str, float]
    quality_name: str
    wall_seconds: float
    eval_seconds: float
    extra: dict[str, object] = field(default_factory=dict)


class Controller:
    """Runs one job's search to its budget (or until ``should_stop`` says so)."""

    def __init__(
        self,
        strategy: Strategy,
        executor: Executor,
        recorder: TrialRecorder,
        budget: int,
        quality_name: str,
        on_progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.strategy = strategy
        self.executor = executor
        self.recorder = recorder
        self.budget = budget
        self.quality_name = quality_name
        self.on_progress = on_progress
        self.should_stop = should_stop or (lambda: False)
        self._in_flight: dict[int, Candidate] = {}
        self.eval_seconds = 0.0

    def _resume(self) -> tuple[list[TrialResult], deque[Candidate]]:
        """Stored results, and the candidates of trials a dead runner left RUNNING."""
        stale = self.recorder.fail_stale()
        done = self.recorder.results()
        self.strategy.restore(done)
        return done, deque(stale)

    def _result(self, out: Outcome) -> TrialResult:
        cand = self._in_flight.pop(out.number)
        if out.error is not None:
            return TrialResult(out.number, cand, TrialState.FAILED, metrics=out.metrics, error=out.error)
        self.eval_seconds += out.metrics.get("eval_seconds", 0.0)
        return TrialResult(
            out.number, cand, TrialState.COMPLETE,
            quality=out.metrics[self.quality_name], size=out.metrics[SIZE_NAME], metrics=out.metrics,
        )

    def run(self) -> list[TrialResult]:
        done, retry = self._resume()
        exhausted = False
        if self.on_progress:
            self.on_progress(len(done), self.budget, None)
        while True:
            stopping = self.should_stop()
            free = self.executor.capacity - len(self._in_flight)
            room = self.budget - len(done) - len(self._in_flight)
            want = 0 if stopping else min(free, room)
            batch = [retry.popleft() for _ in range(min(want, len(retry)))]
            if want > len(batch) and not exhausted:
                fresh = self.strategy.ask(want - len(batch))
                exhausted = len(fresh) < want - len(batch)
                batch += fresh
            for cand in batch:
                number = self.recorder.start(cand)
                self._in_flight[number] = cand
                self.executor.submit(number, cand.sparsities, fidelity=cand.fidelity)
            if not self._in_flight:
                break
            finished = [self._result(o) for o in self.executor.wait()]
            for r in finished:
                self.recorder.finish(r)
                done.append(r)
                if self.on_progress:
                    self.on_progress(len(done), self.budget, r)
            self.strategy.tell(finished)
        return done


# Front points scored on the REPORT split unless ``report.points`` says otherwise.
REPORT_POINTS = 12


def level_size(space: SearchSpace, level: float) -> float:
    """Nonzero parameters of the whole model at overall sparsity ``level`` (to the weight)."""
    return float(space.extra_params + space.prunable_params - round(level * space.prunable_params))


def report_selection(front: Sequence[TrialResult], space: SearchSpace, limit: int) -> list[TrialResult]:
    """The front points to score on the REPORT split: all of a budget-mode front; in Pareto
    mode at most ``limit``: the best at each front level, then by hypervolume added
    (:func:`prunetune.pareto.thin`, on search-split quality)."""
    if space.target is not None:
        return list(front)
    keep = thin([(float(r.quality), float(r.size)) for r in front],  # type: ignore[arg-type]
                [level_size(space, t) for t in space.front_levels()], limit)
    return [front[i] for i in keep]


def level_table(
    front: Sequence[TrialResult], reports: Mapping[int, Mapping[str, float]],
    baselines: Mapping[str, Sequence[Mapping[str, Any]]], space: SearchSpace, quality_name: str,
) -> list[dict[str, Any]]:
    """The front read at each front level, on the REPORT split: the best scored point at
    that size or smaller, beside the uniform baseline at that level (when scored)."""
    scored = [r for r in front if isinstance(reports.get(r.number, {}).get(quality_name), (int, float))]
    points = [(float(reports[r.number][quality_name]), float(r.size)) for r in scored]  # type: ignore[arg-type]
    uniform = {round(float(b["level"]), 6): b.get("quality") for b in baselines.get("uniform", [])}
    rows = []
    levels = space.front_levels()
    for level, i in zip(levels, best_at_sizes(points, [level_size(space, t) for t in levels]), strict=True):
        rows.append({
            "level": level,
            "trial": None if i is None else scored[i].number,
            "front": None if i is None else points[i][0],
            "front_sparsity": None if i is None else space.overall_sparsity(scored[i].candidate.sparsities),
            "uniform": uniform.get(round(level, 6)),
        })
    return rows
