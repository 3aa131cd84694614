"""Granularity names, criterion x granularity checks, and their place in the job spec."""

from __future__ import annotations

import pytest
from helpers import digits_spec_dict

from prunetune.errors import SpecError
from prunetune.pruning.granularity import check_pair, parse_granularity
from prunetune.spec import SearchSpec


def test_names_parse() -> None:
    assert parse_granularity("4:8").pattern == (4, 8)
    assert parse_granularity("heads+neurons").kinds == ("heads", "neurons")
    assert not parse_granularity("unstructured").structured
    with pytest.raises(ValueError, match="N:M pattern must look like '2:4'; got '2:x'"):
        parse_granularity("2:x")
    with pytest.raises(ValueError, match=r"'heads\+heads' is unknown"):
        parse_granularity("heads+heads")


def test_pairs_are_checked() -> None:
    check_pair("apoz", parse_granularity("neurons"))
    with pytest.raises(ValueError, match="criterion 'apoz' does not support granularity 'heads\\+neurons'"):
        check_pair("apoz", parse_granularity("heads+neurons"))


def test_spec_accepts_structured_granularities_and_names_bad_pairs() -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(space={"granularity": "heads+neurons", "criterion": "fisher"}))
    assert spec.space.granularity == "heads+neurons"
    with pytest.raises(SpecError, match="criterion 'bn-gamma' does not support granularity '2:4'"):
        SearchSpec.from_dict(digits_spec_dict(space={"granularity": "2:4", "criterion": "bn-gamma"}))
    with pytest.raises(SpecError, match=r"space\.granularity"):
        SearchSpec.from_dict(digits_spec_dict(space={"granularity": "rows"}))
