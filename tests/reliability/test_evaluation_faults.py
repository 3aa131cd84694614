"""Evaluations that raise, return NaN or infinity, or run out of memory: each such trial
is recorded as failed with its reason, the job goes on and finishes its budget."""

from __future__ import annotations

import pytest
from helpers import digits_spec_dict
from reliability.figures import record

from prunetune.service.job_runner import JobRunner
from prunetune.service.jobs import JobService

pytestmark = pytest.mark.reliability

REASONS = {
    "raise": "RuntimeError: metric exploded on purpose",
    "nan": "returned nan",
    "inf": "returned inf",
    "cuda-oom": "OutOfMemoryError: CUDA out of memory",
    "host-oom": "MemoryError: cannot allocate",
}


def test_failing_evaluations_fail_their_trial_with_the_reason(sqlite_url: str) -> None:
    budget = 40
    service = JobService(sqlite_url)
    spec = digits_spec_dict(budget={"trials": budget},
                            task={"kind": "callable", "data": "digits", "function": "reliability.faulty_metric:accuracy",
                                  "calibration": 64, "search": 100, "report": 100},
                            report={"baselines": []})
    job = service.submit(spec)
    assert JobRunner(sqlite_url, workers=0, poll_s=0.1).run_one(job["id"]).value == "succeeded"
    trials = service.trials(job["id"])
    assert [t["trial"] for t in trials] == list(range(budget))
    failed = [t for t in trials if t["state"] == "fail"]
    complete = [t for t in trials if t["state"] == "complete"]
    seen = {kind for t in failed for kind, reason in REASONS.items() if reason in (t.get("error") or "")}
    assert len(failed) + len(complete) == budget
    assert seen == set(REASONS), [t.get("error") for t in failed]
    assert all(any(r in (t.get("error") or "") for r in REASONS.values()) for t in failed)
    assert complete and service.front(job["id"])
    record("fault.evaluation_errors", faults_injected=len(failed), faults_survived=len(failed),
           kinds=sorted(seen), trials_lost=0, trials_duplicated=0, budget=budget, completed=len(complete))
