"""RayExecutor on the digits model: a job that starts its own local Ray gets the same
numbers as evaluating in this process, keeps Ray's files in the job folder, and shuts
Ray down afterwards."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import digits_spec_dict

from prunetune.engine.runner import run_job
from prunetune.engine.workbench import build_workbench
from prunetune.spec import SearchSpec

ray = pytest.importorskip("ray")


def _study_numbers(db: str, name: str) -> list[tuple[int, str]]:
    study = optuna.load_study(study_name=name, storage=db)
    return [(t.number, t.state.name) for t in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize(("granularity", "reconstruction"),
                         [("unstructured", None), ("2:4", None), ("unstructured", "sparsegpt")])
def test_job_on_local_ray_matches_in_process(
    tmp_path: Path, sqlite_url: str, granularity: str, reconstruction: str | None
) -> None:
    # The actors assemble their pruner as the workbench does: with N:M they prune N:M too,
    # and with reconstruction they assemble the same levels from the shipped database.
    space = {"criterion": "wanda", "max": 0.95, "step": 0.05, "granularity": granularity,
             "reconstruction": reconstruction}
    spec = SearchSpec.from_dict(digits_spec_dict(budget={"trials": 10}, resources={"workers": 2}, space=space))
    bench = build_workbench(spec)
    assert not ray.is_initialized()

    out = run_job(spec, db=sqlite_url, study_name="ray-local", out_dir=tmp_path / "job", bench=bench)

    assert not ray.is_initialized()  # the job started Ray and shut it down
    assert _study_numbers(sqlite_url, "ray-local") == [(n, "COMPLETE") for n in range(10)]
    for r in out.results:  # the actors evaluated exactly what this process evaluates
        here = bench.evaluator.evaluate(r.candidate.sparsities)
        assert r.quality == pytest.approx(here["accuracy"], abs=0.0)
        assert r.size == here["nonzero_params"]
    assert out.reports and all("accuracy" in m for m in out.reports.values())
    ray_dir = tmp_path / "job" / "ray"
    assert any(p.name.startswith("session_") for p in ray_dir.iterdir())


def test_bf16_actors_score_close_to_fp32(sqlite_url: str) -> None:
    spec = SearchSpec.from_dict(
        digits_spec_dict(budget={"trials": 4}, resources={"workers": 1, "dtype": "bf16"})
    )
    bench = build_workbench(spec)
    out = run_job(spec, db=sqlite_url, bench=bench)
    assert len(out.results) == 4 and all(r.ok for r in out.results)
    for r in out.results:
        fp32 = bench.evaluator.evaluate(r.candidate.sparsities)["accuracy"]
        assert r.quality == pytest.approx(fp32, abs=0.05)
