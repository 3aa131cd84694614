"""Executors that evaluate on a workbench: in this process (``--workers 0``), and the
failure handling every executor shares. The contract they implement is
:mod:`prunetune.search.executor`."""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Sequence

from prunetune.engine.workbench import Workbench
from prunetune.evaluators.evaluator import Evaluator
from prunetune.evaluators.tasks import Split
from prunetune.search.executor import Executor, Outcome


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
