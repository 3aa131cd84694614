"""Fuzzed specs: whatever a user sends, parsing raises SpecError or returns a spec,
never another exception."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import digits_spec_dict, minilm_spec_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability.figures import record

from prunetune.errors import SpecError
from prunetune.spec import SearchSpec

pytestmark = pytest.mark.reliability  # thousands of generated cases: the CI reliability set

FIELDS = {
    "model": ["source", "path", "factory"],
    "task": ["kind", "data", "calibration", "search", "report", "batch_size", "quality", "max_length"],
    "space": ["granularity", "criterion", "grouping", "groups", "min", "max", "step", "include", "exclude"],
    "objectives": ["quality", "size"],
    "budget": ["trials"],
    "target": ["sparsity"],
    "strategy": ["name", "options"],
    "recovery": ["steps", "distill", "lr", "schedule"],
    "resources": ["workers", "gpus_per_worker"],
    "report": ["baselines", "levels"],
}
SETTINGS = settings(max_examples=1500, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["minilm", "digits", "pydoc", "2:4", "wanda", "random",
                                           "../../etc", "pkg:fn", "1e309", "-0", "nan", ""]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=10)


def _parse(data: Any) -> None:
    try:
        SearchSpec.from_dict(data)
    except SpecError as err:
        assert err.field and str(err).startswith("spec field"), str(err)


_tried = {"random": 0, "mutated": 0, "yaml": 0}


@SETTINGS
@given(json_values)
def _random_documents(data: Any) -> None:
    _tried["random"] += 1
    _parse(data)


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict:
    spec = draw(st.sampled_from([digits_spec_dict, minilm_spec_dict]))()
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([*FIELDS, "name", "seed", "extra"]))
        if section in FIELDS and draw(st.booleans()):
            sub = dict(spec.get(section) or {}) if isinstance(spec.get(section), dict) else {}
            sub[draw(st.sampled_from([*FIELDS[section], "bogus"]))] = draw(json_values)
            spec[section] = sub
        elif draw(st.booleans()):
            spec[section] = draw(json_values)
        else:
            spec.pop(section, None)
    return spec


@SETTINGS
@given(mutated_specs())
def _mutated_valid_specs(spec: dict) -> None:
    _tried["mutated"] += 1
    _parse(spec)


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def _yaml_text(text: str) -> None:
    _tried["yaml"] += 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.yaml"
        path.write_text(text)
        with contextlib.suppress(SpecError):
            SearchSpec.from_yaml(path)


def test_fuzzed_specs_raise_spec_error_or_parse() -> None:
    """The three fuzzers in one test, so the figures recorded are the inputs this test
    itself tried (whatever else runs, in whatever order)."""
    _tried.update(random=0, mutated=0, yaml=0)
    _random_documents()
    _mutated_valid_specs()
    _yaml_text()
    # Hypothesis may stop early on an exhausted space; these spaces are far from it.
    assert _tried["random"] >= 1400 and _tried["mutated"] >= 1400 and _tried["yaml"] >= 450, _tried
    record("bad_input.spec_fuzzing", fuzzed_inputs=sum(_tried.values()), **_tried)
