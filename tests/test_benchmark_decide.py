"""benchmarks/decide_defaults.py: the decision is the best mean over seeds, one option changed at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import decide_defaults as dd


def test_the_best_mean_wins_not_the_best_single_seed() -> None:
    # The default has the best single seed (0.30) but the worse mean (0.37 against 0.35).
    verdict = dd.decide({"[1.0]": [0.30, 0.40, 0.41], "[0.5, 1.0, 2.0]": [0.35, 0.35, 0.35]}, "[1.0]")
    assert verdict["decision"] == "[0.5, 1.0, 2.0]"
    assert not verdict["default_stands"]
    assert verdict["means"]["[1.0]"] == pytest.approx(0.37)


def test_the_default_stands_when_it_has_the_best_mean_or_ties() -> None:
    assert dd.decide({'"per-block"': [0.36, 0.38], '"block+type"': [0.37, 0.38]}, '"per-block"')["default_stands"]
    tie = dd.decide({'"block+type"': [0.36, 0.38], '"per-block"': [0.38, 0.36]}, '"per-block"')
    assert tie["decision"] == '"per-block"' and tie["default_stands"]


def test_decide_refuses_a_default_without_scores() -> None:
    with pytest.raises(ValueError, match="default"):
        dd.decide({"a": [0.3]}, "b")
    with pytest.raises(ValueError, match="scores"):
        dd.decide({"a": [0.3], "b": []}, "a")


def test_configurations_change_one_option_at_a_time_and_pass_defaults_explicitly() -> None:
    contests = (dd.Contest("evolutionary", "step_scales", ([1.0], [0.5, 1.0, 2.0])),
                dd.Contest("evolutionary", "partitions", (["layer", "block"], ["layer", "block", "kind"])),
                dd.Contest("bayesian", "grouping", ("per-block", "block+type")))
    defaults = {("evolutionary", "step_scales"): [1.0], ("evolutionary", "partitions"): ["layer", "block"],
                ("bayesian", "grouping"): "per-block"}
    configs = dd.configurations(contests, defaults)
    assert [c["options"] for c in configs] == [
        {"step_scales": [1.0], "partitions": ["layer", "block"]},
        {"step_scales": [0.5, 1.0, 2.0], "partitions": ["layer", "block"]},
        {"step_scales": [1.0], "partitions": ["layer", "block", "kind"]},
        {"grouping": "per-block"},
        {"grouping": "block+type"},
    ]
    assert dd.config_for(configs, contests[0], [1.0], [1.0]) == "evolutionary-defaults"
    assert dd.config_for(configs, contests[1], ["layer", "block", "kind"], ["layer", "block"]) == \
        'evolutionary-partitions=["layer", "block", "kind"]'


def test_after_a_default_changes_the_old_default_is_the_alternative() -> None:
    contest = dd.Contest("bayesian", "grouping", ("per-block", "block+type"))
    configs = dd.configurations([contest], {("bayesian", "grouping"): "block+type"})
    assert [c["options"]["grouping"] for c in configs] == ["block+type", "per-block"]
