"""Pareto utilities over (quality to maximise, size to minimise) points."""

from __future__ import annotations

from collections.abc import Sequence


def non_dominated(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point dominates (higher-or-equal quality and
    lower-or-equal size, strictly better in one), sorted by size. Duplicates keep the first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        q = points[i][0]
        if q > best:
            front.append(i)
            best = q
    return front


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` = (worst quality, largest size).

    Points worse than the reference in either coordinate add nothing.
    """
    q_ref, s_ref = reference
    kept = [(q, s) for q, s in points if q > q_ref and s < s_ref]
    area = 0.0
    best_q = q_ref
    for q, s in sorted(kept, key=lambda p: (p[1], -p[0])):
        if q > best_q:
            area += (q - best_q) * (s_ref - s)
            best_q = q
    return area
