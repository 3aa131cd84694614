"""One candidate in, metrics out: apply masks, recover (optional), score, measure, restore."""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from prunetune.errors import EvaluationError
from prunetune.evaluators.fidelity import check_fraction
from prunetune.evaluators.size import SizeMeter, measure_latency
from prunetune.evaluators.tasks import Split, Task
from prunetune.pruning.masks import Pruner
from prunetune.spaces.space import SearchSpace

if TYPE_CHECKING:
    from prunetune.evaluators.recovery import Recovery
    from prunetune.spec import SearchSpec


class Evaluator:
    """Scores allocations on a live model.

    ``evaluate`` returns the task's metrics plus ``nonzero_params`` (whole model),
    ``sparsity`` (overall, over prunable layers), ``fidelity_level`` (fraction of the
    split scored), the size and FLOPs metrics of :mod:`prunetune.evaluators.size`,
    ``latency_seconds`` when ``task.latency_repeats`` > 0, recovery metrics when
    ``recovery.steps`` > 0, and ``eval_seconds``. Every weight is restored afterwards,
    also when the task raises; except that a pruner with ``live_between_candidates``
    (reconstruction levels) leaves a successful candidate applied, so that the next
    ``apply`` moves only the layers that differ: call ``pruner.restore()`` for the dense
    model.

    Raises:
        EvaluationError: when the quality metric is missing, NaN or infinite.
    """

    def __init__(
        self, model: nn.Module, task: Task, pruner: Pruner, space: SearchSpace,
        spec: SearchSpec | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.pruner = pruner
        self.space = space
        self.size = SizeMeter(model, space.layers)
        self.latency_repeats = spec.task.latency_repeats if spec is not None else 0
        self.recovery: Recovery | None = None
        if spec is not None and spec.recovery.steps > 0:
            from prunetune.evaluators.recovery import Recovery

            self.recovery = Recovery(model, task, space.layers, spec.recovery, seed=spec.seed)

    def evaluate(
        self, sparsities: Sequence[float], split: Split = "search", fidelity: float = 1.0
    ) -> dict[str, float]:
        """Metrics of ``sparsities`` on ``split``; ``fidelity`` is the fraction of the split."""
        start = time.perf_counter()
        check_fraction(fidelity)
        if self.recovery is not None:
            self.recovery.prepare()  # dense outputs, once, before anything is pruned
        extra: dict[str, float] = {}
        # A pruner that moves only the layers that differ keeps the candidate live for the
        # next one (recovery changes the weights, so with it everything is restored).
        keep_live = self.pruner.live_between_candidates and self.recovery is None
        self.pruner.apply(sparsities)
        try:
            if self.recovery is not None:
                extra.update(self.recovery.run())
            metrics = self.task.score(self.model, split, fidelity)
            extra.update(self.size.measure())
            if self.latency_repeats:
                extra["latency_seconds"] = self._latency()
        except BaseException:
            keep_live = False
            raise
        finally:
            if self.recovery is not None:
                self.recovery.restore()
            if not keep_live:
                self.pruner.restore()
        quality = metrics.get(self.task.quality_name)
        if quality is None or not math.isfinite(quality):
            raise EvaluationError(f"task returned {self.task.quality_name}={quality!r}")
        metrics.update(extra)
        # Structured: what the export holds (cut structures can cross, removed blocks take
        # their norms along); otherwise the pruned layers' zeros, from the space.
        kept = getattr(self.pruner, "kept_params", None)
        metrics["nonzero_params"] = float(kept(sparsities) if kept is not None else self.space.nonzero_params(sparsities))
        metrics["sparsity"] = self.space.overall_sparsity(sparsities)
        metrics["fidelity_level"] = fidelity
        metrics["eval_seconds"] = time.perf_counter() - start
        return metrics

    def _latency(self) -> float:
        """Median seconds of a forward pass over the first calibration batch.

        Structured pruning is timed on the model as exported (heads, neurons, channels
        and blocks cut out, written to a temporary folder and loaded back): the masked
        model in place computes every zero, so it would time as the dense one. Other
        granularities are timed as they are: dense kernels do not skip zeros.
        """
        batch = self.task.calibration_batches()[0]
        param = next(self.model.parameters())
        if getattr(self.pruner, "kept_params", None) is None:
            return measure_latency(lambda: self.task.forward(self.model, batch), self.latency_repeats, param.device)
        from prunetune.pruning.export import export, load_pruned

        with tempfile.TemporaryDirectory(prefix="prunetune-latency-") as tmp:
            try:
                export(self.model, Path(tmp) / "model")
                # A transformers model is rebuilt from its config (blocks removed too).
                hf = hasattr(self.model, "config") and hasattr(self.model, "save_pretrained")
                dense = None if hf else copy.deepcopy(self.model)
                delivered = load_pruned(Path(tmp) / "model", model=dense)
            except ValueError as err:
                raise EvaluationError(f"latency of the exported model cannot be measured: {err}") from err
        delivered.to(device=param.device, dtype=param.dtype)
        return measure_latency(lambda: self.task.forward(delivered, batch), self.latency_repeats, param.device)
