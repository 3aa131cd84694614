"""One candidate in, metrics out: apply masks, score, restore."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from torch import nn

from prunetune.errors import EvaluationError
from prunetune.evaluators.tasks import Split, Task
from prunetune.pruning.masks import Pruner
from prunetune.spaces.space import SearchSpace


class Evaluator:
    """Scores allocations on a live model.

    ``evaluate`` returns the task's metrics plus ``nonzero_params`` (whole model),
    ``sparsity`` (overall, over prunable layers) and ``eval_seconds``. The model's dense
    weights are restored afterwards, also when the task raises.
    """

    def __init__(self, model: nn.Module, task: Task, pruner: Pruner, space: SearchSpace) -> None:
        self.model = model
        self.task = task
        self.pruner = pruner
        self.space = space

    def evaluate(
        self, sparsities: Sequence[float], split: Split = "search", fidelity: float = 1.0
    ) -> dict[str, float]:
        """Metrics of ``sparsities`` on ``split``; ``fidelity`` is the fraction of the split."""
        start = time.perf_counter()
        with self.pruner.applied(sparsities):
            metrics = self.task.score(self.model, split, fidelity)
        quality = metrics.get(self.task.quality_name)
        if quality is None or not math.isfinite(quality):
            raise EvaluationError(f"task returned {self.task.quality_name}={quality!r}")
        metrics["nonzero_params"] = float(self.space.nonzero_params(sparsities))
        metrics["sparsity"] = self.space.overall_sparsity(sparsities)
        metrics["fidelity_level"] = fidelity
        metrics["eval_seconds"] = time.perf_counter() - start
        return metrics
