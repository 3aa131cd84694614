"""Size and cost of a pruned model: nonzero parameters, storage bytes, FLOPs, latency.

Storage formats (values in fp16 except the dense fp32 figure; parameters outside the
pruned layers are stored dense fp16 in every sparse format):

- ``bytes_fp32``, ``bytes_fp16``: every parameter dense (what pruning alone saves: nothing).
- ``bytes_bitmask``: one bit per weight of a pruned layer plus its nonzero values.
- ``bytes_csr``: nonzero values, an int32 column index each, and int32 row pointers.
- ``bytes_2_4``: layers whose every group of 4 consecutive input weights keeps at most
  2 are packed (half the values plus a 2-bit index each); other layers stay dense.

FLOPs are multiply-adds times two per token through the linear layers (attention score
products and embedding lookups are left out): ``flops_per_token`` counts only rows and
columns that still hold a weight (what structured pruning removes on dense hardware);
``sparse_flops_per_token`` counts nonzero weights (an ideal sparse kernel).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prunetune.pruning.layers import weight_matrix
from prunetune.spaces.space import PrunableLayer


class SizeMeter:
    """Measures the live model's pruned layers; build once per model."""

    def __init__(self, model: nn.Module, layers: Sequence[PrunableLayer]) -> None:
        modules = dict(model.named_modules())
        self.layers = list(layers)
        self._weights = [weight_matrix(modules[layer.name], layer) for layer in self.layers]
        names = {layer.name for layer in self.layers}
        self.total = sum(p.numel() for p in model.parameters())
        self.prunable = sum(layer.numel for layer in self.layers)
        self.other_linear = sum(
            m.weight.numel() for n, m in modules.items()
            if n not in names and isinstance(getattr(m, "weight", None), torch.Tensor)
            and type(m).__name__ in ("Linear", "Conv1D")
        )

    def measure(self) -> dict[str, float]:
        """Metrics of the model as it is now (bytes in bytes, FLOPs per token).

        Reads the live weights, so any pruning (unstructured, N:M, rows) is counted as
        it really is; a weight that was zero before pruning counts as pruned.
        """
        other = self.total - self.prunable
        bitmask = csr = packed = float(other * 2)
        live = sparse = float(self.other_linear)
        for layer, w in zip(self.layers, self._weights, strict=True):
            nonzero = w != 0
            n = layer.numel
            nnz = int(nonzero.sum())
            k = n - nnz
            bitmask += -(-n // 8) + nnz * 2
            csr += nnz * 6 + (layer.rows + 1) * 4
            sparse += nnz
            if k == 0:
                live += n
                packed += n * 2
                continue
            live += float(nonzero.any(1).sum()) * float(nonzero.any(0).sum())
            fits_2_4 = 2 * k >= n and layer.cols % 4 == 0 and bool(
                (nonzero.reshape(layer.rows, -1, 4).sum(-1) <= 2).all())
            packed += n + n / 8 if fits_2_4 else n * 2
        return {
            "bytes_fp32": float(self.total * 4),
            "bytes_fp16": float(self.total * 2),
            "bytes_bitmask": bitmask,
            "bytes_csr": csr,
            "bytes_2_4": packed,
            "flops_per_token": 2 * live,
            "sparse_flops_per_token": 2 * sparse,
        }


def measure_latency(run: Callable[[], Any], repeats: int, device: torch.device | None = None) -> float:
    """Median wall seconds of ``run()`` over ``repeats`` calls after one warm-up call
    (waits for the GPU to finish each call when ``device`` is CUDA)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    cuda = device is not None and device.type == "cuda"
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            start = time.perf_counter()
            run()
            if cuda:
                torch.cuda.synchronize(device)
            if i:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
