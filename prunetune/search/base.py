"""The ask/tell contract every search strategy follows, and the records it exchanges."""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prunetune.spaces.space import SearchSpace


@dataclass(frozen=True)
class Candidate:
    """A per-layer allocation to evaluate.

    Attributes:
        sparsities: one fraction per layer of the space, in the space's layer order.
        origin: how it was made ("random", "uniform", "mutation", "warm-start", ...).
        info: small, JSON-friendly details a strategy wants recorded with the trial.
        fidelity: fraction of the search split to score it on (multi-fidelity screening);
            only full-fidelity (1.0) results make the Pareto front.
    """

    sparsities: tuple[float, ...]
    origin: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    fidelity: float = 1.0


class TrialState(enum.Enum):
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class TrialResult:
    """What came of evaluating a candidate.

    ``quality`` is the task's quality metric on the search split (higher is better);
    ``size`` the model's nonzero parameters. Both are None for a failed trial, whose
    ``error`` says why.
    """

    number: int
    candidate: Candidate
    state: TrialState
    quality: float | None = None
    size: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.state is TrialState.COMPLETE
            and self.quality is not None
            and math.isfinite(self.quality)
        )


class Strategy(ABC):
    """Proposes allocations (``ask``) and learns from results (``tell``).

    A strategy must be reproducible from ``seed`` and must be able to rebuild its state
    from stored results (``restore``), so a crashed job resumes where it stopped. It may
    return fewer candidates than asked for (none when it has nothing more to try).

    Constructor options come from ``strategy.options`` in the spec; unknown options are
    a ``TypeError`` that the caller reports against that field.
    """

    name: ClassVar[str]

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 64) -> None:
        self.space = space
        self.seed = seed
        self.budget = budget
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
        """Evaluate these allocations first (projected onto the budget in budget mode)."""
        for a in allocations:
            if len(a) != self.space.dim:
                raise ValueError(f"warm-start allocation has {len(a)} entries; the space has {self.space.dim} layers")
            self._warm.append(tuple(self.space.project(a)))

    def restore(self, results: Sequence[TrialResult]) -> None:
        """Rebuild state from a job's stored trials (in trial order) after a restart."""
        self.asked = len(results)
        self._warm = self._warm[len(results):]
        self.tell(results)
