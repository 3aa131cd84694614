"""Pareto utilities over (quality to maximise, size to minimise) points; the front also
over more costs (size and latency). Dependency-free, so the store, the search and the
report all use them."""

from __future__ import annotations

from collections.abc import Sequence


def non_dominated(points: Sequence[tuple[float, ...]]) -> list[int]:
    """Indices of points no other point dominates, sorted by the second coordinate.

    A point is (quality to maximise, then one or more costs to minimise: size, latency).
    Another dominates it when it is at least as good in every coordinate and strictly
    better in one. Duplicates keep the first.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    if all(len(p) == 2 for p in points):
        front: list[int] = []
        best = float("-inf")
        for i in order:
            q = points[i][0]
            if q > best:
                front.append(i)
                best = q
        return front
    kept: list[int] = []
    # Lexicographic on (cost, -quality, other costs): whatever dominates i comes first.
    for i in sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], *points[i][2:], i)):
        p = points[i]
        if not any(points[j][0] >= p[0] and all(a <= b for a, b in zip(points[j][1:], p[1:], strict=True))
                   for j in kept):
            kept.append(i)
    return kept


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


def thin(points: Sequence[tuple[float, float]], keep_sizes: Sequence[float], limit: int) -> list[int]:
    """Indices of at most ``limit`` front ``points`` (quality, size), in size order.

    First, for each size of ``keep_sizes``, the best point at that size or smaller (what a
    user reads off the front there); then, one at a time, the point that adds the most
    hypervolume to those chosen, against a reference just beyond the front's worst quality
    and largest size (so its ends count too, and a point far from the chosen ones adds
    more than one beside them).
    """
    if len(points) <= limit:
        return sorted(range(len(points)), key=lambda i: points[i][1])
    chosen = list(dict.fromkeys(i for i in best_at_sizes(points, keep_sizes) if i is not None))[:limit]
    qs = [q for q, _ in points]
    ss = [s for _, s in points]
    reference = (min(qs) - 0.1 * (max(qs) - min(qs) or 1.0), max(ss) + 0.1 * (max(ss) - min(ss) or 1.0))
    while len(chosen) < limit:
        base = hypervolume([points[i] for i in chosen], reference)
        gains = [(hypervolume([points[i] for i in [*chosen, j]], reference) - base, -j)
                 for j in range(len(points)) if j not in chosen]
        chosen.append(-max(gains)[1])
    return sorted(chosen, key=lambda i: points[i][1])


def best_at_sizes(points: Sequence[tuple[float, float]], sizes: Sequence[float]) -> list[int | None]:
    """For each size, the index of the best-quality point at that size or smaller (what a
    user reads off a front there), None when no point is that small."""
    out: list[int | None] = []
    for size in sizes:
        fits = [i for i, (_, s) in enumerate(points) if s <= size]
        out.append(max(fits, key=lambda i: (points[i][0], -points[i][1])) if fits else None)
    return out
