"""The store's reads of a job's study: the front, the trials it is chosen from, the
REPORT scores and the baselines, and the same front over the runner's in-memory results."""

from __future__ import annotations

from pathlib import Path

import optuna
from search.synthetic import make_space

from prunetune.records import Candidate, TrialResult, TrialState
from prunetune.store import studies
from prunetune.store.studies import BASELINES_KEY, SIZE_NAME, TrialRecorder, result_front

# (quality, nonzero params, fidelity): 1 and 3 make the front; 2 is dominated by 1;
# 4 is dominated by 3 at equal size; 5 would lead but is a screening (half-fidelity) score.
TRIALS = [(0.50, 900.0, 1.0), (0.80, 700.0, 1.0), (0.70, 800.0, 1.0), (0.60, 500.0, 1.0),
          (0.55, 500.0, 1.0), (0.99, 400.0, 0.5)]


def record(url: str, target: float | None) -> tuple[TrialRecorder, list[TrialResult]]:
    space = make_space(target=target)
    recorder = TrialRecorder(url, "job", space, "accuracy")
    results = []
    for k, (quality, size, fidelity) in enumerate(TRIALS):
        cand = Candidate(tuple(0.01 * k for _ in space.names), origin=f"c{k}", fidelity=fidelity)
        number = recorder.start(cand)
        result = TrialResult(number, cand, TrialState.COMPLETE, quality, size, {"accuracy": quality, SIZE_NAME: size})
        recorder.finish(result)
        results.append(result)
    failed = Candidate(tuple(0.5 for _ in space.names))
    number = recorder.start(failed)
    results.append(TrialResult(number, failed, TrialState.FAILED, error="RuntimeError: injected"))
    recorder.finish(results[-1])
    return recorder, results


def test_the_study_front_is_the_runner_front(tmp_path: Path) -> None:
    recorder, results = record(f"sqlite:///{tmp_path}/p.db", target=None)
    study = optuna.load_study(study_name="job", storage=recorder.storage)
    assert [t.number for t in studies.front(study)] == [3, 1]  # by size
    assert [r.number for r in recorder.front(results)] == [3, 1]
    assert [r.number for r in result_front(list(reversed(results)), pareto=True)] == [3, 1]
    assert [t.number for t in studies.trials(study, complete=True)] == [0, 1, 2, 3, 4]
    assert len(studies.trials(study)) == 7


def test_budget_mode_front_is_the_best_trial(tmp_path: Path) -> None:
    recorder, results = record(f"sqlite:///{tmp_path}/b.db", target=0.5)
    study = optuna.load_study(study_name="job", storage=recorder.storage)
    assert [t.number for t in studies.front(study)] == [1]
    assert [r.number for r in recorder.front(results)] == [1]


def test_reports_and_baselines_are_read_back(tmp_path: Path) -> None:
    recorder, _ = record(f"sqlite:///{tmp_path}/r.db", target=None)
    study = optuna.load_study(study_name="job", storage=recorder.storage)
    assert studies.reports(study) == {} and studies.baselines(study) == {}
    recorder.set_report(3, {"accuracy": 0.58})
    scored = {"uniform": [{"level": 0.5, "quality": 0.4}]}
    recorder.set_attrs({BASELINES_KEY: scored})
    study = optuna.load_study(study_name="job", storage=recorder.storage)
    assert studies.reports(study) == {3: {"accuracy": 0.58}} == recorder.reports()
    assert studies.baselines(study) == scored
