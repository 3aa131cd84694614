"""The Pareto front against the uniform sweep, read where a user reads it.

For each seed, a Pareto-mode evolutionary search (``front: levels``: level-switch
searches at the front levels that share what they learn, then gap filling) with
``--budget`` evaluations of the search split; every point of its front is scored on the
REPORT split. Beside it:

- per front level, a budget-mode evolutionary search given a quarter of the budget at
  that level (``--budget / 4`` evaluations), its best scored on REPORT;
- uniform at each level (the job's own uniform baseline, scored on REPORT);
- the uniform sweep of ``--budget`` levels over the bounds, every point scored on
  REPORT, for the hypervolume (``--uniform-from`` reads it from an earlier
  ``search_quality.py --pareto`` result with the same task, which is deterministic).

Per level the front's quality is the best REPORT quality on the front at that size or
smaller (what a user reads off it). Hypervolume is over (quality, nonzero parameters as
a fraction of the model's) against (0, 1), for bounded metrics (MiniLM's fidelity).

Models: ``minilm`` (embedding fidelity, the bundled all-MiniLM-L6-v2) or ``llama`` (the
4-block Llama of ``causal_lm.py``, the committed one unless ``--retrain``; REPORT perplexity). Writes
``benchmarks/results/pareto_front-<model>[-<reconstruction>]-b<budget>-n<seeds>.json``
and ends with ``RESULT``.

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/pareto_front.py
--budget 64 --seeds 3 --uniform-from benchmarks/results/search_quality-pareto-b64-...json``
(``--reuse`` an earlier result to add seeds or the budget-mode searches to it). After each
finished run the result so far is written beside the file as ``*.partial.json``, which
``--reuse`` continues from after an interruption; the file itself is written at the end.

Tuning the front search (``--options`` passes evolutionary options, e.g. ``fill``) is
decided with ``--score-split validation``: fronts, the budget-mode searches and uniform
are then scored on the validation split, REPORT is read for nothing, and the file is
``pareto_front_validation-...``, which the README's tables never read.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, project_path, provenance

# run_job imports these when it needs them: load them now, before the tree can change.
import prunetune.report.outputs  # noqa: F401
from prunetune.engine.baselines import baseline_allocations
from prunetune.engine.runner import run_job
from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.pareto import best_at_sizes, hypervolume
from prunetune.search.controller import level_size
from prunetune.spec import SearchSpec

HV_REFERENCE = (0.0, 1.0)
# The Llama's task: its splits are the text the committed model did not train on.
LLAMA_TASK: dict[str, Any] = {"kind": "causal-lm", "data": "pydoc", "calibration": 64, "search": 32, "report": 64,
                              "max_length": 128, "batch_size": 16}


def make_spec(args: argparse.Namespace, model: dict[str, Any], *, seed: int, trials: int,
              target: float | None = None, baselines: bool = False) -> SearchSpec:
    if args.model == "minilm":
        task: dict[str, Any] = {"kind": "embedding", "data": "pydoc", "calibration": 256, "search": 128,
                                "report": 512, "retrieval": False}
        space: dict[str, Any] = {"criterion": "wanda", "min": 0.0, "max": 0.95, "step": 0.05}
    else:
        task = dict(LLAMA_TASK)
        space = {"criterion": "wanda", "min": 0.0, "max": 0.9, "step": 0.05}
    space["reconstruction"] = args.reconstruction
    if args.score_split == "validation":
        task["validation"] = task["search"]
    data: dict[str, Any] = {
        "name": f"pareto-front-{args.model}", "model": model, "task": task, "space": space,
        "budget": {"trials": trials}, "strategy": {"name": "evolutionary", "options": dict(args.options)},
        "resources": {"workers": 0, "threads": args.threads}, "seed": seed,
    }
    if target is None:
        data["target"] = {"sparsities": args.levels}
        if args.score_split == "validation":  # REPORT is not read: score as little as allowed
            data["report"] = {"points": 1, "baselines": []}
        else:  # every front point on REPORT (the hypervolume needs them all); uniform once
            data["report"] = {"points": 10_000, "baselines": ["uniform"] if baselines else []}
    else:
        data["target"] = {"sparsity": target}
        data["report"] = {"baselines": []}
    return SearchSpec.from_dict(data)


def quality_of(metrics: dict[str, float], name: str) -> float:
    return float(metrics[name])


def pareto_run(args: argparse.Namespace, bench: Workbench, model: dict[str, Any], seed: int, db: str) -> dict[str, Any]:
    spec = make_spec(args, model, seed=seed, trials=args.budget, baselines=seed == 0)
    start = time.perf_counter()
    out = run_job(spec, db=db, bench=bench)
    wall = time.perf_counter() - start
    q = out.quality_name
    space = bench.space
    total = space.prunable_params + space.extra_params
    scores = scored_on(args, bench, out.reports, {r.number: r.candidate.sparsities for r in out.front})
    scored = [r for r in out.front if q in scores.get(r.number, {})]
    points = [(quality_of(scores[r.number], q), float(r.size)) for r in scored]  # type: ignore[arg-type]
    sizes = [level_size(space, t) for t in args.levels]
    at = best_at_sizes(points, sizes)
    row: dict[str, Any] = {
        "seed": seed, "trials": len(out.results), "front_points": len(out.front), "wall_seconds": round(wall, 1),
        "phases": {k: round(v, 1) for k, v in out.extra["phases"].items()},  # type: ignore[attr-defined]
        "eval_seconds": round(out.eval_seconds, 1),
        "levels": {str(t): (None if i is None else points[i][0]) for t, i in zip(args.levels, at, strict=True)},
        "origins": {o: sum(1 for r in out.results if r.candidate.origin == o)
                    for o in sorted({r.candidate.origin for r in out.results})},
        "front": [{"trial": r.number, "size": r.size, "search": r.quality, args.score_split: scores.get(r.number, {}),
                   "origin": r.candidate.origin, "sparsities": list(r.candidate.sparsities)} for r in out.front],
        "baselines": out.extra.get("baselines") or {},
    }
    if q == "fidelity":
        row["hypervolume"] = hypervolume([(v, s / total) for v, s in points], HV_REFERENCE)
        row["hypervolume_search"] = hypervolume(
            [(float(r.quality), float(r.size) / total) for r in out.front], HV_REFERENCE)  # type: ignore[arg-type]
    return row


def budget_run(args: argparse.Namespace, model: dict[str, Any], level: float, seed: int, db: str) -> dict[str, Any]:
    spec = make_spec(args, model, seed=seed, trials=max(1, args.budget // 4), target=level)
    bench = build_workbench(spec)  # scores and levels come from the cache the Pareto bench filled
    start = time.perf_counter()
    out = run_job(spec, db=db, bench=bench)
    best = out.front[0]
    scores = scored_on(args, bench, out.reports, {best.number: best.candidate.sparsities})
    return {"level": level, "seed": seed, "trials": len(out.results),
            "report": quality_of(scores[best.number], out.quality_name),
            "search": best.quality, "wall_seconds": round(time.perf_counter() - start, 1)}


def scored_on(args: argparse.Namespace, bench: Workbench, reports: dict[int, dict[str, float]],
              allocations: dict[int, Any]) -> dict[int, dict[str, float]]:
    """The job's REPORT scores, or with ``--score-split validation`` the allocations
    re-scored on the validation split (tuning runs never read REPORT)."""
    if args.score_split == "report":
        return reports
    return {n: bench.evaluator.evaluate(a, split="validation") for n, a in allocations.items()}


def uniform_sweep(path: Path, total_of: Workbench) -> dict[str, Any]:
    """Hypervolume (REPORT) of an earlier uniform sweep's front, and its settings."""
    data = json.loads(path.read_text())
    run = next(r for r in data["runs"] if r["strategy"] == "uniform")
    unscored = sum(1 for p in run["front"] if "fidelity" not in p.get("report", {}))
    if unscored:
        raise SystemExit(f"--uniform-from {path}: {unscored} of the uniform sweep's {len(run['front'])} front "
                         "points have no REPORT score (a thinned report phase); the hypervolume needs the "
                         "whole sweep scored: rerun search_quality.py --pareto")
    total = total_of.space.prunable_params + total_of.space.extra_params
    pts = [(p["report"]["fidelity"], p["size"] / total) for p in run["front"]]
    return {"file": project_path(path),
            "budget": data["args"]["budget"], "points": len(pts),
            "hypervolume": hypervolume(pts, HV_REFERENCE), "wall_seconds": run["wall_seconds"]}


