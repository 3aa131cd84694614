"""A user metric (``task.kind: callable``) that misbehaves on some candidates: it raises,
returns NaN or infinity, or runs out of memory (CUDA's ``torch.OutOfMemoryError`` or the
host's ``MemoryError``), chosen by the candidate's sparsity so the same candidate always
behaves the same way. The dense model scores normally."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MODES = ("ok", "raise", "nan", "inf", "cuda-oom", "host-oom")


def mode_of(model: nn.Module) -> str:
    weight = next(m.weight for m in model.modules() if isinstance(m, nn.Linear))
    zeros = float((weight == 0).float().mean())
    return "ok" if zeros == 0.0 else MODES[int(zeros * 1000) % len(MODES)]


def accuracy(model: nn.Module, batch: Any) -> float:
    mode = mode_of(model)
    if mode == "raise":
        raise RuntimeError("metric exploded on purpose")
    if mode == "nan":
        return float("nan")
    if mode == "inf":
        return float("inf")
    if mode == "cuda-oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    if mode == "host-oom":
        raise MemoryError("cannot allocate 20 GiB")
    return float((model(batch["x"]).argmax(-1) == batch["labels"]).float().mean())
