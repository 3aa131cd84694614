"""The job spec: valid specs load; each rejection is one line naming field, value, allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import digits_spec_dict, minilm_spec_dict

from prunetune.errors import SpecError
from prunetune.spec import SearchSpec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("name", ["minilm.yaml", "digits.yaml"])
def test_examples_load(name: str) -> None:
    spec = SearchSpec.from_yaml(EXAMPLES / name)
    assert spec.budget.trials > 0
    assert spec.mode == "pareto"


def test_reconstruction_example_and_shorthands() -> None:
    spec = SearchSpec.from_yaml(EXAMPLES / "minilm-sparsegpt.yaml")
    assert spec.mode == "budget" and spec.space.reconstruction is not None
    assert spec.space.reconstruction.method == "sparsegpt" and spec.space.reconstruction.damping == 0.01
    base = minilm_spec_dict()
    plain = SearchSpec.from_dict(base)
    none = SearchSpec.from_dict({**base, "space": {**base["space"], "reconstruction": "none"}})
    assert none.space.reconstruction is None and none.digest() == plain.digest()  # old specs keep their hash
    full = SearchSpec.from_dict({**base, "space": {"reconstruction": {"method": "sparsegpt", "block_size": 64}}})
    assert full.space.reconstruction is not None and full.space.reconstruction.block_size == 64


@pytest.mark.parametrize(("space", "field", "says"), [
    ({"reconstruction": "obs"}, "space.reconstruction.method", "sparsegpt"),
    ({"reconstruction": {"damping": -1}}, "space.reconstruction.damping", "greater than 0"),
    ({"reconstruction": "sparsegpt", "granularity": "heads", "criterion": "magnitude"}, "space.reconstruction",
     "removes whole structures"),
])
def test_bad_reconstruction_names_the_field(space: dict, field: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        SearchSpec.from_dict({**minilm_spec_dict(), "space": space})
    assert f"'{field}'" in str(err.value) and says in str(err.value)


def test_defaults_and_budget_mode() -> None:
    spec = SearchSpec.from_dict(minilm_spec_dict(target={"sparsity": 0.7}))
    assert spec.mode == "budget"
    assert spec.space.criterion == "wanda"
    assert spec.space.groups == "row"
    assert spec.digest() == SearchSpec.from_dict(minilm_spec_dict(target={"sparsity": 0.7})).digest()


@pytest.mark.parametrize(
    ("change", "field", "value_text"),
    [
        ({"strategy": {"name": "annealing"}}, "strategy.name", "'annealing'"),
        ({"target": {"sparsity": 1.5}}, "target.sparsity", "1.5"),
        ({"model": {"path": "/nonexistent/my-bert"}}, "model.path", "/nonexistent/my-bert"),
        ({"space": {"max": 1.2}}, "space.max", "1.2"),
        ({"space": {"criterion": "vibes"}}, "space.criterion", "'vibes'"),
        ({"budget": {"trials": 0}}, "budget.trials", "0"),
        ({"task": {"kind": "embedding", "search": -3}}, "task.search", "-3"),
        ({"seed": "abc"}, "seed", "'abc'"),
        ({"strategy": {"name": "random", "optionz": {}}}, "strategy.optionz", ""),
    ],
)
def test_rejections_name_field_and_value(change: dict, field: str, value_text: str) -> None:
    with pytest.raises(SpecError) as info:
        SearchSpec.from_dict(minilm_spec_dict(**change))
    msg = str(info.value)
    assert info.value.field == field
    assert f"'{field}'" in msg and value_text in msg
    assert "\n" not in msg


def test_allowed_values_are_listed() -> None:
    with pytest.raises(SpecError) as info:
        SearchSpec.from_dict(minilm_spec_dict(strategy={"name": "annealing"}))
    assert "random" in str(info.value) and "uniform" in str(info.value)


def test_target_above_space_max_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"target\.sparsity 0\.8 is above space\.max 0\.5"):
        SearchSpec.from_dict(minilm_spec_dict(space={"max": 0.5}, target={"sparsity": 0.8}))


def test_model_must_name_exactly_one_source() -> None:
    with pytest.raises(SpecError, match="exactly one"):
        SearchSpec.from_dict(minilm_spec_dict(model={"source": "minilm", "factory": "a.b:c"}))


def test_task_must_fit_model() -> None:
    with pytest.raises(SpecError, match="classification"):
        SearchSpec.from_dict(digits_spec_dict(task={"kind": "embedding"}))


def test_yaml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        SearchSpec.from_yaml(bad)
    with pytest.raises(SpecError, match="no such file"):
        SearchSpec.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        SearchSpec.from_yaml(tmp_path / "list.yaml")


def test_front_levels_are_pareto_mode_and_checked() -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(target={"sparsities": [0.5, 0.7]}))
    assert spec.mode == "pareto" and spec.target is not None and spec.target.sparsities == (0.5, 0.7)
    assert SearchSpec.from_dict(digits_spec_dict(target={"sparsity": 0.5})).mode == "budget"
    for target, says in (
        ({"sparsities": [0.7, 0.5]}, "distinct and increasing"),
        ({"sparsities": [0.5, 1.2]}, "fraction in (0, 1)"),
        ({"sparsity": 0.5, "sparsities": [0.5]}, "give one of sparsity"),
        ({}, "give one of sparsity"),
    ):
        with pytest.raises(SpecError, match=r"target") as err:
            SearchSpec.from_dict(digits_spec_dict(target=target))
        assert says in str(err.value)
    with pytest.raises(SpecError, match=r"target.sparsities \[0.97\] lie outside"):
        SearchSpec.from_dict(digits_spec_dict(target={"sparsities": [0.5, 0.97]}))
    with pytest.raises(SpecError, match=r"task\.retrieval is for kind 'embedding'"):
        SearchSpec.from_dict(digits_spec_dict(task={"kind": "classification", "data": "digits", "retrieval": False}))
