"""Non-dominated sorting and hypervolume on hand-checked points."""

from __future__ import annotations

import pytest

from prunetune.search.pareto import hypervolume, non_dominated


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
