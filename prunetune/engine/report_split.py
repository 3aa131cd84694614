"""Scoring on the REPORT split: the held-out split that the front points and the
baselines are published on, never seen by the search."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from prunetune.search.executor import Executor, Outcome

# Give up on an executor that returns nothing for this long (a hung worker pool).
_HUNG_SECONDS = 24 * 3600


def score_on_report(executor: Executor, allocations: Mapping[int, Sequence[float]]) -> dict[int, Outcome]:
    """Evaluate each numbered allocation on the REPORT split; ``{number: outcome}`` in
    the order they finished. A number the executor never returned is missing."""
    for number, sparsities in allocations.items():
        executor.submit(number, sparsities, split="report")
    got: dict[int, Outcome] = {}
    start = time.perf_counter()
    while executor.pending or len(got) < len(allocations):
        outs = executor.wait()
        if not outs:
            break
        for o in outs:
            got[o.number] = o
        if time.perf_counter() - start > _HUNG_SECONDS:  # pragma: no cover - a hung executor
            break
    return got
