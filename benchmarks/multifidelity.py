"""Multi-fidelity screening at equal wall time, on the real MiniLM, in Pareto and budget mode.

Two arms run the real controller loop (the same ``--strategy`` with the same seed, real
SQLite study) for the same wall time each: ``full`` scores every candidate on the whole
search split; ``screened`` scores each on a fixed, representative ``--fraction`` of it
and promotes to the full split only those that could still improve the result
(``PromotionRule``). Both fronts use full-fidelity results only; hypervolume is over
(search-split fidelity, nonzero parameters) with the reference point (fidelity 0, the
dense model's parameters), divided by the reference size. Run in Pareto mode and in
budget mode (overall sparsity 0.7: the front is the best trial, so hypervolume ratio =
best-fidelity ratio).

The default strategy is ``random``. Measured with ``--strategy evolutionary`` (60 s per
arm): in budget mode its (1+λ) offspring are neighbours of the parent whose slice scores
lie within 0.005 of each other, no more than the slice's own error (the full - slice gap
ranged 0.005-0.016), so 21 of 28 were promoted; in Pareto mode its opening sweep of
uniform levels and its level shifts fill gaps in the front, non-dominated by
construction, so all 23 were promoted. Screening pays where proposals differ by more
than the slice's error, as independent random proposals do.

Each arm also records ``improving_when_scored``: full-fidelity results not dominated by an
earlier one when they were scored (budget mode: new bests). Screening can skip at most the
other ones, and each candidate pays for its slice (``mean_low_eval_s``, about a quarter
of ``mean_full_eval_s`` at fraction 0.25), so it can only pay when more than that share
of the candidates would not have improved the front. With random proposals in Pareto
mode at 120 s most do improve it (46 of 58 on 2026-11-30: the front is still sparse), so
screening costs there; in budget mode few do (9 of 62), and screening pays.

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

from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.pareto import hypervolume
from prunetune.search.base import Strategy
from prunetune.search.controller import Controller
from prunetune.search.registry import STRATEGIES, strategy_class
from prunetune.search.screening import PromotionRule, ScreenedStrategy
from prunetune.spec import SearchSpec
from prunetune.store.studies import TrialRecorder, result_front
from prunetune.workers.base import InProcessExecutor

ROOT = Path(__file__).resolve().parents[1]


def run_arm(bench: Workbench, strategy: Strategy, seconds: float, db: str, name: str) -> dict[str, Any]:
    recorder = TrialRecorder(db, name, bench.space, bench.task.quality_name)
    start = time.perf_counter()
    controller = Controller(strategy, InProcessExecutor(bench), recorder, 100_000, bench.task.quality_name,
                            should_stop=lambda: time.perf_counter() - start > seconds)
    results = controller.run()
    wall = time.perf_counter() - start
    front = result_front(results, pareto=True)
    ref = (0.0, float(bench.space.prunable_params + bench.space.extra_params))
    hv = hypervolume([(r.quality, r.size) for r in front], ref) / ref[1]  # type: ignore[misc]
    full = [r for r in results if r.candidate.fidelity == 1.0]
    low = [r for r in results if r.candidate.fidelity < 1.0]

    def mean_seconds(rs: list[Any]) -> float | None:
        secs = [r.metrics["eval_seconds"] for r in rs if "eval_seconds" in r.metrics]
        return sum(secs) / len(secs) if secs else None

    # Full-fidelity results not dominated by an earlier one when scored (budget mode: a new
    # best): the candidates that improved the front, which screening must not skip.
    improving, seen = 0, list[tuple[float, float]]()
    for r in sorted((r for r in full if r.ok), key=lambda r: r.number):
        q_r, s_r = float(r.quality), float(r.size)  # type: ignore[arg-type]
        improving += not any(q >= q_r and s <= s_r for q, s in seen)
        seen.append((q_r, s_r))
    out: dict[str, Any] = {"improving_when_scored": improving}
    if isinstance(strategy, ScreenedStrategy):
        final = {r.number for r in front}
        promoted = [r for r in full if r.candidate.origin == "promoted"]
        out["promotion"] = {
            "promoted": len(promoted), "screened": len(low),
            "promoted_on_final_front": sum(r.number in final for r in promoted),
            "pairs": [[r.candidate.info["screen_quality"], r.quality] for r in promoted if r.ok],
        }
    return out | {
        "wall_s": wall, "evaluations": len(results),
        "candidates": len({r.candidate.sparsities for r in results}),
        "full_fidelity_evaluations": len(full),
        "low_fidelity_evaluations": len(low),
        "mean_full_eval_s": mean_seconds(full), "mean_low_eval_s": mean_seconds(low),
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
    cls = strategy_class(args.strategy)
    full = run_arm(bench, cls(bench.space, seed=0), args.seconds, db, f"{mode}-full")
    print(f"{mode} full: {full['candidates']} candidates ({full['improving_when_scored']} improved the front "
          f"when scored), hypervolume {full['hypervolume']:.4f}", flush=True)
    rule = PromotionRule(pareto=target is None)
    screened = run_arm(bench, ScreenedStrategy(cls(bench.space, seed=0), fraction=args.fraction, rule=rule),
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
    ap.add_argument("--strategy", default="random", choices=sorted(STRATEGIES),
                    help="the search strategy of both arms (same seed)")
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
        "strategy": args.strategy,
        "seconds_per_arm": args.seconds, "pareto": pareto, "budget_0.7": budget,
    }
    (ROOT / "benchmarks" / "results" / "multifidelity.json").write_text(json.dumps(out, indent=2))
    print(f"RESULT candidates_ratio={pareto['candidates_ratio']:.3f} hypervolume_ratio={pareto['hypervolume_ratio']:.4f} "
          f"budget_candidates_ratio={budget['candidates_ratio']:.3f} budget_hypervolume_ratio={budget['hypervolume_ratio']:.4f}")


if __name__ == "__main__":
    main()
