"""Tasks: how a model is run on a split and scored.

A task owns its data (tokenised once, in length-sorted batches), the dense model's
reference outputs (computed once), and a ``score(model, split, fraction)`` that returns
metrics with the quality metric under ``task.quality_name`` (higher is better).

The embedding task lives here; classification, causal-lm and callable tasks have their
own modules (``prunetune.evaluators.registry.build_task`` picks one from the spec).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunetune.errors import SpecError
from prunetune.evaluators.data import Splits, digest, split_text, text_chunks
from prunetune.evaluators.fidelity import check_fraction, subset_indices
from prunetune.evaluators.model import LoadedModel
from prunetune.records import Split
from prunetune.spec import TaskSpec

# Validation is cut after the other three (``task.validation``): for tuning decisions
# (defaults, options), so that REPORT is read only for published figures.
SPLITS: tuple[Split, ...] = ("calibration", "search", "report", "validation")


def check_split(split: str, count: int) -> None:
    """Raise a SpecError unless ``split`` is a split name and has examples to score."""
    if split not in SPLITS:
        raise SpecError("split", split, f"allowed: {', '.join(SPLITS)}")
    if count == 0:
        field = "task.validation" if split == "validation" else f"task.{split}"
        raise SpecError(field, 0, f"the {split} split has no examples to score; "
                        "give it a size (the data must hold the splits before it too)")


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
        """Metrics on ``split``; ``fraction`` < 1 scores a fixed, representative subset
        of it (see ``prunetune.evaluators.fidelity``)."""

    @abstractmethod
    def dense_reference(self) -> dict[str, float]:
        """The dense model's report-split metrics (what pruning is compared against)."""

    @abstractmethod
    def data_hashes(self) -> dict[str, str]: ...

    # -- training: recovery fine-tuning and gradient criteria --------------------------

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The task's own training loss on a batch (differentiable, scalar)."""
        raise NotImplementedError(
            f"task {type(self).__name__} has no supervised loss; use recovery.distill: true"
        )

    def train_batches(self, batch_size: int) -> Sequence[Any]:
        """Calibration-split batches of ``batch_size`` examples, for recovery."""
        return self.calibration_batches()

    def distill_kind(self, requested: str) -> str:
        """The distillation loss ``requested`` resolves to ("auto" picks the task's)."""
        return "kl" if requested == "auto" else requested

    def distill_target(self, model: nn.Module, batch: Any, kind: str) -> Any:
        """What the dense model produces on ``batch`` that a student is trained toward."""
        return self.forward(model, batch).detach().float()

    def distill_loss(self, model: nn.Module, batch: Any, target: Any, kind: str, temperature: float) -> torch.Tensor:
        """Distance from the student's outputs on ``batch`` to the dense ``target``."""
        out = self.forward(model, batch).float()
        if kind == "kl":
            return kl_to_teacher(out, target, self.token_mask(batch), temperature)
        if kind == "mse":
            return masked_mse(out, target, self.token_mask(batch))
        raise SpecError("recovery.distill_loss", kind, f"{type(self).__name__} allows: auto, kl, mse")


