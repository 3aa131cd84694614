"""Random allocations: the floor every other strategy must beat."""

from __future__ import annotations

import numpy as np

from prunetune.errors import OptionError
from prunetune.search.base import Candidate, Strategy
from prunetune.spaces.space import SearchSpace


class RandomSearch(Strategy):
    """Independent random allocations.

    Budget mode: per-layer sparsities drawn uniformly within bounds, projected exactly
    onto the target. Pareto mode: an overall sparsity drawn uniformly within bounds, then
    per-layer noise of ``spread`` around it, projected exactly onto that sparsity, so the
    trials cover the whole size range.

    Each proposal comes from its own generator seeded by ``(seed, index)``, so a resumed
    job continues the same sequence without replaying it.
    """

    name = "random"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 64, spread: float = 0.15) -> None:
        super().__init__(space, seed=seed, budget=budget)
        if not 0.0 <= spread <= 1.0:
            raise OptionError("spread", spread, "must be in [0, 1]")
        self.spread = spread

    def _propose(self, index: int) -> Candidate:
        rng = np.random.default_rng([self.seed, index])
        sp = self.space
        if sp.target is not None:
            proposal = rng.uniform(sp.lo, sp.hi, sp.dim)
            return Candidate(tuple(sp.project(proposal)), origin="random")
        level = float(rng.uniform(sp.lo, sp.hi))
        proposal = level + rng.normal(0.0, self.spread, sp.dim)
        return Candidate(tuple(sp.project(proposal, target=level)), origin="random", info={"level": level})
