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

from prunetune.pruning.layers import weight_matrix
from prunetune.spaces.space import PrunableLayer

Groups = Literal["row", "layer"]


def parse_nm(pattern: str | tuple[int, int]) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``: keep ``n`` of every ``m`` consecutive input weights."""
    if isinstance(pattern, tuple):
        n, m = pattern
    else:
        parts = pattern.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"N:M pattern must look like '2:4'; got {pattern!r}")
        n, m = int(parts[0]), int(parts[1])
    if not 0 < n < m:
        raise ValueError(f"N:M pattern needs 0 < N < M; got {n}:{m}")
    return n, m


def nm_pruned_index(scores: torch.Tensor, n: int, m: int, name: str = "layer") -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of the ``m - n`` least important weights in every group of ``m``
    consecutive input weights of every row (ties broken by position)."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(
            f"N:M {n}:{m}: M={m} does not divide the input dimension {cols} of {name!r}; "
            "exclude the layer or pick an M that divides it"
        )
    grouped = scores.float().reshape(rows, cols // m, m)
    drop = torch.sort(grouped, dim=2, stable=True).indices[:, :, : m - n]
    col = (torch.arange(cols // m)[None, :, None] * m + drop).reshape(rows, -1)
    row = torch.arange(rows)[:, None].expand_as(col)
    return row.reshape(-1), col.reshape(-1)


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
    candidate. For structure units (heads, neurons, blocks, channels) use
    :class:`~prunetune.pruning.structured.StructuredPruner`, or
    :func:`~prunetune.pruning.granularity.build_pruner`, which picks by granularity.
    """

    #: True when the evaluator may leave a candidate applied until the next ``apply``
    #: (a pruner that moves only what differs); masks restore after every evaluation.
    live_between_candidates = False

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[PrunableLayer],
        scores: Mapping[str, torch.Tensor],
        groups: Groups = "row",
        pattern: str | tuple[int, int] | None = None,
    ) -> None:
        """``pattern`` (e.g. ``"2:4"``) switches to N:M along the input dimension: a layer
        with sparsity > 0 gets exactly the N:M mask (sparsity ``1 - N/M``), 0 stays dense."""
        modules = dict(model.named_modules())
        self.layers = list(layers)
        missing = [layer.name for layer in self.layers if layer.name not in scores]
        if missing:
            raise ValueError(f"no scores for layers {missing[:3]}; scores name {list(scores)[:3]}")
        self._weights = [weight_matrix(modules[layer.name], layer) for layer in self.layers]
        self._dense = [w.detach().clone() for w in self._weights]
        self.pattern = None if pattern is None else parse_nm(pattern)
        self._orders = [ScoreOrder(scores[layer.name], groups) for layer in self.layers]
        self._nm = (
            [nm_pruned_index(scores[layer.name], *self.pattern, name=layer.name) for layer in self.layers]
            if self.pattern is not None
            else []
        )
        self._dirty: list[int] = []

    def _pruned(self, i: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._nm[i] if self.pattern is not None else self._orders[i].pruned_index(k)

    def counts(self, sparsities: Sequence[float]) -> list[int]:
        """Weights each layer loses under ``sparsities`` (N:M: all or nothing per layer)."""
        return self.counts_of(sparsities, self.layers, self.pattern)

    @staticmethod
    def counts_of(
        sparsities: Sequence[float], layers: Sequence[PrunableLayer], pattern: tuple[int, int] | None
    ) -> list[int]:
        counts = counts_for(sparsities, layers)
        if pattern is None:
            return counts
        n, m = pattern
        return [layer.numel // m * (m - n) if k else 0 for k, layer in zip(counts, layers, strict=True)]

    def achieved(self, sparsities: Sequence[float]) -> list[float]:
        """The sparsity each layer really gets (differs from the request under N:M)."""
        return [k / layer.numel for k, layer in zip(self.counts(sparsities), self.layers, strict=True)]

    def apply(self, sparsities: Sequence[float]) -> None:
        """Zero the least important ``round(s_i * n_i)`` weights of each layer, in place."""
        self.restore()
        for i, k in enumerate(self.counts(sparsities)):
            if k == 0:
                continue
            rows, cols = self._pruned(i, k)
            self._weights[i].index_put_((rows, cols), torch.zeros((), dtype=self._weights[i].dtype))
            self._dirty.append(i)

    def restore(self) -> None:
        """Put the dense weights back (bit-identical)."""
        for i in self._dirty:
            self._weights[i].copy_(self._dense[i])
        self._dirty.clear()

    def commit(self) -> None:
        """Make what ``apply`` did permanent: ``restore`` no longer puts it back (what
        ``torch.nn.utils.prune.remove`` does to a pruned parameter)."""
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
        for i, k in enumerate(self.counts(sparsities)):
            mask = torch.ones(self._orders[i].rows, self._orders[i].cols, dtype=torch.bool)
            if k:
                mask[self._pruned(i, k)] = False
            masks[self.layers[i].name] = mask
        return masks
