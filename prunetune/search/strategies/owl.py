"""OWL (outlier-weighted layerwise sparsity, Yin et al. 2024) as a baseline strategy."""

from __future__ import annotations

from prunetune.errors import OptionError
from prunetune.search.base import Candidate, SearchContext, Strategy
from prunetune.search.strategies.owl_stats import owl_allocation
from prunetune.search.strategies.uniform import sweep_level
from prunetune.spaces.space import SearchSpace


class OWLBaseline(Strategy):
    """Blocks with a larger share of outlier weights (score above ``m`` times the block's
    mean score) are pruned less; sparsities span ``target ± lam`` before the exact budget
    projection.

    Budget mode: the single OWL allocation at the target (then exhausted). Pareto mode:
    ``budget`` overall levels evenly spaced over the space's bounds, each with OWL's shape.

    Options: ``m`` (outlier threshold, > 0; the paper's M, default 5) and ``lam`` (the
    paper's λ, in [0, 0.5], default 0.08).
    """

    name = "owl"
    uses_context = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        budget: int = 64,
        context: SearchContext | None = None,
        m: float = 5.0,
        lam: float = 0.08,
    ) -> None:
        super().__init__(space, seed=seed, budget=budget, context=context)
        if not m > 0:
            raise OptionError("m", m, "must be > 0")
        if not 0.0 <= lam <= 0.5:
            raise OptionError("lam", lam, "must be in [0, 0.5]")
        if context is None or not context.stats:
            raise ValueError("strategy 'owl' needs score statistics; run it through prunetune's controller")
        self.m, self.lam = m, lam

    def _propose(self, index: int) -> Candidate | None:
        sp = self.space
        level = sweep_level(sp, index, self.budget)
        if level is None:
            return None
        shape = owl_allocation(sp, self.context.stats if self.context else (), level, self.m, self.lam)
        return Candidate(tuple(sp.project(shape, target=level)), origin="owl", info={"level": level})
