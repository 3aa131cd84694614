"""Exact projection of a per-layer sparsity proposal onto an overall budget.

The budget is parameter-weighted: ``sum(k_i) == round(target * sum(n_i))`` where ``k_i``
is the number of weights pruned in layer ``i`` out of ``n_i``. The projection shifts every
proposal by one common amount (so the shape of the proposal survives), clips to the
per-layer bounds, and then hands out the last few weights by largest remainder, so the
total is met to the weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from prunetune.errors import BudgetError


def feasible_range(numels: Sequence[int], lo: Sequence[float], hi: Sequence[float]) -> tuple[float, float]:
    """Smallest and largest overall sparsity reachable within the per-layer bounds."""
    n = np.asarray(numels, dtype=np.float64)
    k_lo = sum(math.ceil(a * b - 1e-9) for a, b in zip(lo, numels, strict=True))
    k_hi = sum(math.floor(a * b + 1e-9) for a, b in zip(hi, numels, strict=True))
    return k_lo / n.sum(), k_hi / n.sum()


def project_counts(
    proposal: Sequence[float] | np.ndarray,
    numels: Sequence[int],
    target: float,
    lo: Sequence[float],
    hi: Sequence[float],
) -> list[int]:
    """Per-layer pruned counts ``k_i`` whose sum is exactly ``round(target * N)``.

    Args:
        proposal: desired per-layer sparsities (fractions; any real numbers).
        numels: weights per layer.
        target: overall sparsity, a fraction in [0, 1).
        lo, hi: per-layer bounds on sparsity (fractions).

    Raises:
        BudgetError: when the bounds cannot reach the target; the message gives the
            reachable range.
    """
    s = np.asarray(proposal, dtype=np.float64)
    n = np.asarray(numels, dtype=np.int64)
    lo_k = np.array([math.ceil(a * b - 1e-9) for a, b in zip(lo, n, strict=True)], dtype=np.int64)
    hi_k = np.array([math.floor(a * b + 1e-9) for a, b in zip(hi, n, strict=True)], dtype=np.int64)
    total = int(n.sum())
    want = round(target * total)
    # A target inside the real-valued bounds may still round past the integer ones
    # (each layer's bound is floored to whole weights): take the nearest reachable count.
    real_lo = sum(a * b for a, b in zip(lo, numels, strict=True)) / total
    real_hi = sum(a * b for a, b in zip(hi, numels, strict=True)) / total
    if real_lo - 1e-9 <= target <= real_hi + 1e-9:
        want = int(min(max(want, lo_k.sum()), hi_k.sum()))
    if not lo_k.sum() <= want <= hi_k.sum():
        low, high = lo_k.sum() / total, hi_k.sum() / total
        raise BudgetError(
            f"target sparsity {target} is not reachable within the per-layer bounds: "
            f"allowed overall sparsity is [{low:.4f}, {high:.4f}]; lower the target or raise space.max"
        )
    if not np.all(np.isfinite(s)):
        s = np.where(np.isfinite(s), s, target)

    def filled(shift: float) -> np.ndarray:
        return np.clip((s + shift) * n, lo_k, hi_k)

    a, b = -1.0 - s.max(), 1.0 - s.min() + 1.0
    for _ in range(100):  # bisection on the common shift; sum is monotone in it
        mid = 0.5 * (a + b)
        if filled(mid).sum() < want:
            a = mid
        else:
            b = mid
    exact = filled(b)
    k = np.clip(np.floor(exact).astype(np.int64), lo_k, hi_k)
    # Largest remainder: hand out (or take back) single weights until the sum is exact.
    rest = want - int(k.sum())
    frac = exact - k
    order = np.argsort(-frac if rest > 0 else frac, kind="stable")
    while rest != 0:
        moved = False
        for i in order:
            if rest > 0 and k[i] < hi_k[i]:
                k[i] += 1
                rest -= 1
                moved = True
            elif rest < 0 and k[i] > lo_k[i]:
                k[i] -= 1
                rest += 1
                moved = True
            if rest == 0:
                break
        if not moved:  # cannot happen after the feasibility check
            raise BudgetError("internal: budget projection could not place every weight")
    return [int(x) for x in k]


def project_sparsities(
    proposal: Sequence[float] | np.ndarray,
    numels: Sequence[int],
    target: float,
    lo: Sequence[float],
    hi: Sequence[float],
) -> list[float]:
    """Like :func:`project_counts`, returned as fractions ``k_i / n_i``."""
    counts = project_counts(proposal, numels, target, lo, hi)
    return [k / n for k, n in zip(counts, numels, strict=True)]
