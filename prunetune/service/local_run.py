"""``prunetune run``: one job run in this process, recorded like a service job.

The job gets a row in the job table of ``--db`` (the same database the service uses) and
its trials go to that job's study, so ``prunetune status/front/export/cancel JOB``, the
job report and the dashboard work on it as on a submitted job. The job is claimed by
this process at once (no runner is involved) and holds a lease with a heartbeat, so
``prunetune cancel JOB`` from another shell stops it after the evaluations in flight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunetune.search.controller import Progress, SearchOutcome
from prunetune.service.job_runner import Heartbeat, default_runner_id
from prunetune.spec import SearchSpec
from prunetune.store.db import upgrade
from prunetune.store.jobs import DEFAULT_LEASE_S, JobStore
from prunetune.store.models import JobState


def run_recorded(
    spec: SearchSpec,
    *,
    db: str,
    study_name: str | None = None,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    on_progress: Progress | None = None,
    owner: str = "local",
) -> tuple[int, SearchOutcome]:
    """Record a job for ``spec`` in ``db``, run it here and close it; returns
    ``(job id, outcome)``. ``study_name`` resumes the job (or bare study) of that name.

    A failure closes the job as failed (its error recorded) and is raised again; Ctrl-C
    closes it as cancelled.
    """
    from prunetune.engine.runner import run_job
    from prunetune.engine.workbench import build_workbench
    from prunetune.search.controller import build_strategy

    # Model, data and strategy options are checked before the database is touched: a
    # spec that cannot run leaves no job behind.
    bench = build_workbench(spec)
    build_strategy(spec, bench.space, context=bench.search_context)
    upgrade(db)
    store = JobStore(db)
    data = spec.to_dict()
    if study_name is None:
        info = store.submit(data, name=spec.name, trials=spec.budget.trials, owner=owner)
    else:
        info = store.queue_on_study(data, name=spec.name, trials=spec.budget.trials,
                                    study_name=study_name, owner=owner)
    me = default_runner_id()
    job = store.claim(me, DEFAULT_LEASE_S, job_id=info.id)
    if job is None:  # pragma: no cover - queued a moment ago by us; only a runner racing us
        raise RuntimeError(f"job {info.id} was claimed by a runner of {db} before this process could")

    def progress(done: int, total: int, result: Any) -> None:
        best = None
        if result is not None and result.ok and result.candidate.fidelity == 1.0:
            best = (result.number, float(result.quality))
            if best_so_far and best_so_far[-1][1] >= best[1]:
                best = None
            else:
                best_so_far.append(best)
        store.progress(job.id, me, done, total, best)
        if on_progress is not None:
            on_progress(done, total, result)

    best_so_far: list[tuple[int, float]] = []
    with Heartbeat(store, job.id, me, DEFAULT_LEASE_S) as beat:
        try:
            outcome = run_job(spec, db=db, study_name=job.study_name, out_dir=out_dir, workers=workers,
                              ray_address=ray_address, on_progress=progress, should_stop=beat.should_stop,
                              bench=bench)
        except KeyboardInterrupt:
            store.finish(job.id, me, JobState.CANCELLED, error="interrupted (Ctrl-C)")
            raise
        except BaseException as err:
            store.finish(job.id, me, JobState.FAILED, error=f"{type(err).__name__}: {err}")
            raise
    store.finish(job.id, me, JobState.CANCELLED if beat.cancelled else JobState.SUCCEEDED)
    return job.id, outcome
