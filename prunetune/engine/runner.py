"""Run one job end to end: build, search, score the front on the report split, write.

``run_job`` is what ``prunetune run`` and the service's job runner call.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import platform
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prunetune.engine.report_split import score_on_report
from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.search.controller import (
    REPORT_POINTS,
    Controller,
    Progress,
    SearchOutcome,
    build_strategy,
    level_table,
    report_selection,
)
from prunetune.search.executor import Executor
from prunetune.spec import SearchSpec
from prunetune.store.studies import LEVELS_KEY, TrialRecorder, objective_metrics
from prunetune.workers.base import InProcessExecutor

log = logging.getLogger(__name__)

_VERSIONED = ("prunetune", "torch", "transformers", "optuna", "deap", "ray", "numpy")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def make_executor(
    bench: Workbench, workers: int, ray_address: str | None, job_dir: str | Path | None = None
) -> Executor:
    """In-process for ``workers == 0``; otherwise a Ray actor pool (a local Ray keeps its
    files in ``job_dir/ray``, or in a temporary folder when ``job_dir`` is None)."""
    if workers == 0 and ray_address is None:
        return InProcessExecutor(bench)
    try:
        from prunetune.workers.ray_pool import RayExecutor
    except ImportError as err:
        raise RuntimeError(
            f"resources.workers={workers} needs the Ray executor (prunetune.workers.ray_pool): {err}"
        ) from err
    return RayExecutor(bench, workers=max(workers, 1), address=ray_address, job_dir=job_dir)


def provenance(spec: SearchSpec, bench: Workbench) -> dict[str, Any]:
    return {
        "spec_hash": spec.digest(),
        "model": bench.loaded.name,
        "model_fingerprint": bench.fingerprint,
        "data_hashes": bench.task.data_hashes(),
        "seed": spec.seed,
        "versions": package_versions(),
        "machine": f"{platform.machine()} {platform.system()} {platform.node()}",
    }


def run_job(
    spec: SearchSpec,
    *,
    db: str,
    study_name: str | None = None,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    bench: Workbench | None = None,
    warm_start: Sequence[Mapping[str, float]] = (),
) -> SearchOutcome:
    """Run (or resume) the search a spec describes and return its outcome.

    Trials go to the Optuna study ``study_name`` in ``db`` (a new name when None); a study
    that already holds trials is resumed: finished trials are kept, trials left RUNNING
    are failed as stale and their candidates evaluated again. ``warm_start``: allocations
    (layer name -> sparsity, e.g. a previous run's front) the strategy evaluates first;
    ones that do not name exactly this model's prunable layers are skipped.
    """
    start = time.perf_counter()
    bench = bench or build_workbench(spec)
    strategy = build_strategy(spec, bench.space, context=bench.search_context)
    names = bench.space.names
    seeds = [[float(a[n]) for n in names] for a in warm_start if set(a) == set(names)]
    if seeds:
        strategy.warm_start(seeds)
    study_name = study_name or f"{spec.name}-{uuid.uuid4().hex[:8]}"
    minimize = objective_metrics(spec.objectives.minimized)
    recorder = TrialRecorder(db, study_name, bench.space, bench.task.quality_name, minimize=minimize)
    dense = bench.task.dense_reference()
    prov = provenance(spec, bench)
    recorder.set_attrs({"spec": spec.to_dict(), "dense": dense, "provenance": prov,
                        "strategy": spec.strategy.name, "mode": spec.mode, "warm_start": len(seeds),
                        "params_total": bench.space.extra_params + bench.space.prunable_params})
    n_workers = spec.resources.workers if workers is None else workers
    with make_executor(bench, n_workers, ray_address, job_dir=out_dir) as executor:
        controller = Controller(
            strategy, executor, recorder, spec.budget.trials, bench.task.quality_name,
            on_progress=on_progress, should_stop=should_stop,
        )
        t = time.perf_counter()
        results = controller.run()
        phases = {"search": time.perf_counter() - t}
        t = time.perf_counter()
        front = recorder.front(results)
        scored = report_selection(front, bench.space, spec.report.points if spec.report else REPORT_POINTS)
        known = recorder.reports()
        todo = [r for r in scored if r.number not in known]
        for number, o in score_on_report(executor, {r.number: r.candidate.sparsities for r in todo}).items():
            recorder.set_report(number, dict(o.metrics) if o.error is None else {"error": float("nan")})
        phases["report_front"] = time.perf_counter() - t
        from prunetune.engine.baselines import job_baselines

        t = time.perf_counter()
        stopped = should_stop is not None and should_stop()
        baselines = job_baselines(spec, bench, executor, recorder, stopped=stopped)
        phases["report_baselines"] = time.perf_counter() - t
    reports = recorder.reports()
    levels = (level_table(front, reports, baselines, bench.space, bench.task.quality_name)
              if spec.mode == "pareto" else [])
    recorder.set_attrs({LEVELS_KEY: levels})
    outcome = SearchOutcome(
        results=results,
        front=front,
        reports=reports,
        dense=dense,
        quality_name=bench.task.quality_name,
        wall_seconds=time.perf_counter() - start,
        eval_seconds=controller.eval_seconds,
        extra={"study_name": study_name, "provenance": prov, "timings": bench.timings, "phases": phases,
               "layers": bench.space.names, "prunable_params": bench.space.prunable_params,
               "mode": spec.mode, "strategy": spec.strategy.name, "baselines": baselines,
               "levels": levels, "objectives": list(recorder.minimize)},
    )
    from prunetune.store.studies import close_storage

    close_storage(recorder.storage)  # a worker runs many jobs: give the connections back
    if out_dir is not None:
        from prunetune.report.outputs import write_outputs

        write_outputs(outcome, Path(out_dir))
    return outcome
