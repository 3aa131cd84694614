"""The uniform baseline: the same sparsity in every layer."""

from __future__ import annotations

from prunetune.search.base import Candidate, Strategy
from prunetune.spaces.space import SearchSpace


def sweep_level(space: SearchSpace, index: int, budget: int) -> float | None:
    """The overall sparsity of the ``index``-th proposal of a sweep: the target in budget
    mode (once), else ``budget`` levels evenly spaced over ``(min, max]``; None when done."""
    if space.target is not None:
        return space.target if index == 0 else None
    if index >= budget:
        return None
    return min(space.lo + (space.hi - space.lo) * (index + 1) / budget, space.hi)


class UniformSweep(Strategy):
    """Budget mode: the single uniform allocation at the target (then exhausted).
    Pareto mode: ``budget`` levels evenly spaced over ``[min, max]`` of the space."""

    name = "uniform"

    def _propose(self, index: int) -> Candidate | None:
        sp = self.space
        level = sweep_level(sp, index, self.budget)
        if level is None:
            return None
        return Candidate(tuple(sp.project([level] * sp.dim, target=level)), origin="uniform", info={"level": level})
