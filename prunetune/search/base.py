"""The ask/tell contract every search strategy follows, and the records it exchanges
(defined in :mod:`prunetune.records`, re-exported here)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from prunetune.errors import OptionError
from prunetune.records import Candidate, TrialResult, TrialState
from prunetune.search.strategies.owl_stats import LayerStats, owl_allocation
from prunetune.spaces.space import SearchSpace


@dataclass(frozen=True)
class SearchContext:
    """What a strategy may know about the model besides the space: per-layer score
    statistics (see :mod:`prunetune.search.strategies.owl_stats`), in the space's layer
    order. Built from the cached scores, so strategies never touch the model."""

    stats: tuple[LayerStats, ...] = ()


class Strategy(ABC):
    """Proposes allocations (``ask``) and learns from results (``tell``).

    A strategy must be reproducible from ``seed`` and must be able to rebuild its state
    from stored results (``restore``), so a crashed job resumes where it stopped. It may
    return fewer candidates than asked for (none when it has nothing more to try).

    Constructor options come from ``strategy.options`` in the spec. A strategy names only
    its own option when it rejects one (:class:`~prunetune.errors.OptionError`, or a
    ``TypeError`` for an unknown option); :func:`prunetune.search.controller.build_strategy`
    reports it against the spec's ``strategy.options.<option>``.
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
                    raise OptionError("warm_start", item,
                                      f"each entry must be 'uniform', 'owl' or a list of {sp.dim} sparsities")
                for t in targets:
                    shape = [t] * sp.dim if item == "uniform" else owl_allocation(sp, self.context.stats if self.context else (), t)
                    self._warm.append(tuple(sp.project(shape, target=t)))
            else:
                self.warm_start([list(item)])

    def restore(self, results: Sequence[TrialResult]) -> None:
        """Rebuild state from a job's stored trials (in trial order) after a restart."""
        self.asked = len(results)
        self._warm = self._warm[len(results):]
        self.tell(results)


__all__ = ["Candidate", "SearchContext", "Strategy", "TrialResult", "TrialState"]
