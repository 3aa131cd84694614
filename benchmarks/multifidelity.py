"""Multi-fidelity screening at equal wall time, on the real MiniLM in Pareto mode.

Two arms run the real controller loop (random strategy, seeded, real SQLite study) for
the same wall time each: ``full`` scores every candidate on the whole search split;
``screened`` scores each on a fixed, representative ``--fraction`` of it and promotes to
the full split only those that could still reach the front (``PromotionRule``). Both
fronts use full-fidelity results only; hypervolume is over (search-split fidelity,
nonzero parameters) with the reference point (fidelity 0, the dense model's parameters),
divided by the reference size. Run in Pareto mode and in budget mode (overall sparsity
0.7: the front is the best trial, promotion takes the top quarter).

Writes ``benchmarks/results/multifidelity.json``; the last line printed is::

    RESULT candidates_ratio=<screened/full> hypervolume_ratio=<screened/full> budget_candidates_ratio=<..> budget_hypervolume_ratio=<..>

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/multifidelity.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from _common import provenance  # benchmarks/_common.py (the script's folder is on sys.path)

from prunetune.evaluators.screening import PromotionRule, ScreenedStrategy
from prunetune.search.base import Strategy
from prunetune.search.controller import Controller, pareto_front
from prunetune.search.pareto import hypervolume
from prunetune.search.strategies.random import RandomSearch
from prunetune.spec import SearchSpec
from prunetune.store.studies import TrialRecorder
from prunetune.workbench import Workbench, build_workbench
from prunetune.workers.base import InProcessExecutor

ROOT = Path(__file__).resolve().parents[1]


def run_arm(bench: Workbench, strategy: Strategy, seconds: float, db: str, name: str) -> dict[str, Any]:
    recorder = TrialRecorder(db, name, bench.space, bench.task.quality_name)
    start = time.perf_counter()
    controller = Controller(strategy, InProcessExecutor(bench), recorder, 100_000, bench.task.quality_name,
                            should_stop=lambda: time.perf_counter() - start > seconds)
    results = controller.run()
    wall = time.perf_counter() - start
    front = pareto_front(results, pareto=True)
    ref = (0.0, float(bench.space.prunable_params + bench.space.extra_params))
    hv = hypervolume([(r.quality, r.size) for r in front], ref) / ref[1]  # type: ignore[misc]
    full = [r for r in results if r.candidate.fidelity == 1.0]
    return {
        "wall_s": wall, "evaluations": len(results),
        "candidates": len({r.candidate.sparsities for r in results}),
        "full_fidelity_evaluations": len(full),
        "low_fidelity_evaluations": len(results) - len(full),
        "front_size": len(front), "hypervolume": hv,
        "front": [{"trial": r.number, "fidelity": r.quality, "nonzero_params": r.size} for r in front],
    }


def compare(args: argparse.Namespace, target: float | None, db: str) -> dict[str, Any]:
    task = {"kind": "embedding", "calibration": 64, "search": args.search, "report": 32, "batch_size": 32}
    spec = SearchSpec.from_dict({
        "name": "bench-mf", "model": {"source": "minilm"}, "task": task,
        "space": {"criterion": "wanda", "max": 0.9, "step": 0.05}, "seed": 0,
        **({"target": {"sparsity": target}} if target is not None else {}),
    })
    bench = build_workbench(spec)
    bench.evaluator.evaluate(bench.space.project([0.5] * bench.space.dim))  # the first pass is slower
    bench.evaluator.evaluate(bench.space.project([0.5] * bench.space.dim), fidelity=args.fraction)
    mode = "pareto" if target is None else "budget"
    full = run_arm(bench, RandomSearch(bench.space, seed=0), args.seconds, db, f"{mode}-full")
    print(f"{mode} full: {full['candidates']} candidates, hypervolume {full['hypervolume']:.4f}", flush=True)
    rule = PromotionRule(pareto=target is None, top=0.25)
    screened = run_arm(bench, ScreenedStrategy(RandomSearch(bench.space, seed=0), fraction=args.fraction, rule=rule),
                       args.seconds, db, f"{mode}-screened")
    print(f"{mode} screened: {screened['candidates']} candidates ({screened['full_fidelity_evaluations']} promoted), "
          f"hypervolume {screened['hypervolume']:.4f}", flush=True)
    return {"provenance": provenance(vars(args) | {"target": target}, bench=bench, seeds=[0]),
            "full": full, "screened": screened,
            "candidates_ratio": screened["candidates"] / full["candidates"],
            "hypervolume_ratio": screened["hypervolume"] / full["hypervolume"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="wall time per arm")
    ap.add_argument("--search", type=int, default=256)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/mf.db"
        pareto = compare(args, None, db)
        budget = compare(args, 0.7, db)
    out = {
        "benchmark": "multifidelity",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()}, torch threads {args.threads}",
        "model": "all-MiniLM-L6-v2", "search_chunks": args.search, "fraction": args.fraction,
        "seconds_per_arm": args.seconds, "pareto": pareto, "budget_0.7": budget,
    }
    (ROOT / "benchmarks" / "results" / "multifidelity.json").write_text(json.dumps(out, indent=2))
    print(f"RESULT candidates_ratio={pareto['candidates_ratio']:.3f} hypervolume_ratio={pareto['hypervolume_ratio']:.4f} "
          f"budget_candidates_ratio={budget['candidates_ratio']:.3f} budget_hypervolume_ratio={budget['hypervolume_ratio']:.4f}")


if __name__ == "__main__":
    main()
