"""Executors run evaluations; the controller only submits and collects.

The contract: ``submit`` hands over a numbered allocation and returns at once (it may
queue); ``wait`` blocks until at least one submitted evaluation has finished and returns
every finished one. Each submitted number comes back exactly once, as metrics or as an
error string; an executor never raises for a failed evaluation.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prunetune.evaluators.evaluator import Evaluator
from prunetune.evaluators.tasks import Split
from prunetune.workbench import Workbench


@dataclass(frozen=True)
class Outcome:
    """One finished evaluation: ``metrics`` when it succeeded, else ``error``."""

    number: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


class Executor(ABC):
    #: how many evaluations may be in flight at once (the controller keeps it full)
    capacity: int = 1

    @abstractmethod
    def submit(
        self, number: int, sparsities: Sequence[float], split: Split = "search", fidelity: float = 1.0
    ) -> None:
        """Queue an evaluation on ``split`` (``fidelity``: fraction of it to use)."""

    @abstractmethod
    def wait(self) -> list[Outcome]: ...

    @property
    @abstractmethod
    def pending(self) -> int: ...

    def close(self) -> None:  # noqa: B027 - nothing to release for in-process
        """Release workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_one(
    bench: Workbench, number: int, sparsities: Sequence[float], split: Split, fidelity: float = 1.0
) -> Outcome:
    """Evaluate on a workbench, turning any exception into a failed outcome with its reason."""
    return evaluate_outcome(bench.evaluator, number, sparsities, split, fidelity)


def evaluate_outcome(
    evaluator: Evaluator, number: int, sparsities: Sequence[float], split: Split, fidelity: float = 1.0
) -> Outcome:
    """``run_one`` for a bare evaluator (what a worker actor holds)."""
    try:
        return Outcome(number, evaluator.evaluate(sparsities, split, fidelity))
    except Exception as err:  # the trial fails, the job goes on
        last = traceback.extract_tb(err.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        return Outcome(number, error=f"{type(err).__name__}: {err}{where}")


class InProcessExecutor(Executor):
    """Evaluates in the calling process, one at a time (``--workers 0``)."""

    capacity = 1

    def __init__(self, bench: Workbench) -> None:
        self.bench = bench
        self._queue: deque[tuple[int, tuple[float, ...], Split, float]] = deque()

    def submit(
        self, number: int, sparsities: Sequence[float], split: Split = "search", fidelity: float = 1.0
    ) -> None:
        self._queue.append((number, tuple(sparsities), split, fidelity))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def wait(self) -> list[Outcome]:
        if not self._queue:
            return []
        number, sparsities, split, fidelity = self._queue.popleft()
        return [run_one(self.bench, number, sparsities, split, fidelity)]