def earlier_result(flag: str, path: Path, args: argparse.Namespace, bench: Workbench,
                   same: tuple[str, ...]) -> dict[str, Any]:
    """An earlier result whose runs this one keeps: its ``same`` arguments must be these,
    and it must have pruned the same dense model (a retrained Llama moves with the
    machine)."""
    earlier: dict[str, Any] = json.loads(path.read_text())
    # files from before --options and --score-split ran with their defaults
    ran = {"options": {}, "score_split": "report", **earlier["args"]}
    if any(ran[k] != vars(args)[k] for k in same):
        raise SystemExit(f"{flag} {path}: its {same} differ from these")
    dense = bench.task.dense_reference()
    if earlier.get("dense") != dense:
        raise SystemExit(f"{flag} {path}: its dense model scored {earlier.get('dense')}, this one {dense}: "
                         "not the same model")
    return earlier


def result_file(value: str) -> Path:
    """A path, or ``latest:PREFIX``: the newest ``benchmarks/results/PREFIX-<timestamp>.json``."""
    if not value.startswith("latest:"):
        return Path(value)
    prefix = value.removeprefix("latest:")
    found = sorted((ROOT / "benchmarks" / "results").glob(f"{prefix}-*.json"))
    if not found:
        raise argparse.ArgumentTypeError(f"no benchmarks/results/{prefix}-*.json")
    return found[-1]


