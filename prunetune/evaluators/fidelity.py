"""Multi-fidelity: which examples a low-fidelity evaluation scores.

A fraction of a split is a fixed, representative subset: examples are ordered by length
and every ``n / k``-th is taken, so short and long examples keep their share (the first
few length-sorted batches would hold only the shortest texts, which prune differently).
The subset depends only on the split and the fraction, so every candidate screened at a
fraction is scored on the same examples and their scores compare.
"""

from __future__ import annotations

from collections.abc import Sequence

from prunetune.records import check_fraction


def subset_indices(lengths: Sequence[int], fraction: float) -> list[int]:
    """Indices (ascending) of the ``max(1, round(n * fraction))`` examples to score.

    Args:
        lengths: one length (tokens, words, or any size proxy) per example of the split.
        fraction: share of the split to keep, in (0, 1]; 1 keeps everything.
    """
    check_fraction(fraction)
    n = len(lengths)
    if fraction == 1.0 or n == 0:
        return list(range(n))
    k = max(1, min(n, round(n * fraction)))
    by_length = sorted(range(n), key=lambda i: (lengths[i], i))
    # The middle of each of k equal strata of the length order: systematic sampling.
    picked = {by_length[min(n - 1, int((j + 0.5) * n / k))] for j in range(k)}
    return sorted(picked)


__all__ = ["check_fraction", "subset_indices"]
