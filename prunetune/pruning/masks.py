"""Masks from cached scores, applied to and restored from the live model in place.

Scores are sorted once (``ScoreOrder``); a candidate's mask is then a slice of that
order, so evaluating a candidate costs a scatter, not a re-scoring or a deep copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from prunetune.spaces.layers import PrunableLayer, weight_matrix

Groups = Literal["row", "layer"]


class ScoreOrder:
    """One layer's weights ordered from least to most important.

    With ``groups="row"`` each output row is a comparison group: the ``k`` pruned weights
    of a layer are spread so that every row loses ``k // rows`` weights and ``k % rows``
    rows lose one more (those whose next weight is least important). With ``"layer"``
    the ``k`` least important weights of the whole layer go.
    """

    def __init__(self, scores: torch.Tensor, groups: Groups) -> None:
        if scores.dim() != 2:
            raise ValueError(f"scores must be 2-D (out, in); got shape {tuple(scores.shape)}")
        self.groups = groups
        self.rows, self.cols = scores.shape
        if groups == "row":
            self.sorted, self.order = torch.sort(scores.float(), dim=1, stable=True)
        elif groups == "layer":
            flat = scores.float().reshape(-1)
            _, self.order = torch.sort(flat, stable=True)
        else:
            raise ValueError(f"groups must be 'row' or 'layer'; got {groups!r}")

    @property
    def numel(self) -> int:
        return self.rows * self.cols

    def pruned_index(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, col) indices of the ``k`` weights to prune."""
        if not 0 <= k <= self.numel:
            raise ValueError(f"k must be in [0, {self.numel}]; got {k}")
        if self.groups == "layer":
            flat = self.order[:k]
            return flat // self.cols, flat % self.cols
        base, extra = divmod(k, self.rows)
        rows = torch.arange(self.rows).repeat_interleave(base)
        cols = self.order[:, :base].reshape(-1)
        if extra:
            # Rows whose next candidate is least important give one more weight.
            nxt = self.sorted[:, base]
            chosen = torch.topk(nxt, extra, largest=False, sorted=False).indices
            rows = torch.cat([rows, chosen])
            cols = torch.cat([cols, self.order[chosen, base]])
        return rows, cols


def counts_for(sparsities: Sequence[float], layers: Sequence[PrunableLayer]) -> list[int]:
    """Pruned weights per layer: ``round(s * numel)``; validates each fraction."""
    if len(sparsities) != len(layers):
        raise ValueError(f"allocation has {len(sparsities)} entries for {len(layers)} layers")
    out = []
    for s, layer in zip(sparsities, layers, strict=True):
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity of layer {layer.name!r} must be in [0, 1); got {s}")
        out.append(round(s * layer.numel))
    return out


class Pruner:
    """Applies allocations to a live model and puts the dense weights back.

    ``apply`` zeroes weights in place; ``restore`` copies the dense originals back, bit for
    bit. The dense weights are kept once (one copy of the prunable matrices), never per
    candidate.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[PrunableLayer],
        scores: Mapping[str, torch.Tensor],
        groups: Groups = "row",
    ) -> None:
        modules = dict(model.named_modules())
        self.layers = list(layers)
        self._weights = [weight_matrix(modules[layer.name], layer) for layer in self.layers]
        self._dense = [w.detach().clone() for w in self._weights]
        self._orders = [ScoreOrder(scores[layer.name], groups) for layer in self.layers]
        self._dirty: list[int] = []

    def apply(self, sparsities: Sequence[float]) -> None:
        """Zero the least important ``round(s_i * n_i)`` weights of each layer, in place."""
        self.restore()
        for i, k in enumerate(counts_for(sparsities, self.layers)):
            if k == 0:
                continue
            rows, cols = self._orders[i].pruned_index(k)
            self._weights[i].index_put_((rows, cols), torch.zeros((), dtype=self._weights[i].dtype))
            self._dirty.append(i)

    def restore(self) -> None:
        """Put the dense weights back (bit-identical)."""
        for i in self._dirty:
            self._weights[i].copy_(self._dense[i])
        self._dirty.clear()

    @contextmanager
    def applied(self, sparsities: Sequence[float]) -> Iterator[None]:
        self.apply(sparsities)
        try:
            yield
        finally:
            self.restore()

    def keep_masks(self, sparsities: Sequence[float]) -> dict[str, torch.Tensor]:
        """Boolean masks (True = kept) shaped like each layer's ``(out, in)`` view."""
        masks = {}
        for i, k in enumerate(counts_for(sparsities, self.layers)):
            mask = torch.ones(self._orders[i].rows, self._orders[i].cols, dtype=torch.bool)
            if k:
                mask[self._orders[i].pruned_index(k)] = False
            masks[self.layers[i].name] = mask
        return masks
