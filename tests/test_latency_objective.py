"""Latency as an objective: ``objectives: {quality: maximize, latency: minimize}``, or
size and latency with quality as three objectives. The study records the objectives by
name and direction, the front is non-dominated over all of them, the report and the
dashboard show latency, and structured candidates are timed as exported."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import digits_cnn
import optuna
import pytest
from helpers import digits_spec_dict
from optuna.study import StudyDirection

from prunetune import Client
from prunetune.engine.runner import run_job
from prunetune.engine.workbench import build_workbench
from prunetune.errors import SpecError
from prunetune.pareto import non_dominated
from prunetune.report.dashboard import open_dashboard_storage
from prunetune.report.fronts import load_front
from prunetune.search.controller import SearchOutcome
from prunetune.service.local_run import run_recorded
from prunetune.spec import LATENCY_REPEATS, SearchSpec
from prunetune.store.studies import LATENCY_NAME, SIZE_NAME, TrialRecorder, result_front

LATENCY = {"quality": "maximize", "latency": "minimize"}
THREE = {"quality": "maximize", "size": "minimize", "latency": "minimize"}


def _dominated(p: tuple[float, ...], q: tuple[float, ...]) -> bool:
    """q dominates p: quality (first) up, the rest down."""
    return q[0] >= p[0] and all(a <= b for a, b in zip(q[1:], p[1:], strict=True)) and q != p


def _brute_front(points: list[tuple[float, ...]]) -> set[int]:
    return {i for i, p in enumerate(points)
            if not any(_dominated(p, q) for q in points) and p not in points[:i]}


# -- the spec ------------------------------------------------------------------------------

def test_objectives_spec_latency_size_or_both() -> None:
    default = SearchSpec.from_dict(digits_spec_dict())
    assert default.objectives.minimized == ("size",) and default.task.latency_repeats == 0
    assert default.to_dict()["objectives"] == {"quality": "maximize", "size": "minimize"}  # hash unchanged
    lat = SearchSpec.from_dict(digits_spec_dict(objectives=LATENCY))
    assert lat.objectives.minimized == ("latency",) and lat.task.latency_repeats == LATENCY_REPEATS == 5
    both = SearchSpec.from_dict(digits_spec_dict(objectives=THREE, task={
        "kind": "classification", "data": "digits", "latency_repeats": 3}))
    assert both.objectives.minimized == ("size", "latency") and both.task.latency_repeats == 3


@pytest.mark.parametrize(("overrides", "field"), [
    ({"objectives": LATENCY, "task": {"kind": "classification", "data": "digits", "latency_repeats": 0}},
     "task.latency_repeats"),
    ({"objectives": LATENCY, "target": {"sparsity": 0.5}}, "objectives.latency"),
    ({"objectives": {"quality": "maximize", "latency": "maximize"}}, "objectives.latency"),
    ({"objectives": {"quality": "maximize", "speed": "minimize"}}, "objectives.speed"),
])
def test_invalid_objectives_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        SearchSpec.from_dict(digits_spec_dict(**overrides))
    assert err.value.field == field, str(err.value)


def test_non_dominated_over_three_objectives_matches_brute_force() -> None:
    rng = random.Random(0)
    for n, dims in itertools.product((1, 5, 40), (2, 3, 4)):
        # Coarse values so ties and duplicates occur.
        points = [tuple(float(rng.randint(0, 4)) for _ in range(dims)) for _ in range(n)]
        got = non_dominated(points)
        assert set(got) == _brute_front(points), points
        assert [points[i][1] for i in got] == sorted(points[i][1] for i in got)


# -- real searches -------------------------------------------------------------------------

def _spec(objectives: dict, trials: int) -> SearchSpec:
    return SearchSpec.from_dict(digits_spec_dict(
        budget={"trials": trials}, objectives=objectives, report={"baselines": []},
        task={"kind": "classification", "data": "digits", "calibration": 64, "search": 100, "report": 100,
              "latency_repeats": 3}))


def _run(tmp_path: Path, objectives: dict, trials: int = 10) -> tuple[SearchSpec, SearchOutcome, str]:
    spec = _spec(objectives, trials)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    return spec, run_job(spec, db=url, study_name="lat", out_dir=tmp_path / "job"), url


def test_latency_objective_search_records_latency_and_its_front(tmp_path: Path) -> None:
    spec, out, url = _run(tmp_path, LATENCY)
    study = optuna.load_study(study_name="lat", storage=url)
    assert study.metric_names == ["accuracy", LATENCY_NAME]
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    ok = [r for r in out.results if r.ok]
    assert all(r.metrics[LATENCY_NAME] > 0 for r in ok)
    points = [(float(r.quality), r.metrics[LATENCY_NAME]) for r in ok]  # type: ignore[arg-type]
    assert {r.number for r in out.front} == {ok[i].number for i in _brute_front(points)}
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert t.values[1] == t.user_attrs[LATENCY_NAME]  # the second objective is the latency
    # Read back from the study (report, service) and from a reopened recorder: the same front.
    front = load_front(url, "lat")
    assert front.objectives == (LATENCY_NAME,)
    assert {p.trial for p in front.points} == {r.number for r in out.front}
    assert all(p.latency is not None and p.size > 0 for p in front.points)
    reopened = TrialRecorder(url, "lat", build_workbench(spec).space, "accuracy", create=False)
    assert reopened.minimize == (LATENCY_NAME,)
    assert [r.size for r in reopened.results()] == [r.size for r in out.results]
    # The report and the dashboard show it.
    page = (tmp_path / "job" / "front.html").read_text()
    assert 'id="latency-plot"' in page and "vs measured latency" in page
    rows = (tmp_path / "job" / "front.csv").read_text().splitlines()
    assert "latency_seconds" in rows[0].split(",")
    dash = optuna.load_study(study_name="lat", storage=open_dashboard_storage(url))
    assert dash.metric_names == ["accuracy", LATENCY_NAME]
    shown = {t.number: t.user_attrs for t in dash.trials}
    for r in out.front:  # timed on a calibration batch whatever the split: no report_ copy
        assert LATENCY_NAME in shown[r.number] and f"report_{LATENCY_NAME}" not in shown[r.number]


def test_three_objectives_front_is_non_dominated_over_all_three(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job, out = run_recorded(_spec(THREE, 12), db=url, study_name="lat")  # a job, as `prunetune run` records
    study = optuna.load_study(study_name="lat", storage=url)
    assert study.metric_names == ["accuracy", SIZE_NAME, LATENCY_NAME]
    assert len(study.directions) == 3
    ok = [r for r in out.results if r.ok]
    points = [(float(r.quality), float(r.size), r.metrics[LATENCY_NAME]) for r in ok]  # type: ignore[arg-type]
    assert {r.number for r in out.front} == {ok[i].number for i in _brute_front(points)}
    # A point on the size front or on the latency front is on the three-objective front.
    three = {r.number for r in out.front}
    assert {r.number for r in result_front(out.results, True)} <= three
    assert {r.number for r in result_front(out.results, True, minimize=(LATENCY_NAME,))} <= three
    assert {p.trial for p in load_front(url, "lat").points} == three
    served = Client.embedded(url).pareto_front(job)  # the service's front: sizes are sizes
    assert {p.trial: (p.nonzero_params, p.latency_seconds) for p in served} == {
        r.number: (r.size, r.metrics[LATENCY_NAME]) for r in out.front}
    # The size axis is as it was: levels read at the front levels, sizes in the front rows.
    assert [row["level"] for row in out.extra["levels"]] == [0.5, 0.6, 0.7, 0.8]
    assert all(r.size == r.metrics[SIZE_NAME] for r in out.front)
    # Resuming the study with other objectives is refused by name.
    with pytest.raises(SpecError) as err:
        run_job(SearchSpec.from_dict(digits_spec_dict(objectives=LATENCY)), db=url, study_name="lat")
    assert err.value.field == "objectives"


def test_structured_candidates_are_timed_as_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels cut from the CNN: the model that is timed has the exported parameter
    count, not the dense one with zeros (which dense kernels compute at full cost)."""
    spec = SearchSpec.from_dict(digits_spec_dict(
        model={"factory": "digits_cnn:build"}, objectives=LATENCY,
        space={"granularity": "channels", "criterion": "magnitude", "max": 0.9, "step": 0.05},
        task={"kind": "classification", "data": "sklearn:digits", "calibration": 64, "search": 64, "report": 64}))
    bench = build_workbench(spec)
    timed: list[int] = []
    forward = bench.task.forward

    def counting(model, batch):  # type: ignore[no-untyped-def]
        timed.append(sum(p.numel() for p in model.parameters()))
        return forward(model, batch)

    monkeypatch.setattr(bench.task, "forward", counting)
    m = bench.evaluator.evaluate([0.5] * bench.space.dim)
    assert m[LATENCY_NAME] > 0
    dense = sum(p.numel() for p in digits_cnn.build().parameters())
    n = spec.task.latency_repeats + 1  # the warm-up call, then the repeats (scoring came first)
    assert timed[-n:] == [int(m[SIZE_NAME])] * n and m[SIZE_NAME] < dense
