"""The search space a strategy sees: one sparsity per layer, bounds, grid and budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prunetune.spaces.budget import project_sparsities


@dataclass(frozen=True)
class PrunableLayer:
    """One prunable weight matrix.

    Attributes:
        name: the module's qualified name in the model.
        rows, cols: the shape of the ``(out, in)`` view of its weight.
        transposed: True when the stored weight is ``(in, out)`` (HF ``Conv1D``).
        block: index of the transformer block it belongs to, or -1.
        kind: role inside a block: q, k, v, qkv, o, gate, up, down, or "other".
    """

    name: str
    rows: int
    cols: int
    transposed: bool
    block: int
    kind: str

    @property
    def numel(self) -> int:
        return self.rows * self.cols


# The overall sparsities a Pareto-mode front is read at unless ``target.sparsities`` says.
DEFAULT_FRONT_LEVELS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class SearchSpace:
    """Per-layer sparsity allocations over ``layers``.

    Attributes:
        layers: the prunable layers, in model order.
        lo, hi: bounds on each layer's sparsity (fractions).
        step: grid step of proposals (fraction); projected allocations may lie off grid.
        target: overall parameter-weighted sparsity in budget mode, else None (Pareto mode).
        levels: Pareto mode, the overall sparsities where the user reads the front
            (``target.sparsities``); empty for the default, see :meth:`front_levels`.
        extra_params: parameters of the model outside the prunable layers (embeddings,
            norms, heads); they count toward size but are never pruned.
    """

    layers: tuple[PrunableLayer, ...]
    lo: float
    hi: float
    step: float
    target: float | None = None
    extra_params: int = 0
    levels: tuple[float, ...] = ()
    numels: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numels", tuple(layer.numel for layer in self.layers))

    @property
    def dim(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def prunable_params(self) -> int:
        return sum(self.numels)

    @property
    def grid(self) -> np.ndarray:
        """The sparsity levels a proposal may take per layer."""
        n = int(np.floor((self.hi - self.lo) / self.step + 1e-9))
        return np.round(self.lo + self.step * np.arange(n + 1), 10)

    def front_levels(self) -> list[float]:
        """Where a Pareto-mode front is read: ``levels`` when given, else those of
        :data:`DEFAULT_FRONT_LEVELS` within ``(lo, hi]``, else four levels evenly over it."""
        if self.levels:
            return list(self.levels)
        inside = [x for x in DEFAULT_FRONT_LEVELS if self.lo < x <= self.hi]
        if inside:
            return inside
        return [round(self.lo + (self.hi - self.lo) * (i + 1) / 4, 4) for i in range(4)]

    def overall_sparsity(self, sparsities: Sequence[float]) -> float:
        pruned = sum(round(s * n) for s, n in zip(sparsities, self.numels, strict=True))
        return pruned / self.prunable_params

    def nonzero_params(self, sparsities: Sequence[float]) -> int:
        """Parameters left in the whole model, assuming the dense weights have no zeros."""
        pruned = sum(round(s * n) for s, n in zip(sparsities, self.numels, strict=True))
        return self.extra_params + self.prunable_params - pruned

    def snap(self, sparsities: Sequence[float] | np.ndarray) -> list[float]:
        """Clip to bounds and round to the grid."""
        grid = self.grid
        idx = np.abs(np.asarray(sparsities)[:, None] - grid[None, :]).argmin(axis=1)
        return [float(grid[i]) for i in idx]

    def project(self, proposal: Sequence[float] | np.ndarray, target: float | None = None) -> list[float]:
        """Exact allocation at ``target`` (default: the space's target); in Pareto mode
        with no target, the proposal snapped to the grid."""
        t = self.target if target is None else target
        if t is None:
            return self.snap(proposal)
        lo = [self.lo] * self.dim
        hi = [self.hi] * self.dim
        return project_sparsities(proposal, self.numels, t, lo, hi)
