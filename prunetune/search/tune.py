"""Ray Tune adapter: drive a prunetune strategy from Tune with your own trainable.

::

    from ray import tune
    from prunetune.search.tune import PrunetuneSearcher

    searcher = PrunetuneSearcher.for_space(bench.space, "random", seed=0, budget=32,
                                           metric="accuracy", mode="max")

    def trainable(config):
        sparsities = config["sparsities"]          # one fraction per layer, space order
        tune.report({"accuracy": my_eval(sparsities)})

    tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=32)).fit()

Each ``suggest`` asks the strategy for one candidate and keeps it under Tune's trial id;
each ``on_trial_complete`` turns Tune's result back into a ``TrialResult`` and tells
the strategy. Tune's schedulers (ASHA, ...) work as with any searcher; a trial they
stop early reports its last result, which the strategy sees like any other.

The size objective is the candidate's nonzero parameters, computed from the space,
unless the trainable reports ``size_metric``.
"""

from __future__ import annotations

from typing import Any

from prunetune.search.base import Candidate, Strategy, TrialResult, TrialState
from prunetune.spaces.space import SearchSpace

try:
    from ray.tune.search import Searcher
except ImportError as _err:  # pragma: no cover - ray is a declared dependency
    raise ImportError(f"the Ray Tune adapter needs Ray Tune: pip install 'ray[tune]>=2.40' ({_err})") from _err

_MODES = ("max", "min")


class PrunetuneSearcher(Searcher):
    """A ``ray.tune.search.Searcher`` over a prunetune strategy.

    Args:
        strategy: any prunetune ``Strategy`` (its space fixes the layers).
        metric: the quality metric the trainable reports. Give it here: Tune passes
            ``TuneConfig(metric=..., mode=...)`` to a searcher only together with a
            ``param_space``, which this searcher does not take.
        mode: ``"max"`` or ``"min"`` for ``metric``; strategies maximise quality, so a
            ``"min"`` metric is negated before they see it.
        size_metric: a reported metric to use as size (lower is better) instead of the
            candidate's nonzero parameters.

    Suggested configs hold ``sparsities`` (a list, one fraction per layer in space
    order), ``fidelity`` (fraction of the search data to score on) and ``origin``.
    """

    def __init__(
        self,
        strategy: Strategy,
        metric: str,
        mode: str = "max",
        size_metric: str | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.strategy = strategy
        self.size_metric = size_metric
        self._live: dict[str, tuple[int, Candidate]] = {}
        self._numbers = 0
        self.results: list[TrialResult] = []

    @classmethod
    def for_space(
        cls, space: SearchSpace, strategy: str = "random", *, seed: int = 0, budget: int = 64,
        metric: str, mode: str = "max", size_metric: str | None = None, **options: Any,
    ) -> PrunetuneSearcher:
        """Build the named strategy (``prunetune.search.registry``) over ``space``."""
        from prunetune.search.registry import strategy_class

        instance = strategy_class(strategy)(space, seed=seed, budget=budget, **options)  # type: ignore[call-arg]
        return cls(instance, metric=metric, mode=mode, size_metric=size_metric)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        if config:
            raise ValueError(
                "PrunetuneSearcher makes the whole config from its strategy's space; pass no "
                f"param_space to the Tuner (got keys {sorted(config)}), or fix values in the trainable"
            )
        if mode is not None and mode not in _MODES:
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        asked = self.strategy.ask(1)
        if not asked:
            return Searcher.FINISHED
        cand = asked[0]
        self._live[trial_id] = (self._numbers, cand)
        self._numbers += 1
        return {"sparsities": list(cand.sparsities), "fidelity": cand.fidelity, "origin": cand.origin}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number, cand = self._live.pop(trial_id)
        value = None if result is None else result.get(self._metric)  # type: ignore[arg-type]
        if error or value is None:
            why = "trial raised" if error else f"trial reported no {self._metric!r}"
            out = TrialResult(number, cand, TrialState.FAILED, error=why)
        else:
            quality = float(value) if self._mode == "max" else -float(value)
            size = (
                float(result[self.size_metric])  # type: ignore[index]
                if self.size_metric is not None
                else float(self.strategy.space.nonzero_params(cand.sparsities))
            )
            metrics = {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}  # type: ignore[union-attr]
            out = TrialResult(number, cand, TrialState.COMPLETE, quality=quality, size=size, metrics=metrics)
        self.results.append(out)
        self.strategy.tell([out])