def shown(value: Any) -> Any:
    """An argument as the result file records it: a path by :func:`project_path`
    (``latest:`` resolves to an absolute one)."""
    return project_path(value) if isinstance(value, Path) else value


def mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def summarize(args: argparse.Namespace, bench: Workbench, started: str, runs: list[dict[str, Any]],
              budget_rows: list[dict[str, Any]], uniform_levels: dict[str, float]) -> dict[str, Any]:
    """The result file's content: per level the front (mean over the runs so far), the
    quarter-budget searches and uniform; hypervolume against the uniform sweep."""
    uniform = uniform_sweep(args.uniform_from, bench) if args.uniform_from else None
    per_level = {}
    for t in args.levels:
        key = str(t)
        per_level[key] = {
            "front": mean([r["levels"][key] for r in runs if r["levels"][key] is not None]),
            "front_runs": [r["levels"][key] for r in runs],
            "budget_quarter": mean([b["report"] for b in budget_rows if b["level"] == t]),
            "budget_quarter_runs": [b["report"] for b in budget_rows if b["level"] == t],
            "uniform": uniform_levels.get(key),
        }
    summary: dict[str, Any] = {"levels": per_level}
    if "hypervolume" in runs[0]:
        summary["hypervolume"] = mean([r["hypervolume"] for r in runs])
        summary["hypervolume_runs"] = [r["hypervolume"] for r in runs]
    if uniform:
        summary["uniform_sweep"] = uniform
    summary["search_seconds"] = mean([r["phases"]["search"] for r in runs])
    summary["report_seconds"] = mean([r["phases"]["report_front"] for r in runs])
    return {
        "benchmark": "pareto_front", "args": {k: shown(v) for k, v in vars(args).items()},
        "started": started, "quality": bench.task.quality_name, "dense": bench.task.dense_reference(),
        "hv_reference": HV_REFERENCE, "summary": summary, "runs": runs, "budget_runs": budget_rows,
        "provenance": provenance(vars(args), bench=bench, seeds=[r["seed"] for r in runs]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("minilm", "llama"), default="minilm")
    p.add_argument("--budget", type=int, default=64)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--levels", type=lambda s: [float(x) for x in s.split(",")], default=None,
                   help="front levels (default 0.5,0.6,0.7,0.8; llama 0.5,0.7)")
    p.add_argument("--reconstruction", default="none", choices=("none", "sparsegpt"))
    p.add_argument("--uniform-from", type=result_file, default=None,
                   help="an earlier search_quality.py --pareto result holding the uniform sweep, or "
                        "latest:PREFIX for the newest benchmarks/results/PREFIX-*.json")
    p.add_argument("--no-budget", action="store_true", help="skip the budget-mode searches")
    p.add_argument("--reuse", type=Path, default=None,
                   help="an earlier pareto_front result (or the *.partial.json an interrupted run left) "
                        "with the same model, budget, levels and options: its Pareto runs (seeds 0, 1, ...) "
                        "and budget runs are kept, the others run")
    p.add_argument("--budget-runs-from", type=Path, default=None,
                   help="an earlier pareto_front result with the same model, budget, levels and split: "
                        "only its budget-mode searches are kept (they take no front option, so a change "
                        "of the front search's settings leaves them as they were); the fronts all run")
    p.add_argument("--steps", type=int, default=600,
                   help="llama: training steps (600: the committed model, unless --retrain)")
    p.add_argument("--retrain", action="store_true",
                   help="llama: train it here even where the committed model has this recipe")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--options", type=json.loads, default={},
                   help='the front search\'s evolutionary options as JSON, e.g. \'{"fill": 0.1}\'')
    p.add_argument("--score-split", default="report", choices=("report", "validation"),
                   help="where fronts, budget searches and uniform levels are scored: report for "
                        "published figures, validation for tuning decisions (file pareto_front_validation-*)")
    args = p.parse_args(argv)
    if args.reuse and args.budget_runs_from:
        p.error("--budget-runs-from: give it or --reuse (which keeps the budget runs too), not both")
    if not isinstance(args.options, dict):
        p.error(f"--options: a JSON object of evolutionary options; got {args.options!r}")
    if args.score_split == "validation" and args.model == "llama":
        p.error("--score-split: validation is not held out on the Llama (most of its windows lie in the text the "
                "Llama trained on, which starts after report); make tuning decisions on --model minilm")
    if args.score_split == "validation" and args.uniform_from:
        p.error("--uniform-from: the uniform sweep is scored on REPORT; leave it out with --score-split validation")
    if args.levels is None:
        args.levels = [0.5, 0.6, 0.7, 0.8] if args.model == "minilm" else [0.5, 0.7]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stem = "pareto_front" if args.score_split == "report" else "pareto_front_validation"
    name = f"{stem}-{args.model}" + (f"-{args.reconstruction}" if args.reconstruction != "none" else "")
    if args.options:
        # fill0.25, step_scales_0.5_1.0_2.0: plain characters only
        name += "-" + "-".join(re.sub(r"[^\w.]+", "_", f"{k}{v}").strip("_") for k, v in sorted(args.options.items()))
    path = ROOT / "benchmarks" / "results" / f"{name}-b{args.budget}-n{args.seeds}.json"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.model == "minilm":
            model: dict[str, Any] = {"source": "minilm"}
        else:
            from causal_lm import llama, text_bytes

            used = text_bytes(LLAMA_TASK["calibration"], LLAMA_TASK["search"], LLAMA_TASK["report"],
                              LLAMA_TASK["max_length"])
            model = {"path": str(llama(tmp / "llama", args.steps, used, retrain=args.retrain))}
        bench = build_workbench(make_spec(args, model, seed=0, trials=args.budget))
        runs, budget_rows = [], []
        if args.reuse or args.budget_runs_from:
            # --reuse keeps the fronts too, so their options must match; the budget-mode
            # searches take no front option.
            # (not ``path``: that is where this result goes, and adding seeds names a new file)
            flag, earlier_path = (("--reuse", args.reuse) if args.reuse
                                  else ("--budget-runs-from", args.budget_runs_from))
            same = ("model", "budget", "levels", "reconstruction", "score_split") + (("options",) if args.reuse else ())
            earlier = earlier_result(flag, earlier_path, args, bench, same)
            if args.reuse:
                runs = earlier["runs"][:args.seeds]
            budget_rows = [b for b in earlier["budget_runs"] if b["seed"] < args.seeds]
        validation_uniform = None
        if args.score_split == "validation":
            spec = make_spec(args, model, seed=0, trials=args.budget)
            validation_uniform = {str(level): quality_of(bench.evaluator.evaluate(sp, split="validation"),
                                                         bench.task.quality_name)
                                  for _, level, sp in baseline_allocations(spec, bench, ("uniform",), args.levels)}

        def write(final: bool) -> dict[str, Any]:
            """The result so far; written to ``path`` when final, else beside it as
            ``*.partial.json`` (which ``--reuse`` continues from) after every finished run."""
            uniform_levels = validation_uniform if validation_uniform is not None else {
                str(b["level"]): b["quality"] for b in runs[0]["baselines"].get("uniform", [])}
            result = summarize(args, bench, started, runs, budget_rows, uniform_levels)
            target = path if final else path.with_suffix(".partial.json")
            target.write_text(json.dumps(result, indent=2, default=str))
            if final:
                path.with_suffix(".partial.json").unlink(missing_ok=True)
            return result

        for seed in range(len(runs), args.seeds):
            row = pareto_run(args, bench, model, seed, f"sqlite:///{tmp}/pareto-{seed}.db")
            runs.append(row)
            print(f"pareto seed={seed} hv={row.get('hypervolume')} levels={row['levels']} "
                  f"front={row['front_points']} phases={row['phases']}", flush=True)
            write(final=False)
        if not args.no_budget:
            for seed in range(args.seeds):
                for level in args.levels:
                    if any(b["seed"] == seed and b["level"] == level for b in budget_rows):
                        continue
                    b = budget_run(args, model, level, seed, f"sqlite:///{tmp}/budget-{level}-{seed}.db")
                    budget_rows.append(b)
                    print(f"budget level={level} seed={seed} report={b['report']:.4f}", flush=True)
                    write(final=False)
        result = write(final=True)
    print(f"wrote {path}")
    summary, uniform = result["summary"], result["summary"].get("uniform_sweep")
    per_level = summary["levels"]
    parts = [f"{t}: front={v['front']} budget/4={v['budget_quarter']} uniform={v['uniform']}"
             for t, v in per_level.items()]
    print("RESULT " + "; ".join(parts) + (f"; hv={summary.get('hypervolume')}" if "hypervolume" in summary else "")
          + (f" uniform_sweep_hv={uniform['hypervolume']}" if uniform else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
