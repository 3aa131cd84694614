"""Actors killed with ``ray.kill`` in the middle of an evaluation: the candidate is
retried on another actor (or, past ``resources.max_retries``, recorded as failed with
the reason), and the Optuna study holds every trial exactly once."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import optuna
import pytest
from helpers import digits_spec_dict
from reliability.figures import record
from torch import nn

from prunetune.engine.workbench import build_workbench
from prunetune.evaluators.tasks import Split, Task
from prunetune.search.controller import Controller, build_strategy
from prunetune.spec import SearchSpec
from prunetune.store.studies import TrialRecorder

ray = pytest.importorskip("ray")
from prunetune.workers.ray_pool import RayExecutor  # noqa: E402
from prunetune.workers.ray_session import start_ray  # noqa: E402

pytestmark = pytest.mark.reliability

EVAL_SECONDS = 1.5


class SlowTask(Task):
    """The digits task, taking ``EVAL_SECONDS`` per evaluation so that a kill lands
    while the actor is evaluating."""

    def __init__(self, inner: Task) -> None:
        self.inner = inner
        self.quality_name = inner.quality_name

    def calibration_batches(self) -> Sequence[Any]:
        return self.inner.calibration_batches()

    def forward(self, model: nn.Module, batch: Any) -> Any:
        return self.inner.forward(model, batch)

    def prepare(self, model: nn.Module) -> None:
        self.inner.prepare(model)

    def score(self, model: nn.Module, split: Split = "search", fraction: float = 1.0) -> dict[str, float]:
        time.sleep(EVAL_SECONDS)
        return self.inner.score(model, split, fraction)

    def dense_reference(self) -> dict[str, float]:
        return self.inner.dense_reference()

    def data_hashes(self) -> dict[str, str]:
        return self.inner.data_hashes()


@pytest.fixture(scope="module", autouse=True)
def ray_session() -> Iterator[None]:
    session = start_ray(None, num_cpus=2)
    # The actors unpickle SlowTask; this test module is not importable there.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    session.close()


def _kill_mid_evaluation(executor: RayExecutor, actors: list[Any], killed: list[int]) -> None:
    """Kill each of ``actors`` once, while it is evaluating (0.3 s into 1.5 s)."""
    todo = list(actors)
    deadline = time.monotonic() + 120
    while todo and time.monotonic() < deadline:
        for run in executor.running():
            if run.seconds >= 0.3 and run.seconds < EVAL_SECONDS - 0.5 and run.actor in todo:
                todo.remove(run.actor)
                ray.kill(run.actor)
                killed.append(run.number)
        time.sleep(0.01)


def _run(sqlite_url: str, name: str, budget: int, max_retries: int, kills: int) -> tuple[RayExecutor, list[int]]:
    spec = SearchSpec.from_dict(digits_spec_dict(
        budget={"trials": budget}, resources={"workers": 2, "max_retries": max_retries},
    ))
    bench = build_workbench(spec)
    bench.task = SlowTask(bench.task)
    recorder = TrialRecorder(sqlite_url, name, bench.space, bench.task.quality_name)
    killed: list[int] = []
    with RayExecutor(bench, workers=2) as executor:
        actors = executor.actors[:kills]
        executor.wait_ready()  # so a kill 0.3 s after dispatch lands inside the evaluation
        killer = threading.Thread(target=_kill_mid_evaluation, args=(executor, actors, killed))
        killer.start()
        Controller(build_strategy(spec, bench.space), executor, recorder, budget, "accuracy").run()
        killer.join()
    return executor, killed


def _trials(sqlite_url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=sqlite_url).get_trials(deepcopy=False)


def test_killed_actors_are_replaced_and_their_candidates_retried(sqlite_url: str) -> None:
    executor, killed = _run(sqlite_url, "kill-retry", budget=6, max_retries=2, kills=2)

    assert len(killed) == 2
    assert executor.replaced == 2 and executor.retried == 2
    trials = _trials(sqlite_url, "kill-retry")
    assert sorted(t.number for t in trials) == list(range(6))  # none lost, none twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["accuracy"] > 0.5 for t in trials)
    numbers = [t.number for t in trials]
    record("fault.ray_actor_killed", faults_injected=len(killed), faults_survived=executor.retried,
           trials_lost=6 - len(set(numbers)), trials_duplicated=len(numbers) - len(set(numbers)))


def test_candidate_fails_with_reason_after_max_retries(sqlite_url: str) -> None:
    executor, killed = _run(sqlite_url, "kill-fail", budget=4, max_retries=0, kills=1)

    assert len(killed) == 1 and executor.replaced == 1 and executor.retried == 0
    trials = {t.number: t for t in _trials(sqlite_url, "kill-fail")}
    assert sorted(trials) == list(range(4))
    failed = [n for n, t in trials.items() if t.state == optuna.trial.TrialState.FAIL]
    assert failed == killed
    reason = trials[killed[0]].user_attrs["fail_reason"]
    assert "worker died 1 times" in reason and "max_retries=0" in reason
    assert all(t.state == optuna.trial.TrialState.COMPLETE for n, t in trials.items() if n not in killed)
