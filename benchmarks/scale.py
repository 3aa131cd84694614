"""Scale: MiniLM evaluations per minute in-process, on 1 Ray actor and on 2 Ray actors.

Each configuration runs the real controller loop (random strategy, real SQLite study)
for a fixed number of evaluations, with one torch thread per evaluator (the in-process
run sets this process to 1 thread; each actor reserves 1 CPU and uses 1 thread), so on a
2-core machine 2 actors can approach twice the rate of one. Actors are built before the
clock starts (``wait_ready``): the rate is the steady state a long job sees; the build
time is reported separately. Configurations run side by side in ``--rounds`` rounds
(order rotated per round) and the figures are medians over rounds; the speedup is the
median of the per-round ratios.

Controller overhead per trial (in-process run): wall time minus time inside
evaluations, divided by trials, as a fraction of the mean evaluation time. For the Ray
runs the JSON also gives the fraction of actor time not spent evaluating.

Writes ``benchmarks/results/scale.json``; the last line printed is::

    RESULT speedup_2_over_1=<ratio> controller_overhead=<fraction>

Run heavy (both cores to itself):
``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/scale.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prunetune.engine.runner import provenance
from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.search.controller import Controller, build_strategy
from prunetune.search.executor import Executor
from prunetune.spec import SearchSpec
from prunetune.store.studies import TrialRecorder
from prunetune.workers.base import InProcessExecutor
from prunetune.workers.ray_pool import RayExecutor
from prunetune.workers.ray_session import start_ray

ROOT = Path(__file__).resolve().parents[1]


def make_spec(args: argparse.Namespace) -> SearchSpec:
    return SearchSpec.from_dict({
        "name": "bench-scale",
        "model": {"source": "minilm"},
        "task": {"kind": "embedding", "data": "pydoc", "calibration": 64, "search": args.search,
                 "report": 32, "batch_size": 32},
        "space": {"criterion": "wanda", "max": 0.9, "step": 0.05},
        "budget": {"trials": args.evals},
        "strategy": {"name": "random"},
        "resources": {"workers": 0, "threads": 1, "cpus_per_worker": 1},
        "seed": 0,
    })


def measure(bench: Workbench, executor: Executor, trials: int, db: str, name: str) -> dict[str, Any]:
    recorder = TrialRecorder(db, name, bench.space, bench.task.quality_name)
    strategy = build_strategy(bench.spec, bench.space)
    controller = Controller(strategy, executor, recorder, trials, bench.task.quality_name)
    start = time.perf_counter()
    results = controller.run()
    wall = time.perf_counter() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} evaluations failed, first: {failed[0]}")
    evals = [r.metrics["eval_seconds"] for r in results]
    workers = executor.capacity
    return {
        "trials": len(results),
        "wall_seconds": wall,
        "evals_per_minute": 60.0 * len(results) / wall,
        "eval_seconds_median": statistics.median(evals),
        "eval_seconds_sum": sum(evals),
        # wall not spent evaluating, per trial, as a fraction of an evaluation
        "overhead_fraction": (wall * workers - sum(evals)) / len(results) / statistics.mean(evals),
    }


def run_config(kind: str, bench: Workbench, args: argparse.Namespace, db: str, tag: str) -> dict[str, Any]:
    if kind == "in_process":
        return measure(bench, InProcessExecutor(bench), args.evals, db, tag)
    workers = 1 if kind == "ray_1" else 2
    t = time.perf_counter()
    with RayExecutor(bench, workers=workers) as executor:
        info = executor.wait_ready()
        ready = time.perf_counter() - t
        out = measure(bench, executor, args.evals * workers, db, tag)
    out["actors_ready_seconds"] = ready
    out["actors"] = info
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--search", type=int, default=128, help="search-split chunks per evaluation")
    p.add_argument("--evals", type=int, default=5, help="evaluations per evaluator per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = p.parse_args()

    spec = make_spec(args)
    t = time.perf_counter()
    bench = build_workbench(spec)  # sets this process to 1 torch thread
    build = time.perf_counter() - t
    kinds = ["in_process", "ray_1", "ray_2"]
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pt-scale-") as tmp:
        db = f"sqlite:///{tmp}/scale.db"
        t = time.perf_counter()
        session = start_ray(None, num_cpus=2, job_dir=tmp)
        ray_start = time.perf_counter() - t
        try:
            for r in range(args.rounds):
                order = kinds[r % 3:] + kinds[: r % 3]
                row = {k: run_config(k, bench, args, db, f"{k}-{r}") for k in order}
                rounds.append(row)
                print(f"round {r}: " + ", ".join(
                    f"{k} {row[k]['evals_per_minute']:.2f}/min (eval {row[k]['eval_seconds_median']:.2f} s)"
                    for k in kinds), flush=True)
        finally:
            session.close()

    def med(kind: str, key: str) -> float:
        return statistics.median(row[kind][key] for row in rounds)

    speedup = statistics.median(row["ray_2"]["evals_per_minute"] / row["ray_1"]["evals_per_minute"] for row in rounds)
    ray1_vs_local = statistics.median(
        row["ray_1"]["evals_per_minute"] / row["in_process"]["evals_per_minute"] for row in rounds)
    overhead = med("in_process", "overhead_fraction")
    summary = {
        "evals_per_minute": {k: med(k, "evals_per_minute") for k in kinds},
        "eval_seconds_median": {k: med(k, "eval_seconds_median") for k in kinds},
        "speedup_2_over_1": speedup,
        "ray_1_over_in_process": ray1_vs_local,
        "controller_overhead": overhead,
        "ray_idle_fraction": {k: med(k, "overhead_fraction") for k in ("ray_1", "ray_2")},
        "actors_ready_seconds": {k: med(k, "actors_ready_seconds") for k in ("ray_1", "ray_2")},
        "ray_start_seconds": ray_start,
        "workbench_seconds": build,
    }
    result = {
        "benchmark": "scale",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()} {platform.node()}",
        "settings": vars(args) | {"out": str(args.out)},
        "summary": summary,
        "rounds": rounds,
        "provenance": provenance(spec, bench),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    for k in kinds:
        print(f"{k:>10}: {summary['evals_per_minute'][k]:6.2f} evaluations/min "
              f"(median evaluation {summary['eval_seconds_median'][k]:.2f} s)")
    print(f"ray_1 / in_process = {ray1_vs_local:.3f}; actor idle fraction "
          f"{summary['ray_idle_fraction']['ray_1']:.3f} (1 actor), {summary['ray_idle_fraction']['ray_2']:.3f} (2 actors)")
    print(f"wrote {args.out}")
    print(f"RESULT speedup_2_over_1={speedup:.3f} controller_overhead={overhead:.4f}")


if __name__ == "__main__":
    main()
