"""Classification: accuracy of a Hugging Face sequence classifier or any module.

Data: a labelled local ``.csv``/``.jsonl`` file (text for tokenised models, numeric
feature columns otherwise), a bundled scikit-learn set (``sklearn:digits``, ``iris``,
``wine``, ``breast_cancer``), or ``digits`` for the digits model's held-out images.
Besides accuracy it records agreement with the dense model's predictions and the mean
KL from the dense model's class distribution.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunetune.errors import SpecError
from prunetune.evaluators.data import SPLIT_SEED, read_records, validation_size
from prunetune.evaluators.fidelity import check_fraction, subset_indices
from prunetune.evaluators.model import LoadedModel
from prunetune.evaluators.tasks import SPLITS, Split, Task, check_split, kl_to_teacher, text_batches
from prunetune.spec import TaskSpec

SKLEARN_SETS = ("digits", "iris", "wine", "breast_cancer")


def model_logits(out: Any) -> torch.Tensor:
    """Logits from a model's output: HF output objects, tuples or plain tensors."""
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model output {type(out).__name__} has no logits tensor")
    return logits


def _labels(raw: Sequence[Any], model: nn.Module, column: str) -> torch.Tensor:
    """Integer class ids: ints as given, strings through ``config.label2id`` or sorted order."""
    if not raw:
        raise SpecError("task.data", "<empty>", "the file has no rows")
    try:
        return torch.tensor([int(v) for v in raw], dtype=torch.long)
    except (TypeError, ValueError):
        pass
    label2id = getattr(getattr(model, "config", None), "label2id", None) or {}
    names = sorted({str(v) for v in raw})
    if all(n in label2id for n in names):
        mapping = {n: int(label2id[n]) for n in names}
    else:
        mapping = {n: i for i, n in enumerate(names)}
    return torch.tensor([mapping[str(v)] for v in raw], dtype=torch.long)


def _missing_column(rows: Sequence[dict[str, Any]]) -> str:
    # The file's header names are its contents: count them, do not quote them (a job's
    # error is shown to whoever submitted it).
    width = len(rows[0]) if rows else 0
    return f"a column every row of task.data has (its first row has {width} columns, none of this name)"


