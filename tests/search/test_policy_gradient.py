"""Policy gradient: learns the direction of a known objective; weights persist."""

from __future__ import annotations

import numpy as np
import pytest
from search.synthetic import drive, make_context, make_space

from prunetune.search.strategies.policy_gradient import PolicyGradient, layer_features


def block_means(space, sparsities):  # type: ignore[no-untyped-def]
    s = np.asarray(sparsities)
    return [float(s[[layer.block == b for layer in space.layers]].mean()) for b in range(4)]


def test_it_learns_to_spare_the_sensitive_deep_blocks() -> None:
    space = make_space(0.6)
    strategy = PolicyGradient(space, seed=0, context=make_context(space), lr=0.1)
    drive(strategy, 80)
    # The policy mean (no noise), projected: the deepest block is pruned less than the first.
    mean = strategy._mean(0.6).detach().numpy()
    means = block_means(space, space.project(0.6 + mean))
    assert means[0] > means[3] + 0.02


def test_features_cover_depth_type_size_and_outliers() -> None:
    space = make_space(0.6)
    f = layer_features(space, make_context(space))
    assert f.shape == (space.dim, 1 + 9 + 2)
    assert f[0, 0] == 0.0 and f[-1, 0] == 1.0
    assert np.std(f[:, -1]) > 0  # outlier ratios differ by block


def test_weights_are_saved_and_a_later_job_starts_from_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    space = make_space(0.6)
    path = tmp_path / "policy.pt"
    first = PolicyGradient(space, seed=0, policy_path=str(path), lr=0.1)
    drive(first, 24)
    assert path.is_file()
    later = PolicyGradient(space, seed=7, policy_path=str(path))
    fresh = PolicyGradient(space, seed=7)
    np.testing.assert_allclose(later._mean(0.6).detach().numpy(), first._mean(0.6).detach().numpy(), atol=1e-6)
    assert not np.allclose(fresh._mean(0.6).detach().numpy(), first._mean(0.6).detach().numpy())


def test_pareto_mode_samples_budgets() -> None:
    space = make_space(None)
    results = drive(PolicyGradient(space, seed=0), 20)
    budgets = [r.candidate.info["budget"] for r in results if "budget" in r.candidate.info]
    assert max(budgets) - min(budgets) > 0.3
    for r in results:
        if "budget" in r.candidate.info:
            assert space.overall_sparsity(r.candidate.sparsities) == pytest.approx(r.candidate.info["budget"], abs=1e-3)


def test_bad_options_name_the_option() -> None:
    with pytest.raises(ValueError, match=r"option 'batch': got 1; must be an integer >= 2"):
        PolicyGradient(make_space(0.6), batch=1)
    with pytest.raises(ValueError, match=r"option 'sigma': got 0.9; must be in \(0, 0.5\]"):
        PolicyGradient(make_space(0.6), sigma=0.9)
