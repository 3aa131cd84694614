"""Exact budget projection."""

from __future__ import annotations

import numpy as np
import pytest

from prunetune.errors import BudgetError
from prunetune.spaces.budget import feasible_range, project_counts, project_sparsities


def test_counts_sum_exactly_to_the_target() -> None:
    numels = [147456, 147456, 589824, 589824, 1000, 7]
    rng = np.random.default_rng(0)
    for target in (0.1, 0.5, 0.7, 0.9):
        for _ in range(20):
            k = project_counts(rng.uniform(-1, 2, len(numels)), numels, target, [0.0] * 6, [0.95] * 6)
            assert sum(k) == round(target * sum(numels))
            assert all(0 <= a <= int(0.95 * n) for a, n in zip(k, numels, strict=True))


def test_the_shape_of_a_proposal_survives() -> None:
    s = project_sparsities([0.2, 0.4, 0.6], [100, 100, 100], 0.5, [0.0] * 3, [0.95] * 3)
    assert s == pytest.approx([0.3, 0.5, 0.7], abs=0.011)


def test_a_target_at_the_cap_rounds_to_the_reachable_count() -> None:
    # 0.95 of each layer floors to whole weights; the exact target rounds above that sum.
    numels = [21, 21, 21]
    hi = [0.95] * 3
    k = project_counts([0.95] * 3, numels, 0.95 - 1e-12, [0.0] * 3, hi)
    assert k == [19, 19, 19]
    assert feasible_range(numels, [0.0] * 3, hi)[1] == pytest.approx(57 / 63)


def test_unreachable_target_names_the_range() -> None:
    with pytest.raises(BudgetError, match=r"allowed overall sparsity is \[0.0000, 0.5000\]"):
        project_counts([0.5, 0.5], [10, 10], 0.8, [0.0, 0.0], [0.5, 0.5])


def test_non_finite_proposals_are_treated_as_the_target() -> None:
    k = project_counts([float("nan"), 0.5, float("inf")], [10, 10, 10], 0.5, [0.0] * 3, [0.9] * 3)
    assert sum(k) == 15
