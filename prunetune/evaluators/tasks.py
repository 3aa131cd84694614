"""Tasks: how a model is run on a split and scored.

A task owns its data (tokenised once, in length-sorted batches), the dense model's
reference outputs (computed once), and a ``score(model, split)`` that returns metrics
with the quality metric under ``task.quality_name`` (higher is better).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunetune.errors import SpecError
from prunetune.evaluators.data import Splits, digest, pydoc_chunks, split_text
from prunetune.evaluators.sources import LoadedModel
from prunetune.spec import TaskSpec

Split = Literal["calibration", "search", "report"]


class Task(ABC):
    quality_name: str

    @abstractmethod
    def calibration_batches(self) -> Sequence[Any]: ...

    @abstractmethod
    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def token_mask(self, batch: Any) -> torch.Tensor | None:
        """Which positions of a batch are real tokens (for calibration statistics)."""
        return None

    @abstractmethod
    def prepare(self, model: nn.Module) -> None:
        """Compute the dense model's reference outputs; call before any pruning."""

    @abstractmethod
    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        """Metrics on ``split``; ``fraction`` < 1 scores a fixed subset (multi-fidelity)."""

    @abstractmethod
    def dense_reference(self) -> dict[str, float]:
        """The dense model's report-split metrics (what pruning is compared against)."""

    @abstractmethod
    def data_hashes(self) -> dict[str, str]: ...


def _batches(tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int) -> list[dict[str, torch.Tensor]]:
    """Tokenise once; sort by length so each batch pads little (a pass costs half)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask, "index": torch.tensor(idx)})
    return batches


def _full_only(fraction: float) -> None:
    if fraction != 1.0:
        raise ValueError(f"this task scores whole splits only; got fraction {fraction}")


class EmbeddingTask(Task):
    """Sentence-embedding fidelity: mean cosine between pruned and dense embeddings
    (mean-pooled over real tokens, L2-normalised). On the report split it adds
    retrieval@1: embed the first and second half of each chunk of at least
    ``min_pair_words`` words and count how often a first half's nearest second half is
    its own."""

    quality_name = "fidelity"
    min_pair_words = 16

    def __init__(self, loaded: LoadedModel, spec: TaskSpec) -> None:
        if loaded.tokenizer is None:
            raise SpecError("task.kind", "embedding", "needs a text model with a tokenizer")
        if spec.data != "pydoc":
            raise SpecError("task.data", spec.data, "the embedding task reads 'pydoc' text")
        self.splits: Splits = split_text(pydoc_chunks(), spec.calibration, spec.search, spec.report)
        tok, bs, ml = loaded.tokenizer, spec.batch_size, spec.max_length
        self._batches = {
            "calibration": _batches(tok, self.splits.calibration, bs, ml),
            "search": _batches(tok, self.splits.search, bs, ml),
            "report": _batches(tok, self.splits.report, bs, ml),
        }
        pairs = [t.split() for t in self.splits.report if len(t.split()) >= self.min_pair_words]
        self.pair_count = len(pairs)
        self._halves = (
            _batches(tok, [" ".join(w[: len(w) // 2]) for w in pairs], bs, ml),
            _batches(tok, [" ".join(w[len(w) // 2 :]) for w in pairs], bs, ml),
        )
        self._dense: dict[str, torch.Tensor] = {}
        self._dense_metrics: dict[str, float] = {}

    def calibration_batches(self) -> Sequence[Any]:
        return self._batches["calibration"]

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state  # type: ignore[no-any-return]

    def token_mask(self, batch: Any) -> torch.Tensor:
        return batch["attention_mask"].bool()

    def _embed(self, model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        n = sum(len(b["index"]) for b in batches)
        out: torch.Tensor | None = None
        with torch.inference_mode():
            for b in batches:
                hidden = self.forward(model, b).float()
                m = b["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)
                if out is None:
                    out = torch.empty(n, emb.shape[-1])
                out[b["index"]] = emb.cpu()
        assert out is not None
        return out

    def _retrieval(self, model: nn.Module) -> float:
        if self.pair_count == 0:
            return float("nan")
        a, b = self._embed(model, self._halves[0]), self._embed(model, self._halves[1])
        hits = (a @ b.T).argmax(dim=1) == torch.arange(len(a))
        return float(hits.float().mean())

    def prepare(self, model: nn.Module) -> None:
        for split in ("search", "report"):
            self._dense[split] = self._embed(model, self._batches[split])
        self._dense_metrics = {"fidelity": 1.0, "retrieval_at_1": self._retrieval(model)}

    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        _full_only(fraction)
        emb = self._embed(model, self._batches[split])
        metrics = {"fidelity": float((emb * self._dense[split]).sum(-1).mean())}
        if split == "report":
            metrics["retrieval_at_1"] = self._retrieval(model)
        return metrics

    def dense_reference(self) -> dict[str, float]:
        return dict(self._dense_metrics, pairs=float(self.pair_count))

    def data_hashes(self) -> dict[str, str]:
        return self.splits.hashes()


class DigitsTask(Task):
    """Classification accuracy of the digits MLP on held-out images."""

    quality_name = "accuracy"

    def __init__(self, loaded: LoadedModel, spec: TaskSpec) -> None:
        x, y, train = loaded.extras["x"], loaded.extras["y"], loaded.extras["train"]
        held = len(x) - train
        if spec.search + spec.report > held:
            raise SpecError(
                "task.search+report", spec.search + spec.report,
                f"digits leaves {held} held-out images after training; the two splits must fit",
            )
        if spec.calibration > train:
            raise SpecError("task.calibration", spec.calibration, f"at most {train} (training images)")
        self._x = {
            "calibration": x[: spec.calibration],
            "search": x[train : train + spec.search],
            "report": x[train + spec.search : train + spec.search + spec.report],
        }
        self._y = {
            "search": y[train : train + spec.search],
            "report": y[train + spec.search : train + spec.search + spec.report],
        }
        self._dense_metrics: dict[str, float] = {}

    def calibration_batches(self) -> Sequence[Any]:
        return [self._x["calibration"]]

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return model(batch)  # type: ignore[no-any-return]

    def prepare(self, model: nn.Module) -> None:
        self._dense_metrics = self.score(model, "report")

    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        _full_only(fraction)
        with torch.inference_mode():
            pred = model(self._x[split]).argmax(-1)
        return {"accuracy": float((pred == self._y[split]).float().mean())}

    def dense_reference(self) -> dict[str, float]:
        return dict(self._dense_metrics)

    def data_hashes(self) -> dict[str, str]:
        return {k: digest([v.sum().item(), tuple(v.shape)]) for k, v in self._x.items()}


def build_task(loaded: LoadedModel, spec: TaskSpec) -> Task:
    if spec.kind == "embedding":
        return EmbeddingTask(loaded, spec)
    if spec.kind == "classification":
        if "x" not in loaded.extras:
            raise SpecError("task.kind", spec.kind, "classification currently needs model.source 'digits'")
        return DigitsTask(loaded, spec)
    raise SpecError("task.kind", spec.kind, "allowed: embedding, classification")

