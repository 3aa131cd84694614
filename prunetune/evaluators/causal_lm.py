"""Causal language modelling: perplexity and token-level KL to the dense model.

Text ("pydoc" by default, a local .txt file or a datasets source) is shuffled by chunk
with the fixed split seed (``protocol: contiguous``: kept in order, whole rows), tokenised into one stream and cut into windows of ``task.max_length`` tokens every
``task.stride`` tokens. The calibration, search, report and validation splits are
disjoint regions of that stream (validation last, so the others never move), and split
sizes count windows. With overlapping windows only the tokens a window adds are scored
(the standard sliding-window perplexity), so every token of a region is scored once,
with at least ``max_length - stride`` tokens of context.

The dense model's distribution is kept as its top-k tokens per position plus one "rest"
bucket; KL over that coarsened distribution is exact when k is the vocabulary size and
a lower bound otherwise, and keeps memory at k entries per token instead of the vocabulary.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunetune.errors import SpecError
from prunetune.evaluators.classification import model_logits
from prunetune.evaluators.data import SPLIT_SEED, text_chunks, text_rows, validation_size
from prunetune.evaluators.fidelity import check_fraction, subset_indices
from prunetune.evaluators.model import LoadedModel
from prunetune.evaluators.tasks import SPLITS, Split, Task, check_split
from prunetune.spec import TaskSpec

# Entries of the dense distribution kept per token (all of them for vocabularies this small).
TOP_K = 256


class ByteTokenizer:
    """UTF-8 bytes as token ids (vocabulary 256): for models trained without a tokenizer."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    if isinstance(tokenizer, ByteTokenizer):
        return [t for text in texts for t in tokenizer.encode(text)]
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [t for row in ids for t in row]