def _sklearn(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    import sklearn.datasets as ds

    if name not in SKLEARN_SETS:
        raise SpecError("task.data", f"sklearn:{name}", f"allowed sets: {', '.join(SKLEARN_SETS)}")
    data = getattr(ds, f"load_{name}")()
    x = torch.tensor(data.data, dtype=torch.float32)
    if name == "digits":
        x = x / 16.0  # the scale the bundled digits model was trained on
    return x, torch.tensor(data.target, dtype=torch.long)


def _cut(n: int, spec: TaskSpec) -> dict[str, list[int]]:
    need = spec.calibration + spec.search + spec.report
    if need > n:
        raise SpecError("task.calibration+search+report", need, f"the data has {n} examples; the splits must fit")
    order = list(range(n))
    random.Random(SPLIT_SEED).shuffle(order)
    a, b = spec.calibration, spec.calibration + spec.search
    end = need + validation_size(spec.validation, spec.search, n - need)
    return {"calibration": order[:a], "search": order[a:b], "report": order[b:need], "validation": order[need:end]}


class ClassificationTask(Task):
    """Accuracy on labelled examples; the model returns logits (or an HF output with them)."""

    quality_name = "accuracy"

    def __init__(self, loaded: LoadedModel, spec: TaskSpec) -> None:
        self._bs = spec.batch_size
        self._tok = loaded.tokenizer
        self._ml = spec.max_length
        self._texts: dict[str, list[str]] = {}
        self._x: dict[str, torch.Tensor] = {}
        self._y: dict[str, torch.Tensor] = {}
        if "x" in loaded.extras and spec.data in ("digits", "pydoc"):
            self._held_out(loaded, spec)
        elif isinstance(spec.data, str) and spec.data.startswith("sklearn:"):
            x, y = _sklearn(spec.data.split(":", 1)[1])
            for split, idx in _cut(len(x), spec).items():
                self._x[split], self._y[split] = x[idx], y[idx]
        else:
            self._from_file(loaded, spec)
        self._subsets: dict[tuple[str, float], list[dict[str, torch.Tensor]]] = {}
        self._batches = {s: self._make_batches(s, None, self._bs) for s in SPLITS}
        self._dense_logits: dict[str, torch.Tensor] = {}
        self._dense_metrics: dict[str, float] = {}

    def _held_out(self, loaded: LoadedModel, spec: TaskSpec) -> None:
        x, y, train = loaded.extras["x"], loaded.extras["y"], loaded.extras["train"]
        held = len(x) - train
        if spec.search + spec.report > held:
            raise SpecError(
                "task.search+report", spec.search + spec.report,
                f"digits leaves {held} held-out images after training; the two splits must fit",
            )
        if spec.calibration > train:
            raise SpecError("task.calibration", spec.calibration, f"at most {train} (training images)")
        a, b = train + spec.search, train + spec.search + spec.report
        c = b + validation_size(spec.validation, spec.search, len(x) - b, "held-out images")
        self._x = {"calibration": x[: spec.calibration], "search": x[train:a], "report": x[a:b], "validation": x[b:c]}
        self._y = {"calibration": y[: spec.calibration], "search": y[train:a], "report": y[a:b], "validation": y[b:c]}

    def _from_file(self, loaded: LoadedModel, spec: TaskSpec) -> None:
        if isinstance(spec.data, str) and not spec.data.endswith((".csv", ".jsonl")):
            raise SpecError("task.data", spec.data,
                            "classification reads a local .csv/.jsonl file, 'sklearn:<set>' or 'digits'")
        rows = read_records(spec.data)
        if any(spec.label_column not in r for r in rows):
            raise SpecError("task.label_column", spec.label_column, _missing_column(rows))
        y = _labels([r[spec.label_column] for r in rows], loaded.model, spec.label_column)
        cut = _cut(len(rows), spec)
        if self._tok is not None:
            if any(spec.text_column not in r for r in rows):
                raise SpecError("task.text_column", spec.text_column, _missing_column(rows))
            for split, idx in cut.items():
                self._texts[split] = [str(rows[i][spec.text_column]) for i in idx]
                self._y[split] = y[idx]
            return
        cols = [c for c in rows[0] if c != spec.label_column]
        try:
            x = torch.tensor([[float(r[c]) for c in cols] for r in rows], dtype=torch.float32)
        except (TypeError, ValueError, KeyError):
            raise SpecError("task.data", spec.data, "a model without a tokenizer needs numeric feature columns "
                            f"(every column but {spec.label_column!r}; some value is not a number)") from None
        for split, idx in cut.items():
            self._x[split], self._y[split] = x[idx], y[idx]

    def _make_batches(self, split: str, idx: list[int] | None, bs: int) -> list[dict[str, torch.Tensor]]:
        y = self._y[split]
        if self._texts:
            texts = self._texts[split]
            sel = list(range(len(texts))) if idx is None else idx
            batches = text_batches(self._tok, [texts[i] for i in sel], bs, self._ml, sel)
            for b in batches:
                b["labels"] = y[b["index"]]
            return batches
        x = self._x[split]
        sel_t = torch.arange(len(x)) if idx is None else torch.tensor(idx)
        return [{"x": x[sel_t[i : i + bs]], "labels": y[sel_t[i : i + bs]], "index": sel_t[i : i + bs]}
                for i in range(0, len(sel_t), bs)]

    def split_batches(self, split: Split, fraction: float = 1.0) -> list[dict[str, torch.Tensor]]:
        if check_fraction(fraction) == 1.0:
            return self._batches[split]
        key = (split, fraction)
        if key not in self._subsets:
            n = len(self._y[split])
            lengths = [len(t.split()) for t in self._texts[split]] if self._texts else [0] * n
            # Smaller batches: a subset spans every length and would otherwise pad more.
            bs = max(1, round(self._bs * fraction)) if self._texts else self._bs
            self._subsets[key] = self._make_batches(split, subset_indices(lengths, fraction), bs)
        return self._subsets[key]

    def calibration_batches(self) -> Sequence[Any]:
        return self._batches["calibration"]

    def train_batches(self, batch_size: int) -> Sequence[Any]:
        return self._make_batches("calibration", None, batch_size)

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if "input_ids" in batch:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        else:
            out = model(batch["x"])
        return model_logits(out)

    def token_mask(self, batch: Any) -> torch.Tensor | None:
        return batch["attention_mask"].bool() if "attention_mask" in batch else None

    def _logits(self, model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            logits = [self.forward(model, b).float().cpu() for b in batches]
        return torch.cat(logits), torch.cat([b["index"] for b in batches])

    def prepare(self, model: nn.Module) -> None:
        for split in ("search", "report", "validation"):
            if not self._batches[split]:
                continue
            logits, idx = self._logits(model, self._batches[split])
            dense = torch.empty_like(logits)
            dense[idx] = logits
            self._dense_logits[split] = dense
        self._dense_metrics = self.score(model, "report")

    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        check_split(split, len(self._y.get(split, ())))
        logits, idx = self._logits(model, self.split_batches(split, fraction))
        pred = logits.argmax(-1)
        metrics = {"accuracy": float((pred == self._y[split][idx]).float().mean())}
        dense = self._dense_logits.get(split)
        if dense is not None:
            metrics["agreement"] = float((pred == dense[idx].argmax(-1)).float().mean())
            metrics["kl_to_dense"] = float(kl_to_teacher(logits, dense[idx], None))
        return metrics

    def dense_reference(self) -> dict[str, float]:
        return dict(self._dense_metrics)

    def data_hashes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for split in SPLITS:
            h = hashlib.sha256(self._y[split].numpy().tobytes())
            if self._texts:
                h.update("\0".join(self._texts[split]).encode())
            else:
                h.update(self._x[split].numpy().tobytes())
            out[split] = h.hexdigest()[:16]
        return out

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return F.cross_entropy(self.forward(model, batch).float(), batch["labels"])

    def distill_kind(self, requested: str) -> str:
        if requested in ("auto", "kl"):
            return "kl"
        if requested == "mse":
            return "mse"
        raise SpecError("recovery.distill_loss", requested, "classification allows: auto, kl, mse")

    def distill_loss(self, model: nn.Module, batch: Any, target: Any, kind: str, temperature: float) -> torch.Tensor:
        logits = self.forward(model, batch).float()
        if kind == "kl":
            return kl_to_teacher(logits, target, None, temperature)
        return F.mse_loss(logits, target)