def kl_to_teacher(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None, temperature: float = 1.0
) -> torch.Tensor:
    """Mean over real positions of KL(teacher ‖ student) on softened logits, times T²
    (so gradients keep their scale across temperatures)."""
    t = temperature
    s_logp = F.log_softmax(student / t, dim=-1)
    t_logp = F.log_softmax(teacher / t, dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
    if mask is not None:
        kl = kl[mask]
    return kl.mean() * t * t


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        student, teacher = student[mask], teacher[mask]
    return F.mse_loss(student, teacher)


def text_batches(tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int,
                 index: Sequence[int] | None = None) -> list[dict[str, torch.Tensor]]:
    """Tokenise once; sort by length so each batch pads little (a pass costs half).

    Each batch carries ``index``: the position of its rows in ``texts`` (or the entries
    of ``index`` when given, so a subset's rows point into the whole split).
    """
    if not texts:
        return []
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    where = list(range(len(ids))) if index is None else list(index)
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
        batches.append({"input_ids": input_ids, "attention_mask": mask,
                        "index": torch.tensor([where[i] for i in idx])})
    return batches



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
        self.splits: Splits = split_text(text_chunks(spec.data, "embedding"),
                                         spec.calibration, spec.search, spec.report, spec.validation)
        self._tok, self._bs, self._ml = loaded.tokenizer, spec.batch_size, spec.max_length
        self._batches: dict[str, list[dict[str, torch.Tensor]]] = {
            s: text_batches(self._tok, getattr(self.splits, s), self._bs, self._ml) for s in SPLITS
        }
        self._subsets: dict[tuple[str, float], list[dict[str, torch.Tensor]]] = {}
        self._train: dict[int, list[dict[str, torch.Tensor]]] = {}
        pairs = [t.split() for t in self.splits.report if len(t.split()) >= self.min_pair_words]
        self.pair_count = len(pairs)
        self._halves = (
            text_batches(self._tok, [" ".join(w[: len(w) // 2]) for w in pairs], self._bs, self._ml),
            text_batches(self._tok, [" ".join(w[len(w) // 2 :]) for w in pairs], self._bs, self._ml),
        )
        self._dense: dict[str, torch.Tensor] = {}
        self._dense_metrics: dict[str, float] = {}

        self.retrieval = spec.retrieval is not False
    def calibration_batches(self) -> Sequence[Any]:
        return self._batches["calibration"]

    def train_batches(self, batch_size: int) -> Sequence[Any]:
        if batch_size not in self._train:
            self._train[batch_size] = text_batches(self._tok, self.splits.calibration, batch_size, self._ml)
        return self._train[batch_size]

    def split_batches(self, split: Split, fraction: float = 1.0) -> list[dict[str, torch.Tensor]]:
        """The batches scored for ``split`` at ``fraction`` (a fixed subset when < 1)."""
        if check_fraction(fraction) == 1.0:
            return self._batches[split]
        key = (split, fraction)
        if key not in self._subsets:
            texts: list[str] = getattr(self.splits, split)
            idx = subset_indices([len(t.split()) for t in texts], fraction)
            # A subset spans every length, so full-size batches would each pad over a wide
            # range of lengths; batches shrunk by the fraction pad as little as the full split.
            bs = max(1, round(self._bs * fraction))
            self._subsets[key] = text_batches(self._tok, [texts[i] for i in idx], bs, self._ml, idx)
        return self._subsets[key]

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state  # type: ignore[no-any-return]

    def token_mask(self, batch: Any) -> torch.Tensor:
        return batch["attention_mask"].bool()

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """In-batch contrastive loss (InfoNCE, temperature 0.05) between the mean-pooled
        first and second halves of each text's real tokens. Label-free and non-zero on the
        dense model, so gradient criteria (Taylor, Fisher) get a signal from this task."""
        hidden = self.forward(model, batch).float()
        mask = batch["attention_mask"].to(hidden.dtype)
        first = mask * (mask.cumsum(1) <= mask.sum(1, keepdim=True) / 2).to(hidden.dtype)
        halves = [
            F.normalize((hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1), dim=-1)
            for m in (first, mask - first)
        ]
        logits = halves[0] @ halves[1].T / 0.05
        return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))

    def _pool(self, hidden: torch.Tensor, batch: Any) -> torch.Tensor:
        m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)

    def _embed(self, model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of every row of ``batches`` and the split positions they belong to."""
        embs, idx = [], []
        with torch.inference_mode():
            for b in batches:
                embs.append(self._pool(self.forward(model, b).float(), b).cpu())
                idx.append(b["index"])
        return torch.cat(embs), torch.cat(idx)

    def _embed_split(self, model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        emb, idx = self._embed(model, batches)
        out = torch.empty_like(emb)
        out[idx] = emb
        return out

    def _retrieval(self, model: nn.Module) -> float:
        if self.pair_count == 0:
            return float("nan")
        a, b = self._embed_split(model, self._halves[0]), self._embed_split(model, self._halves[1])
        hits = (a @ b.T).argmax(dim=1) == torch.arange(len(a))
        return float(hits.float().mean())

    def prepare(self, model: nn.Module) -> None:
        for split in ("search", "report", "validation"):
            if self._batches[split]:
                self._dense[split] = self._embed_split(model, self._batches[split])
        self._dense_metrics = {"fidelity": 1.0, "retrieval_at_1": self._retrieval(model)}

    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        check_split(split, len(getattr(self.splits, split, ())))
        emb, idx = self._embed(model, self.split_batches(split, fraction))
        metrics = {"fidelity": float((emb * self._dense[split][idx]).sum(-1).mean())}
        if split == "report" and fraction == 1.0 and self.retrieval:
            metrics["retrieval_at_1"] = self._retrieval(model)
        return metrics

    def dense_reference(self) -> dict[str, float]:
        return dict(self._dense_metrics, pairs=float(self.pair_count))

    def data_hashes(self) -> dict[str, str]:
        return self.splits.hashes()

    # -- distillation: pooled-embedding cosine (the metric itself) or hidden-state MSE --

    def distill_kind(self, requested: str) -> str:
        if requested in ("auto", "cosine"):
            return "cosine"
        if requested == "mse":
            return "mse"
        raise SpecError("recovery.distill_loss", requested, "the embedding task allows: auto, cosine, mse")

    def distill_target(self, model: nn.Module, batch: Any, kind: str) -> Any:
        hidden = self.forward(model, batch).detach().float()
        return self._pool(hidden, batch) if kind == "cosine" else hidden

    def distill_loss(self, model: nn.Module, batch: Any, target: Any, kind: str, temperature: float) -> torch.Tensor:
        hidden = self.forward(model, batch).float()
        if kind == "cosine":
            return 1.0 - (self._pool(hidden, batch) * target).sum(-1).mean()
        return masked_mse(hidden, target, self.token_mask(batch))


__all__ = ["SPLITS", "EmbeddingTask", "Split", "Task", "check_split", "digest", "text_batches"]
