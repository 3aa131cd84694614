"""The records a search exchanges and the store keeps: candidates, trial results and
their states. Dependency-free, so the store, the search and the workers all read them
without importing one another (``prunetune.search.base`` re-exports them)."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# The data splits a task scores on (disjoint; REPORT is held out from the search).
Split = Literal["calibration", "search", "report", "validation"]


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


def check_fraction(fraction: float) -> float:
    """Validate a fidelity fraction (``Candidate.fidelity``: in (0, 1])."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fidelity fraction must be in (0, 1]; got {fraction}")
    return float(fraction)


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


__all__ = ["Candidate", "Split", "TrialResult", "TrialState", "check_fraction"]
