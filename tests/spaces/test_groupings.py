"""Groupings: the shapes they produce, encode/decode, and the exact budget."""

from __future__ import annotations

import numpy as np
import pytest
from search.synthetic import make_space

from prunetune.spaces.groupings import GROUPINGS, make_grouping


def test_dimensions_of_each_grouping() -> None:
    space = make_space(0.6, blocks=4)  # 4 blocks x 6 types
    dims = {kind: make_grouping(space, kind, knots=3).dim for kind in GROUPINGS}
    assert dims == {"per-layer": 24, "per-block": 4, "per-type": 6, "block+type": 10, "depth": 3}


@pytest.mark.parametrize("kind", GROUPINGS)
def test_decode_is_exact_on_the_budget(kind: str) -> None:
    space = make_space(0.6)
    g = make_grouping(space, kind)
    rng = np.random.default_rng(0)
    for _ in range(10):
        s = g.decode(space, rng.uniform(-0.3, 0.3, g.dim))
        pruned = sum(round(a * n) for a, n in zip(s, space.numels, strict=True))
        assert pruned == round(0.6 * space.prunable_params)
        assert all(space.lo <= a <= space.hi for a in s)


def test_per_block_offsets_survive_a_round_trip() -> None:
    space = make_space(0.5)
    g = make_grouping(space, "per-block")
    x = [0.1, 0.05, -0.05, -0.1]  # sums to zero with equal block sizes: no shift needed
    s = g.decode(space, x)
    assert np.allclose(g.encode(space, s, target=0.5), x, atol=0.01)
    blocks = [np.mean([a for a, layer in zip(s, space.layers, strict=True) if layer.block == b]) for b in range(4)]
    assert blocks == sorted(blocks, reverse=True)  # block 0 most pruned, as asked


def test_depth_profile_is_linear_between_knots() -> None:
    space = make_space(0.5, blocks=5)
    g = make_grouping(space, "depth", knots=2)
    s = g.decode(space, [0.2, -0.2])  # 0.7 at the first block, 0.3 at the last
    by_block = {layer.block: a for a, layer in zip(s, space.layers, strict=True)}
    assert by_block[0] == pytest.approx(0.7, abs=0.01)
    assert by_block[2] == pytest.approx(0.5, abs=0.01)
    assert by_block[4] == pytest.approx(0.3, abs=0.01)


def test_pareto_mode_decodes_around_a_given_level_on_the_grid() -> None:
    space = make_space(None)
    g = make_grouping(space, "per-type")
    s = g.decode(space, [0.0] * g.dim, target=0.4)
    assert space.overall_sparsity(s) == pytest.approx(0.4, abs=1e-3)


def test_bad_grouping_and_knots_name_the_option() -> None:
    space = make_space(0.6)
    with pytest.raises(ValueError, match=r"option 'grouping': got 'per-head'; must be one of .*per-block"):
        make_grouping(space, "per-head")
    with pytest.raises(ValueError, match=r"option 'knots': got 1; must be an integer >= 2"):
        make_grouping(space, "depth", knots=1)
    with pytest.raises(ValueError, match="has 4 groups; got 3 values"):
        make_grouping(space, "per-block").decode(space, [0.0, 0.0, 0.0])
