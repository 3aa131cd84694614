"""Low-dimensional views of a per-layer allocation.

A grouping maps a short vector ``x`` (one offset per group or knot) to a per-layer
proposal ``base + W @ x`` and then projects it exactly onto the budget, so a strategy can
search a handful of numbers instead of one per layer. ``W`` is a ``(layers, groups)``
matrix: a 0/1 assignment for per-layer, per-block and per-type groupings, the sum of two
assignments for ``block+type``, and piecewise-linear hat functions over depth for
``depth`` (``k`` knots). ``encode`` is the least-squares inverse of ``decode`` before
projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prunetune.errors import OptionError
from prunetune.spaces.space import SearchSpace

GROUPINGS = ("per-layer", "per-block", "per-type", "block+type", "depth")


@dataclass(frozen=True)
class Grouping:
    """A linear map from group offsets to per-layer sparsity offsets.

    Attributes:
        kind: one of :data:`GROUPINGS`.
        labels: one name per group (``"block3"``, ``"type:q"``, ``"knot0"``, ...).
        matrix: ``(layers, groups)`` weights; row ``i`` says how layer ``i`` moves with
            each group's offset.
    """

    kind: str
    labels: tuple[str, ...]
    matrix: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.labels)

    def decode(self, space: SearchSpace, x: Sequence[float] | np.ndarray, target: float | None = None) -> list[float]:
        """Per-layer sparsities for offsets ``x`` around ``target`` (default: the space's
        target), projected exactly onto ``target``; in Pareto mode with no target the
        offsets are taken around the middle of the bounds and snapped to the grid."""
        t = space.target if target is None else target
        base = 0.5 * (space.lo + space.hi) if t is None else t
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"grouping {self.kind!r} has {self.dim} groups; got {x.shape[0] if x.ndim else 0} values")
        return space.project(base + self.matrix @ x, target=t)

    def encode(self, space: SearchSpace, sparsities: Sequence[float], target: float | None = None) -> list[float]:
        """The offsets whose decoding is closest (least squares, parameter-weighted) to
        ``sparsities``; ``target`` defaults to the allocation's own overall sparsity."""
        s = np.asarray(sparsities, dtype=np.float64)
        base = space.overall_sparsity(list(s)) if target is None else target
        w = np.sqrt(np.asarray(space.numels, dtype=np.float64))
        sol, *_ = np.linalg.lstsq(self.matrix * w[:, None], (s - base) * w, rcond=None)
        return [float(v) for v in sol]


def _depths(space: SearchSpace) -> np.ndarray:
    """Each layer's relative depth in [0, 1]: its block's position when blocks are known,
    else its position in model order."""
    blocks = [layer.block for layer in space.layers]
    if all(b >= 0 for b in blocks):
        top = max(blocks)
        return np.array([b / top if top else 0.0 for b in blocks])
    n = space.dim
    return np.arange(n) / (n - 1) if n > 1 else np.zeros(1)


def _assignment(keys: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    labels = tuple(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(labels)}
    m = np.zeros((len(keys), len(labels)))
    for row, k in enumerate(keys):
        m[row, index[k]] = 1.0
    return labels, m


def make_grouping(space: SearchSpace, kind: str = "per-block", knots: int = 4) -> Grouping:
    """Build a grouping of ``space``'s layers.

    Args:
        kind: ``per-layer``, ``per-block`` (layers outside blocks get one group each),
            ``per-type`` (q/k/v/o/up/gate/down/...), ``block+type`` (an offset per block
            plus one per type, added) or ``depth`` (a piecewise-linear profile over depth).
        knots: number of knots of the depth profile (at least 2).

    Raises:
        ValueError: on an unknown kind or fewer than 2 knots, naming what is allowed.
    """
    layers = space.layers
    if kind == "per-layer":
        labels, m = _assignment([layer.name for layer in layers])
    elif kind == "per-block":
        labels, m = _assignment([f"block{layer.block}" if layer.block >= 0 else layer.name for layer in layers])
    elif kind == "per-type":
        labels, m = _assignment([f"type:{layer.kind}" for layer in layers])
    elif kind == "block+type":
        bl, bm = _assignment([f"block{layer.block}" if layer.block >= 0 else layer.name for layer in layers])
        tl, tm = _assignment([f"type:{layer.kind}" for layer in layers])
        labels, m = bl + tl, np.hstack([bm, tm])
    elif kind == "depth":
        if not isinstance(knots, int) or knots < 2:
            raise OptionError("knots", knots, "must be an integer >= 2")
        d = _depths(space)
        pos = np.linspace(0.0, 1.0, knots)
        m = np.clip(1.0 - np.abs(d[:, None] - pos[None, :]) * (knots - 1), 0.0, 1.0)
        labels = tuple(f"knot{i}" for i in range(knots))
    else:
        raise OptionError("grouping", kind, f"must be one of {', '.join(GROUPINGS)}")
    return Grouping(kind, labels, m)
