"""The uniform baseline: the same sparsity in every layer."""

from __future__ import annotations

from prunetune.search.base import Candidate, Strategy


class UniformSweep(Strategy):
    """Budget mode: the single uniform allocation at the target (then exhausted).
    Pareto mode: ``budget`` levels evenly spaced over ``[min, max]`` of the space."""

    name = "uniform"

    def _propose(self, index: int) -> Candidate | None:
        sp = self.space
        if sp.target is not None:
            if index > 0:
                return None
            level = sp.target
        else:
            if index >= self.budget:
                return None
            span = sp.hi - sp.lo
            level = sp.lo + span * (index + 1) / self.budget if self.budget > 1 else sp.hi
            level = min(level, sp.hi)
        return Candidate(tuple(sp.project([level] * sp.dim, target=level)), origin="uniform", info={"level": level})
