"""Calibration statistics, gathered once per job by hooks that are always removed.

Follows the accumulator shape of SparseGPT: ``add_batch`` per forward, read the totals,
and the hooks vanish when the ``with`` block ends, also on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunetune.spaces.layers import PrunableLayer


@dataclass
class InputStats:
    """Per-input-feature statistics of one layer's input over calibration tokens.

    ``sq_sum[j]`` is the sum over tokens of ``x_j ** 2``; ``tokens`` the number of tokens.
    """

    sq_sum: torch.Tensor
    tokens: int = 0

    @property
    def norm(self) -> torch.Tensor:
        """‖X_j‖₂ over all calibration tokens (Wanda's activation norm)."""
        return self.sq_sum.sqrt()


class InputNormAccumulator:
    """Context manager that records the squared input norms of each layer.

    Padding tokens are excluded when the caller sets ``token_mask`` (a bool tensor shaped
    like the batch's leading dimensions) before each forward.
    """

    def __init__(self, model: nn.Module, layers: Sequence[PrunableLayer]) -> None:
        self._modules = dict(model.named_modules())
        self.layers = list(layers)
        self.stats = {
            layer.name: InputStats(torch.zeros(layer.cols, dtype=torch.float64))
            for layer in self.layers
        }
        self.token_mask: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            if self.token_mask is not None and x.shape[:-1] == self.token_mask.shape:
                x = x[self.token_mask]
            x = x.reshape(-1, x.shape[-1]).to(torch.float64)
            stats = self.stats[name]
            stats.sq_sum += (x * x).sum(dim=0).cpu()
            stats.tokens += x.shape[0]

        return hook

    def __enter__(self) -> InputNormAccumulator:
        for layer in self.layers:
            module = self._modules[layer.name]
            self._handles.append(module.register_forward_pre_hook(self._hook(layer.name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def collect_input_stats(
    model: nn.Module,
    layers: Sequence[PrunableLayer],
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any], Any],
    token_mask: Callable[[Any], torch.Tensor | None] = lambda batch: None,
) -> dict[str, InputStats]:
    """Run ``forward(model, batch)`` over ``batches`` and return each layer's input stats."""
    with InputNormAccumulator(model, layers) as acc, torch.inference_mode():
        for batch in batches:
            acc.token_mask = token_mask(batch)
            forward(model, batch)
    return acc.stats
