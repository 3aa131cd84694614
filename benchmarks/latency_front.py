"""A latency front beside the size front, on the bundled all-MiniLM-L6-v2.

Two searches of ``--trials`` random allocations (same seed, so the same candidates) with
structured pruning (``--granularity``, default heads+neurons), one with
``objectives: {quality: maximize, latency: minimize}``, the other with the default
``{quality: maximize, size: minimize}``. Both measure latency (``task.latency_repeats``:
the median of that many CPU forward passes over one calibration batch, of the model as
exported, i.e. with the heads and neurons cut out) and count nonzero parameters, so every
point carries quality, size and latency. Front points are scored on the REPORT split.

Written to ``benchmarks/results/latency_front.json``: per search, the front (trial,
search and REPORT quality, nonzero parameters, sparsity, latency) and every trial, plus
the comparison: the trials on one front and not the other, and how well latency follows
size over the trials (Spearman rank correlation). The last line printed is ``RESULT ...``.

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/latency_front.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import ROOT, provenance

# run_job imports these when it needs them: load them now, before the tree can change.
import prunetune.engine.baselines
import prunetune.pruning.export  # the evaluator's latency of a structured candidate
import prunetune.report.outputs  # noqa: F401
from prunetune.engine.runner import run_job
from prunetune.engine.workbench import build_workbench
from prunetune.pareto import non_dominated
from prunetune.search.controller import SearchOutcome
from prunetune.spec import SearchSpec

OBJECTIVES = {
    "latency": {"quality": "maximize", "latency": "minimize"},
    "size": {"quality": "maximize", "size": "minimize"},
}


def make_spec(args: argparse.Namespace, objective: str) -> SearchSpec:
    return SearchSpec.from_dict({
        "name": f"latency-front-{objective}",
        "model": {"source": "minilm"},
        "task": {"kind": "embedding", "data": "pydoc", "calibration": args.calibration, "search": args.search,
                 "report": args.report, "batch_size": args.batch_size, "retrieval": False,
                 "latency_repeats": args.repeats},
        "space": {"granularity": args.granularity, "criterion": args.criterion, "min": 0.0, "max": 0.9,
                  "step": 0.05},
        "objectives": OBJECTIVES[objective],
        "budget": {"trials": args.trials},
        "strategy": {"name": "random"},
        "resources": {"workers": 0, "threads": args.threads},
        "report": {"baselines": [], "points": args.trials},
        "seed": args.seed,
    })


def point(r: Any, reports: dict[int, dict[str, float]], quality_name: str) -> dict[str, Any]:
    rep = reports.get(r.number, {})
    return {
        "trial": r.number,
        "quality": r.quality,
        "report_quality": rep.get(quality_name),
        "size": r.size,
        "sparsity": r.metrics.get("sparsity"),
        "latency": r.metrics.get("latency_seconds"),
    }


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        for rank, i in enumerate(order):
            out[i] = float(rank)
        return out

    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (sx * sy) if sx and sy else float("nan")


def summarize(out: SearchOutcome) -> dict[str, Any]:
    q = out.quality_name
    trials = [point(r, {}, q) for r in out.results if r.ok]
    return {
        "objectives": out.extra.get("objectives"),
        "front": [point(r, out.reports, q) for r in sorted(out.front, key=lambda r: r.metrics["latency_seconds"])],
        "trials": trials,
        "wall_seconds": out.wall_seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--granularity", default="heads+neurons")
    p.add_argument("--criterion", default="magnitude")
    p.add_argument("--repeats", type=int, default=5, help="task.latency_repeats")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calibration", type=int, default=64)
    p.add_argument("--search", type=int, default=64)
    p.add_argument("--report", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency_front.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    bench = build_workbench(make_spec(args, "latency"))
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for objective in OBJECTIVES:
            spec = make_spec(args, objective)
            out = run_job(spec, db=f"sqlite:///{tmp}/{objective}.db", bench=bench)
            runs[objective] = summarize(out)
            print(f"{objective}: front trials {[pt['trial'] for pt in runs[objective]['front']]}", flush=True)
    lat, size = runs["latency"], runs["size"]
    # Random with one seed: the two searches evaluated the same allocations, trial for trial.
    by_trial = {pt["trial"]: pt for pt in lat["trials"]}
    lat_front = {pt["trial"] for pt in lat["front"]}
    size_front = {pt["trial"] for pt in size["front"]}
    check = [(pt["quality"], pt["latency"]) for pt in lat["trials"]]
    comparison = {
        "latency_front_trials": sorted(lat_front),
        "size_front_trials": sorted(size_front),
        "only_on_latency_front": sorted(lat_front - size_front),
        "only_on_size_front": sorted(size_front - lat_front),
        "latency_front_is_non_dominated": sorted(lat["trials"][i]["trial"] for i in non_dominated(check))
        == sorted(lat_front),
        "spearman_size_latency": spearman([pt["size"] for pt in lat["trials"]], [pt["latency"] for pt in lat["trials"]]),
        "same_allocations": all(by_trial.get(pt["trial"], {}).get("size") == pt["size"] for pt in size["trials"]),
    }
    result = {
        "benchmark": "latency_front",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "quality_name": bench.task.quality_name,
        "dense_params": bench.space.extra_params + bench.space.prunable_params,
        "latency": lat,
        "size": size,
        "comparison": comparison,
        "wall_seconds": time.perf_counter() - start,
        "provenance": provenance({k: str(v) for k, v in vars(args).items()}, bench=bench, seeds=[args.seed]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"RESULT latency_front={len(lat_front)} points size_front={len(size_front)} points "
          f"only_latency={comparison['only_on_latency_front']} only_size={comparison['only_on_size_front']} "
          f"spearman_size_latency={comparison['spearman_size_latency']:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
