"""benchmarks/decide_defaults.py: the decision is the best mean over seeds, one option changed at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import decide_defaults as dd


def test_the_best_mean_wins_when_it_leads_by_more_than_the_seed_spread() -> None:
    # The default has the best single seed (0.30) but the worse mean (0.37 against 0.33);
    # the lead (0.04) is inside the default's half-range (0.055), so it is a tie. With the
    # default's seeds close together (half-range 0.01) the same lead decides.
    verdict = dd.decide({"[1.0]": [0.30, 0.40, 0.41], "[0.5, 1.0, 2.0]": [0.32, 0.33, 0.34]}, "[1.0]")
    assert verdict["means"]["[1.0]"] == pytest.approx(0.37)
    assert verdict["spreads"]["[1.0]"] == pytest.approx(0.055)
    assert verdict["decision"] == "[1.0]" and verdict["default_stands"]  # 0.04 <= 0.055: a tie
    clear = dd.decide({"[1.0]": [0.36, 0.37, 0.38], "[0.5, 1.0, 2.0]": [0.32, 0.33, 0.34]}, "[1.0]")
    assert clear["decision"] == "[0.5, 1.0, 2.0]" and not clear["default_stands"]


def test_a_lead_inside_the_seed_spread_keeps_the_default() -> None:
    # 0.3670 against 0.3649: a lead of 0.0021 with half-ranges of 0.00215 and 0.0013.
    verdict = dd.decide({"[1.0]": [0.3654, 0.3697, 0.3660], "[0.5, 1.0, 2.0]": [0.3662, 0.3636, 0.3650]}, "[1.0]")
    assert verdict["default_stands"] and verdict["decision"] == "[1.0]"


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


def test_redecide_applies_the_rule_to_recorded_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    contest = dd.CONTESTS[2]  # bayesian grouping
    configs = dd.configurations([contest], {("bayesian", "grouping"): "per-block"})
    runs = [{"config": configs[0]["name"], "one_minus_fidelity": x, "wall_seconds": 1.0} for x in (0.40, 0.41, 0.42)]
    runs += [{"config": configs[1]["name"], "one_minus_fidelity": x, "wall_seconds": 1.0} for x in (0.30, 0.31, 0.32)]
    recorded = {"configs": configs, "runs": runs,
                "decisions": [{"strategy": "bayesian", "option": "grouping", "current_default": "per-block"}]}
    path = tmp_path / "decide.json"
    path.write_text(json.dumps(recorded))
    monkeypatch.setattr(dd, "CONTESTS", (contest,))
    (d,) = dd.redecide(path)["decisions"]
    assert d["decision"] == "block+type" and not d["default_stands"] and d["rule"] == dd.RULE
    assert [v["mean"] for v in d["values"]] == pytest.approx([0.41, 0.31])