def teacher_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` log-probabilities and their token ids along the last dimension."""
    logp = F.log_softmax(logits.float(), dim=-1)
    k = min(k, logp.shape[-1])
    values, index = torch.topk(logp, k, dim=-1)
    return values, index


def coarse_kl(teacher: tuple[torch.Tensor, torch.Tensor], student_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) per position over the teacher's top-k tokens and one rest bucket."""
    t_logp, index = teacher
    s_logp = F.log_softmax(student_logits.float(), dim=-1)
    s_k = s_logp.gather(-1, index)
    kl = (t_logp.exp() * (t_logp - s_k)).sum(-1)
    t_rest = (1 - t_logp.exp().sum(-1)).clamp(min=0.0)
    s_rest = (1 - s_k.exp().sum(-1)).clamp(min=1e-12)
    rest = torch.where(t_rest > 1e-9, t_rest * (t_rest.clamp(min=1e-12).log() - s_rest.log()),
                       torch.zeros_like(t_rest))
    return kl + rest


class CausalLMTask(Task):
    """Perplexity (``quality: perplexity``, ranked by ``neg_perplexity``) or KL to the
    dense model (``quality: kl``, ranked by ``neg_kl``) of a causal LM."""

    def __init__(self, loaded: LoadedModel, spec: TaskSpec) -> None:
        self.seq_len = spec.max_length
        self.stride = spec.stride or spec.max_length
        self.quality_name = "neg_perplexity" if spec.quality == "perplexity" else "neg_kl"
        self._bs = spec.batch_size
        self.tokenizer = loaded.tokenizer if loaded.tokenizer is not None else ByteTokenizer()
        if spec.protocol == "contiguous":
            chunks = text_rows(spec.data)
        else:
            chunks = text_chunks(spec.data, "causal-lm")
            random.Random(SPLIT_SEED).shuffle(chunks)
        stream = _encode(self.tokenizer, [c + "\n\n" for c in chunks])
        counts = {"calibration": spec.calibration, "search": spec.search, "report": spec.report}
        need = sum(self._region(n) for n in counts.values())
        if need > len(stream):
            fit = (len(stream) - 3 * self.seq_len) // self.stride + 3
            raise SpecError("task.calibration+search+report", sum(counts.values()),
                            f"the text has {len(stream)} tokens: about {fit} windows of "
                            f"{self.seq_len} every {self.stride} in all")
        left = len(stream) - need
        fits = (left - self.seq_len) // self.stride + 1 if left >= self.seq_len else 0
        counts["validation"] = validation_size(spec.validation, spec.search, fits, "windows")
        self._windows: dict[str, torch.Tensor] = {}
        self._masks: dict[str, torch.Tensor] = {}
        start = 0
        for split in SPLITS:
            n = counts[split]
            if n == 0:
                self._windows[split] = torch.zeros(0, self.seq_len, dtype=torch.long)
                self._masks[split] = torch.zeros(0, self.seq_len - 1, dtype=torch.bool)
                continue
            ids = torch.tensor(stream[start : start + self._region(n)], dtype=torch.long)
            self._windows[split] = torch.stack([ids[i * self.stride : i * self.stride + self.seq_len]
                                                for i in range(n)])
            # Target j (predicting token j + 1) is new in window i > 0 when j + 1 >= L - stride.
            mask = torch.ones(n, self.seq_len - 1, dtype=torch.bool)
            mask[1:, : max(0, self.seq_len - 1 - self.stride)] = False
            self._masks[split] = mask
            start += self._region(n)
        self._batches = {s: self._make_batches(s, list(range(counts[s])), self._bs) for s in SPLITS}
        self._subsets: dict[tuple[str, float], list[dict[str, torch.Tensor]]] = {}
        self._dense: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._dense_metrics: dict[str, float] = {}

    def _region(self, windows: int) -> int:
        return self.seq_len + (windows - 1) * self.stride

    def _make_batches(self, split: str, idx: list[int], bs: int) -> list[dict[str, torch.Tensor]]:
        sel = torch.tensor(idx, dtype=torch.long)
        return [{"input_ids": self._windows[split][sel[i : i + bs]],
                 "target_mask": self._masks[split][sel[i : i + bs]], "index": sel[i : i + bs]}
                for i in range(0, len(sel), bs)]

    def split_batches(self, split: Split, fraction: float = 1.0) -> list[dict[str, torch.Tensor]]:
        if check_fraction(fraction) == 1.0:
            return self._batches[split]
        key = (split, fraction)
        if key not in self._subsets:
            # Windows have one length; systematic sampling spreads the subset over the text.
            n = len(self._windows[split])
            self._subsets[key] = self._make_batches(split, subset_indices(list(range(n)), fraction), self._bs)
        return self._subsets[key]

    def calibration_batches(self) -> Sequence[Any]:
        return self._batches["calibration"]

    def train_batches(self, batch_size: int) -> Sequence[Any]:
        return self._make_batches("calibration", list(range(len(self._windows["calibration"]))), batch_size)

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return model_logits(model(input_ids=batch["input_ids"]))

    def _pass(self, model: nn.Module, batches: Sequence[dict[str, torch.Tensor]],
              dense: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, float]:
        nll = kl = 0.0
        tokens = 0
        with torch.inference_mode():
            for b in batches:
                logits = self.forward(model, b)[:, :-1].float()
                mask = b["target_mask"]
                logp = F.log_softmax(logits, dim=-1)
                target = b["input_ids"][:, 1:].unsqueeze(-1)
                nll -= float(logp.gather(-1, target).squeeze(-1)[mask].sum())
                if dense is not None:
                    teacher = (dense[0][b["index"]][mask], dense[1][b["index"]][mask])
                    kl += float(coarse_kl(teacher, logits[mask]).sum())
                tokens += int(mask.sum())
        out = {"perplexity": math.exp(nll / tokens) if nll / tokens < 700 else math.inf,
               "tokens_scored": float(tokens), "seq_len": float(self.seq_len), "stride": float(self.stride)}
        out["neg_perplexity"] = -out["perplexity"]
        if dense is not None:
            out["kl_to_dense"] = kl / tokens
            out["neg_kl"] = -out["kl_to_dense"]
        return out

    def prepare(self, model: nn.Module) -> None:
        for split in ("search", "report", "validation"):
            if not self._batches[split]:
                continue
            parts = []
            with torch.inference_mode():
                for b in self._batches[split]:
                    parts.append(teacher_topk(self.forward(model, b)[:, :-1], TOP_K))
            self._dense[split] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        self._dense_metrics = self.score(model, "report")

    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        check_split(split, len(self._windows.get(split, ())))
        return self._pass(model, self.split_batches(split, fraction), self._dense.get(split))

    def dense_reference(self) -> dict[str, float]:
        return dict(self._dense_metrics)

    def data_hashes(self) -> dict[str, str]:
        return {s: hashlib.sha256(self._windows[s].numpy().tobytes()
                                  + f"{self.seq_len}/{self.stride}".encode()).hexdigest()[:16]
                for s in SPLITS}

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean next-token cross-entropy over every position of the batch's windows."""
        logits = self.forward(model, batch)[:, :-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["input_ids"][:, 1:].reshape(-1))

    def distill_kind(self, requested: str) -> str:
        if requested not in ("auto", "kl"):
            raise SpecError("recovery.distill_loss", requested, "causal-lm allows: auto, kl")
        return "kl"

    def distill_target(self, model: nn.Module, batch: Any, kind: str) -> Any:
        return teacher_topk(self.forward(model, batch)[:, :-1].detach(), TOP_K)

    def distill_loss(self, model: nn.Module, batch: Any, target: Any, kind: str, temperature: float) -> torch.Tensor:
        if temperature != 1.0:
            raise SpecError("recovery.temperature", temperature, "causal-lm distils at temperature 1.0")
        return coarse_kl(target, self.forward(model, batch)[:, :-1]).mean()
