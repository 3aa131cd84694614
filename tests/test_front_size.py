"""The size axis of the front is what is delivered: for every structured granularity, a
front point's ``nonzero_params`` equals the parameter count of its exported model."""

from __future__ import annotations

from pathlib import Path

import digits_cnn
import pytest
from helpers import digits_spec_dict, minilm_spec_dict
from pruning.test_workbench_structured import _tiny_bert_directory

from prunetune.engine.runner import run_job
from prunetune.pruning.export import load_pruned
from prunetune.service.export import export_trial
from prunetune.spec import SearchSpec


def _spec(granularity: str, tmp: Path) -> SearchSpec:
    space = {"granularity": granularity, "criterion": "magnitude", "max": 0.9, "step": 0.05}
    common = {"budget": {"trials": 5}, "report": {"baselines": []}, "space": space}
    if granularity == "channels":
        return SearchSpec.from_dict(digits_spec_dict(
            model={"factory": "digits_cnn:build"},
            task={"kind": "classification", "data": "sklearn:digits", "calibration": 64, "search": 64, "report": 64},
            **common))
    return SearchSpec.from_dict(minilm_spec_dict(model={"path": _tiny_bert_directory(tmp / "bert")}, **common))


@pytest.mark.parametrize("granularity", ["channels", "heads", "neurons", "heads+neurons", "blocks"])
def test_front_nonzero_params_equal_the_exported_parameter_count(tmp_path: Path, granularity: str) -> None:
    spec = _spec(granularity, tmp_path)
    outcome = run_job(spec, db=f"sqlite:///{tmp_path / 'jobs.db'}", workers=0)
    names = outcome.extra["layers"]
    assert outcome.front
    for r in outcome.front:
        out = tmp_path / f"trial-{r.number}"
        export_trial(spec, dict(zip(names, r.candidate.sparsities, strict=True)), out, {})
        model = load_pruned(out, model=digits_cnn.build() if granularity == "channels" else None)
        assert r.size == sum(p.numel() for p in model.parameters()), (granularity, r.number, r.candidate.sparsities)
