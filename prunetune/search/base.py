"""The ask/tell contract every search strategy follows, and the records it exchanges
(defined in :mod:`prunetune.records`, re-exported here)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from prunetune.records import Candidate, TrialResult, TrialState
from prunetune.spaces.space import SearchSpace

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


@dataclass(frozen=True)
class SearchContext:
    """What a strategy may know about the model besides the space: per-layer score
    statistics, in the space's layer order. Built by the controller from the cached scores,
    so strategies never touch the model."""

    stats: tuple[LayerStats, ...] = ()

    def block_outlier_ratios(self, space: SearchSpace, m: float) -> list[float]:
        """Per-layer OWL outlier ratio computed over the layer's whole block (layers
        outside blocks on their own): weights scoring above ``m`` times the block's mean."""
        if len(self.stats) != space.dim:
            raise ValueError(f"context has statistics of {len(self.stats)} layers; the space has {space.dim}")
        keys = [layer.block if layer.block >= 0 else -1 - i for i, layer in enumerate(space.layers)]
        out = [0.0] * space.dim
        for key in set(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            n = sum(space.numels[i] for i in idx)
            mean = sum(self.stats[i].mean * space.numels[i] for i in idx) / n
            above = sum(
                space.numels[i] * self.stats[i].outlier_ratio(m, mean / max(self.stats[i].mean, 1e-30))
                for i in idx
            )
            for i in idx:
                out[i] = above / n
        return out


class Strategy(ABC):
    """Proposes allocations (``ask``) and learns from results (``tell``).

    A strategy must be reproducible from ``seed`` and must be able to rebuild its state
    from stored results (``restore``), so a crashed job resumes where it stopped. It may
    return fewer candidates than asked for (none when it has nothing more to try).

    Constructor options come from ``strategy.options`` in the spec; unknown options are
    a ``TypeError`` that the caller reports against that field.
    """

    name: ClassVar[str]
    #: True when the strategy reads score statistics (``context``); the controller then
    #: builds them from the cached scores.
    uses_context: ClassVar[bool] = False

    def __init__(
        self, space: SearchSpace, *, seed: int = 0, budget: int = 64, context: SearchContext | None = None
    ) -> None:
        self.space = space
        self.seed = seed
        self.budget = budget
        self.context = context
        self.asked = 0
        self._warm: list[tuple[float, ...]] = []

    @abstractmethod
    def _propose(self, index: int) -> Candidate | None:
        """The ``index``-th proposal (0-based over the job), or None when exhausted."""

    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        while len(out) < n:
            if self._warm:
                out.append(Candidate(self._warm.pop(0), origin="warm-start"))
                self.asked += 1
                continue
            cand = self._propose(self.asked)
            if cand is None:
                break
            self.asked += 1
            out.append(cand)
        return out

    def tell(self, results: Sequence[TrialResult]) -> None:  # noqa: B027 - optional hook
        """Learn from finished trials. Failed trials arrive too (``result.ok`` is False)."""

    def warm_start(self, allocations: Sequence[Sequence[float]]) -> None:
        """Evaluate these allocations first: projected onto the budget in budget mode;
        in Pareto mode clipped to the bounds but not snapped to the grid, so a previous
        run's front (often off the grid after projection) is re-evaluated exactly."""
        sp = self.space
        for a in allocations:
            if len(a) != sp.dim:
                raise ValueError(f"warm-start allocation has {len(a)} entries; the space has {sp.dim} layers")
            if sp.target is None:
                self._warm.append(tuple(min(max(float(s), sp.lo), sp.hi) for s in a))
            else:
                self._warm.append(tuple(sp.project(a)))

    def warm_start_named(self, items: Sequence[Any], levels: int | Sequence[float] = 5) -> None:
        """Warm start from spec values: ``"uniform"`` (in Pareto mode at ``levels``: these
        overall sparsities, or that many evenly across the bounds), ``"owl"`` (needs
        ``context``), or an explicit allocation (a list of per-layer fractions)."""
        sp = self.space
        if sp.target is not None:
            targets = [sp.target]
        elif isinstance(levels, int):
            targets = list(np.linspace(sp.lo, sp.hi, levels + 1)[1:])
        else:
            targets = list(levels)
        for item in items:
            if isinstance(item, str):
                if item not in ("uniform", "owl"):
                    raise ValueError(
                        f"strategy.options.warm_start entries must be 'uniform', 'owl' or a list of "
                        f"{sp.dim} sparsities; got {item!r}"
                    )
                for t in targets:
                    shape = [t] * sp.dim if item == "uniform" else owl_allocation(sp, self.context, t)
                    self._warm.append(tuple(sp.project(shape, target=t)))
            else:
                self.warm_start([list(item)])

    def restore(self, results: Sequence[TrialResult]) -> None:
        """Rebuild state from a job's stored trials (in trial order) after a restart."""
        self.asked = len(results)
        self._warm = self._warm[len(results):]
        self.tell(results)


def owl_allocation(
    space: SearchSpace, context: SearchContext | None, target: float, m: float = 5.0, lam: float = 0.08
) -> list[float]:
    """OWL's per-layer sparsity proposal (before exact projection): blocks with more
    outliers (weights scoring above ``m`` times their block's mean) keep more weights;
    sparsities spread over ``target ± lam``."""
    if context is None or not context.stats:
        raise ValueError("OWL needs score statistics (context); build the strategy through the controller")
    ratio = np.asarray(context.block_outlier_ratios(space, m))
    span = ratio.max() - ratio.min()
    scaled = (ratio - ratio.min()) / span * 2 * lam if span > 0 else np.zeros_like(ratio)
    density = scaled - scaled.mean() + (1.0 - target)
    return [float(v) for v in 1.0 - density]


__all__ = [
    "THRESHOLDS", "Candidate", "LayerStats", "SearchContext", "Strategy", "TrialResult", "TrialState",
    "owl_allocation",
]
