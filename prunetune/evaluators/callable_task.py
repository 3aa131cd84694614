"""A user's metric: ``task.function = "package.module:function"`` called as
``function(model, batch) -> float`` on each batch of a split; the split's score is the
mean over batches weighted by batch size, ranked under ``score`` (higher is better).

Batches are those the data gives: tokenised text (``input_ids``, ``attention_mask``,
``index``) for models with a tokenizer, ``x``/``labels``/``index`` for feature data.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prunetune.errors import EvaluationError, SpecError
from prunetune.evaluators.model import LoadedModel
from prunetune.evaluators.tasks import SPLITS, Split, Task, check_split
from prunetune.spec import TaskSpec


def load_function(path: str) -> Callable[[nn.Module, Any], float]:
    module_name, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise SpecError("task.function", path, f"cannot be imported ({err}); give 'package.module:function'") from None
    if not callable(fn):
        raise SpecError("task.function", path, "is not callable")
    return fn  # type: ignore[no-any-return]


class CallableTask(Task):
    """Delegates data to the classification or embedding task and scoring to the user."""

    quality_name = "score"

    def __init__(self, loaded: LoadedModel, spec: TaskSpec) -> None:
        assert spec.function is not None  # guaranteed by TaskSpec validation
        self.fn = load_function(spec.function)
        self.function = spec.function
        self.inner: Any
        if loaded.tokenizer is not None and not (isinstance(spec.data, str) and spec.data.endswith((".csv", ".jsonl"))):
            from prunetune.evaluators.tasks import EmbeddingTask

            self.inner = EmbeddingTask(loaded, spec)
        else:
            from prunetune.evaluators.classification import ClassificationTask

            self.inner = ClassificationTask(loaded, spec)
        self._dense_metrics: dict[str, float] = {}

    def calibration_batches(self) -> Sequence[Any]:
        return self.inner.calibration_batches()  # type: ignore[no-any-return]

    def train_batches(self, batch_size: int) -> Sequence[Any]:
        return self.inner.train_batches(batch_size)  # type: ignore[no-any-return]

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.inner.forward(model, batch)  # type: ignore[no-any-return]

    def token_mask(self, batch: Any) -> torch.Tensor | None:
        return self.inner.token_mask(batch)  # type: ignore[no-any-return]

    def prepare(self, model: nn.Module) -> None:
        self.inner.prepare(model)
        self._dense_metrics = self.score(model, "report")

    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        total = weight = 0.0
        batches = self.inner.split_batches(split, fraction) if split in SPLITS else []
        check_split(split, len(batches))
        with torch.inference_mode():
            for batch in batches:
                value = float(self.fn(model, batch))
                if not math.isfinite(value):
                    raise EvaluationError(f"task.function {self.function} returned {value} on a {split} batch")
                n = len(batch["index"])
                total += value * n
                weight += n
        return {"score": total / weight}

    def dense_reference(self) -> dict[str, float]:
        return dict(self._dense_metrics)

    def data_hashes(self) -> dict[str, str]:
        return self.inner.data_hashes()  # type: ignore[no-any-return]

    def distill_kind(self, requested: str) -> str:
        return self.inner.distill_kind(requested)  # type: ignore[no-any-return]

    def distill_target(self, model: nn.Module, batch: Any, kind: str) -> Any:
        return self.inner.distill_target(model, batch, kind)

    def distill_loss(self, model: nn.Module, batch: Any, target: Any, kind: str, temperature: float) -> torch.Tensor:
        return self.inner.distill_loss(model, batch, target, kind, temperature)  # type: ignore[no-any-return]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.inner.loss(model, batch)  # type: ignore[no-any-return]
