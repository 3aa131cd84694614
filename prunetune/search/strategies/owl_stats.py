"""OWL's statistics: per-layer importance-score tails, the outlier ratio of a layer's
block, and OWL's per-layer sparsity shape.

Plain numbers (no tensors) once computed, so strategies read them without torch; only
:func:`layer_stats`, which computes them from the cached scores, imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from prunetune.spaces.space import SearchSpace

if TYPE_CHECKING:
    import torch

    from prunetune.spaces.space import PrunableLayer

# Score thresholds, relative to a layer's mean score, at which ``LayerStats`` records the
# fraction of weights above them (log-spaced, so an OWL ``M`` anywhere in 1.5-100 is read
# off by interpolation).
THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.geomspace(0.25, 200.0, 97))


@dataclass(frozen=True)
class LayerStats:
    """Importance-score statistics of one layer (plain numbers, no tensors).

    Attributes:
        mean: mean score of the layer's weights.
        tail: fraction of the layer's weights whose score exceeds ``t * mean`` for each
            ``t`` of :data:`THRESHOLDS`.
    """

    mean: float
    tail: tuple[float, ...]

    def outlier_ratio(self, m: float, scale: float = 1.0) -> float:
        """Fraction of weights scoring above ``m * scale * mean`` (OWL's outlier ratio)."""
        t = max(m * scale, 1e-12)
        lt = np.log(np.asarray(THRESHOLDS))
        return float(np.interp(np.log(t), lt, np.asarray(self.tail), left=self.tail[0], right=self.tail[-1]))


def layer_stats(scores: Mapping[str, torch.Tensor], layers: Sequence[PrunableLayer]) -> tuple[LayerStats, ...]:
    """Per-layer mean score and tail fractions above :data:`THRESHOLDS` times the mean."""
    import torch

    thresholds = torch.tensor(THRESHOLDS, dtype=torch.float64)
    stats = []
    for layer in layers:
        flat = scores[layer.name].detach().double().reshape(-1)
        mean = float(flat.mean())
        ordered = torch.sort(flat).values
        below = torch.searchsorted(ordered, thresholds * mean, right=True)
        tail = (1.0 - below.double() / flat.numel()).tolist()
        stats.append(LayerStats(mean=mean, tail=tuple(float(v) for v in tail)))
    return tuple(stats)


def block_outlier_ratios(space: SearchSpace, stats: Sequence[LayerStats], m: float) -> list[float]:
    """Per-layer OWL outlier ratio computed over the layer's whole block (layers outside
    blocks on their own): weights scoring above ``m`` times the block's mean."""
    if len(stats) != space.dim:
        raise ValueError(f"context has statistics of {len(stats)} layers; the space has {space.dim}")
    keys = [layer.block if layer.block >= 0 else -1 - i for i, layer in enumerate(space.layers)]
    out = [0.0] * space.dim
    for key in set(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        n = sum(space.numels[i] for i in idx)
        mean = sum(stats[i].mean * space.numels[i] for i in idx) / n
        above = sum(
            space.numels[i] * stats[i].outlier_ratio(m, mean / max(stats[i].mean, 1e-30))
            for i in idx
        )
        for i in idx:
            out[i] = above / n
    return out


def owl_allocation(
    space: SearchSpace, stats: Sequence[LayerStats], target: float, m: float = 5.0, lam: float = 0.08
) -> list[float]:
    """OWL's per-layer sparsity proposal (before exact projection): blocks with more
    outliers (weights scoring above ``m`` times their block's mean) keep more weights;
    sparsities spread over ``target ± lam``."""
    if not stats:
        raise ValueError("OWL needs score statistics (context); build the strategy through the controller")
    ratio = np.asarray(block_outlier_ratios(space, stats, m))
    span = ratio.max() - ratio.min()
    scaled = (ratio - ratio.min()) / span * 2 * lam if span > 0 else np.zeros_like(ratio)
    density = scaled - scaled.mean() + (1.0 - target)
    return [float(v) for v in 1.0 - density]
