"""Non-dominated sorting and hypervolume on hand-checked points."""

from __future__ import annotations

import itertools

import pytest

from prunetune.pareto import best_at_sizes, hypervolume, non_dominated, thin


def test_non_dominated_keeps_the_staircase() -> None:
    # (quality up, size down)
    pts = [(0.9, 100.0), (0.8, 50.0), (0.85, 120.0), (0.5, 10.0), (0.8, 60.0), (0.95, 200.0)]
    front = non_dominated(pts)
    assert [pts[i] for i in front] == [(0.5, 10.0), (0.8, 50.0), (0.9, 100.0), (0.95, 200.0)]


def test_duplicates_keep_one() -> None:
    assert non_dominated([(0.5, 1.0), (0.5, 1.0)]) == [0]


def test_hypervolume_of_a_staircase() -> None:
    pts = [(0.5, 10.0), (0.8, 50.0)]
    # reference: quality 0, size 100 -> 0.5*90 + 0.3*50
    assert hypervolume(pts, (0.0, 100.0)) == pytest.approx(0.5 * 90 + 0.3 * 50)


def test_hypervolume_ignores_points_beyond_reference_and_dominated_ones() -> None:
    base = hypervolume([(0.5, 10.0)], (0.0, 100.0))
    assert hypervolume([(0.5, 10.0), (0.4, 20.0), (0.9, 150.0), (-0.1, 5.0)], (0.0, 100.0)) == pytest.approx(base)
    assert hypervolume([], (0.0, 1.0)) == 0.0


def test_best_at_sizes_reads_the_front_at_that_size_or_smaller() -> None:
    pts = [(0.5, 10.0), (0.8, 50.0), (0.9, 100.0)]
    assert best_at_sizes(pts, [5.0, 10.0, 60.0, 1000.0]) == [None, 0, 1, 2]


def test_thin_keeps_the_best_at_each_size_then_the_largest_hypervolume_gains() -> None:
    # A dense staircase: quality rises with size.
    pts = [(i / 20, float(i)) for i in range(1, 21)]
    kept = thin(pts, keep_sizes=[7.5, 13.0], limit=5)
    assert len(kept) == 5
    assert 6 in kept and 12 in kept  # sizes 7 and 13: the best at 7.5 and at 13 or smaller
    assert kept == sorted(kept, key=lambda i: pts[i][1])
    # Spread: the other three are not bunched beside the kept ones.
    sizes = sorted(pts[i][1] for i in kept)
    assert min(b - a for a, b in itertools.pairwise(sizes)) >= 2
    # Small fronts are kept whole.
    assert thin(pts[:3], keep_sizes=[2.0], limit=5) == [0, 1, 2]
