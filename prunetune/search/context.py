"""Score statistics for strategies, computed once from the cached importance scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from prunetune.search.base import THRESHOLDS, LayerStats, SearchContext
from prunetune.spaces.layers import PrunableLayer

if TYPE_CHECKING:
    from prunetune.workbench import Workbench


def layer_stats(scores: Mapping[str, torch.Tensor], layers: Sequence[PrunableLayer]) -> SearchContext:
    """Per-layer mean score and tail fractions above :data:`THRESHOLDS` times the mean."""
    thresholds = torch.tensor(THRESHOLDS, dtype=torch.float64)
    stats = []
    for layer in layers:
        flat = scores[layer.name].detach().double().reshape(-1)
        mean = float(flat.mean())
        ordered = torch.sort(flat).values
        below = torch.searchsorted(ordered, thresholds * mean, right=True)
        tail = (1.0 - below.double() / flat.numel()).tolist()
        stats.append(LayerStats(mean=mean, tail=tuple(float(v) for v in tail)))
    return SearchContext(stats=tuple(stats))


def workbench_context(bench: Workbench) -> SearchContext:
    """Statistics of a workbench's scores (read back from the score cache)."""
    return layer_stats(bench.scores(), bench.layers)
