"""Search quality on MiniLM: every strategy at one overall sparsity, scored on REPORT.

Budget mode (default): each strategy gets the same compute, ``--budget`` evaluations of
the full search split (a multi-fidelity screen at fraction f counts as f of one), runs
through ``prunetune.engine.runner.run_job`` (real SQLite study per run), and its best
allocation is re-scored on the REPORT split (disjoint from calibration and search).
Prints per strategy the mean and spread over seeds of ``1 - fidelity`` and retrieval@1,
writes JSON with provenance to ``benchmarks/results/``, and ends with::

    RESULT uniform=<x> owl=<x> random=<x> evolutionary=<x> bayesian=<x> policy_gradient=<x>

(each the mean over seeds of REPORT-split ``1 - fidelity`` of the strategy's best).

Pareto mode (``--pareto``): each strategy searches the whole front with ``--budget``
trials; its front is re-scored on REPORT and summarised by the hypervolume of
(fidelity, nonzero parameters as a fraction of the model's) against the fixed reference
point (fidelity 0, size 1). Ends with ``RESULT hv_<strategy>=<x> ...``.

``--reconstruction sparsegpt`` searches over a level database of SparseGPT-reconstructed
layers instead of Wanda masks (uniform and OWL then are reconstructed too).

``--score-split validation`` scores the best allocation (or the front) on the validation
split instead (``task.validation``, cut after the other three: ``--validation`` chunks,
default as many as search) and writes ``search_quality_validation-*.json``, which the
README tables never read: tuning decisions (defaults, options) are made on these runs,
and REPORT is read only for the published figures.

A run writes ``<out>/partial/<name>.json`` as it goes; ``--resume`` continues from it,
running only what it lacks, so a run longer than a sitting spans several. In budget mode the
unit is a seed (every strategy of it, finished and scored): its equal-wall-time figures compare
the seed's strategies, so they run whole in one sitting, on one machine. In Pareto mode, where
nothing compares wall times, the unit is one strategy of one seed (a seed at budget 256 takes
hours). The settings, model and data must be the same (an error says which differs); the
final file lists the sittings (start, commit, CPU, the (seed, strategy) runs of each). The
partial file is removed when the final one is written.

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/search_quality.py
--sparsity 0.7 --budget 64 --seeds 1``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# benchmarks/_common.py (the script's folder is on sys.path)
from _common import COMMIT_AT_START, cpu

from prunetune.engine.runner import provenance, run_job
from prunetune.engine.workbench import build_workbench
from prunetune.pareto import hypervolume
from prunetune.search.base import TrialResult
from prunetune.spec import SearchSpec

STRATEGIES = ("uniform", "owl", "random", "evolutionary", "bayesian", "policy-gradient")
HV_REFERENCE = (0.0, 1.0)  # (fidelity, nonzero parameters / model parameters)


def make_spec(args: argparse.Namespace, strategy: str, seed: int, trials: int, options: dict[str, Any]) -> SearchSpec:
    data: dict[str, Any] = {
        "name": f"bench-{strategy}",
        "model": {"source": "minilm"},
        "task": {"kind": "embedding", "data": "pydoc", "calibration": args.calibration,
                 "search": args.search, "report": args.report,
                 **({"validation": args.validation} if args.validation is not None else {})},
        "space": {"criterion": "wanda", "min": 0.0, "max": args.max, "step": 0.05,
                  "reconstruction": args.reconstruction},
        "budget": {"trials": trials},
        "strategy": {"name": strategy, "options": options},
        "resources": {"workers": 0, "threads": args.threads},
        "seed": seed,
    }
    if args.pareto:
        # Every front point scored on REPORT (the job's default scores a thinned front, at
        # most 12 points): the hypervolume is of the whole front, as pareto_front.py's is.
        data["report"] = {"points": 10_000}
    else:
        data["target"] = {"sparsity": args.sparsity}
    return SearchSpec.from_dict(data)


def strategy_options(args: argparse.Namespace, strategy: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if strategy == "evolutionary" and not args.pareto and args.screen > 0:
        options["screen"] = args.screen
    options.update(args.options.get(strategy, {}))
    return options


def run_one(args: argparse.Namespace, bench: Any, strategy: str, seed: int, db: str) -> dict[str, Any]:
    options = strategy_options(args, strategy)
    screened = "screen" in options
    # Screens cost a fraction of an evaluation: allow more trials, stop on spent compute.
    trials = args.budget * 4 if screened else args.budget
    spec = make_spec(args, strategy, seed, trials, options)
    spent = [0.0]
    timeline: list[tuple[float, TrialResult]] = []  # (seconds since start, full-fidelity result)

    def progress(done: int, total: int, r: TrialResult | None) -> None:
        if r is not None:
            spent[0] += r.candidate.fidelity
            if r.ok and r.candidate.fidelity == 1.0 and r.quality is not None:
                timeline.append((time.perf_counter() - start, r))

    start = time.perf_counter()
    out = run_job(spec, db=db, bench=bench, on_progress=progress,
                  should_stop=lambda: spent[0] >= args.budget - 1e-9)
    wall = time.perf_counter() - start
    scores = out.reports
    if args.score_split == "validation":  # the front (Pareto) or the best, scored on validation
        scored = out.front if args.pareto else out.front[:1]
        scores = {r.number: bench.evaluator.evaluate(r.candidate.sparsities, split="validation") for r in scored}
    full = [r for r in out.results if r.ok and r.candidate.fidelity == 1.0]
    row: dict[str, Any] = {
        "strategy": strategy, "seed": seed, "options": options, "trials": len(out.results),
        "full_evaluations": len(full), "cost": round(spent[0], 3),
        "failed": sum(1 for r in out.results if not r.ok), "wall_seconds": round(wall, 1),
        "score_split": args.score_split,
    }
    if args.pareto:
        total = bench.space.prunable_params + bench.space.extra_params
        pts = [(scores[r.number]["fidelity"], r.size / total) for r in out.front
               if r.number in scores and "fidelity" in scores[r.number] and r.size]
        row["front"] = [{"trial": r.number, "size": r.size, "search": r.quality,
                         args.score_split: scores.get(r.number, {})} for r in out.front]
        row["hypervolume"] = hypervolume(pts, HV_REFERENCE)
        row["hypervolume_search"] = hypervolume(
            [(float(r.quality), float(r.size) / total) for r in out.front], HV_REFERENCE)  # type: ignore[arg-type]
        return row
    best = out.front[0]
    report = scores[best.number]
    row.update({
        "best_trial": best.number, "best_origin": best.candidate.origin,
        "search_fidelity": best.quality, f"{args.score_split}_fidelity": report["fidelity"],
        "one_minus_fidelity": 1.0 - report["fidelity"],
        "retrieval_at_1": report.get("retrieval_at_1"),
        "sparsity": bench.space.overall_sparsity(best.candidate.sparsities),
        "allocation": dict(zip(bench.space.names, best.candidate.sparsities, strict=True)),
        "curve": [max(r2.quality for r2 in full[: i + 1]) for i in range(len(full))],  # type: ignore[type-var]
        "search_seconds": round(timeline[-1][0], 2) if timeline else None,
        "_timeline": timeline,  # for equal_wall_time(); not written
    })
    return row


def equal_wall_time(rows: list[dict[str, Any]], bench: Any, split: str) -> None:
    """Budget mode: what a screened search had found by the time the unscreened searches
    of the same seed finished (the mean of their search seconds), scored on ``split``.

    Equal evaluations are not equal time: screening spends extra wall time on partial
    evaluations. This stops a screened search's clock at the others' time after the fact
    (its best among the results told by then; proposals never depend on later results)
    and adds ``equal_wall`` to its row. The extra scoring runs after the seed's searches,
    outside their clocks."""
    for seed in dict.fromkeys(r["seed"] for r in rows):
        same = [r for r in rows if r["seed"] == seed and r.get("_timeline") is not None]
        others = [r for r in same if r["strategy"] in ("random", "bayesian", "policy-gradient")
                  and "screen" not in r["options"] and r.get("search_seconds")]
        if not others:
            continue
        limit = statistics.fmean(r["search_seconds"] for r in others)
        for r in same:
            if "screen" not in r["options"]:
                continue
            told = [res for t, res in r["_timeline"] if t <= limit]
            if not told:
                continue
            best = max(told, key=lambda res: float(res.quality))  # type: ignore[arg-type]
            score = (1.0 - r[f"{split}_fidelity"] if best.number == r["best_trial"] else
                     1.0 - bench.evaluator.evaluate(best.candidate.sparsities, split=split)["fidelity"])
            r["equal_wall"] = {"seconds": round(limit, 1), "against": [o["strategy"] for o in others],
                               "trial": best.number, "full_evaluations": len(told),
                               "search_fidelity": float(best.quality), "one_minus_fidelity": score,  # type: ignore[arg-type]
                               "allocation": dict(zip(bench.space.names, best.candidate.sparsities, strict=True))}


def level_figures(bench: Any) -> dict[str, float] | None:
    """Build time (0 when read from the cache: see ``levels_seconds``) and size of the level database."""
    if bench.levels is None:
        return None
    return {"build_seconds": bench.levels.build_seconds, "nbytes": bench.levels.nbytes,
            "levels_seconds": bench.timings.get("levels", 0.0)}


def summarise(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in dict.fromkeys(r["strategy"] for r in rows):
        vals = [r[key] for r in rows if r["strategy"] == s and r.get(key) is not None]
        if vals:
            out[s] = {"mean": statistics.fmean(vals), "spread": (max(vals) - min(vals)) / 2, "n": len(vals)}
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line, also read by ``decide_defaults.py`` for the same task and budget."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sparsity", type=float, default=0.7, help="overall target sparsity (budget mode)")
    p.add_argument("--budget", type=int, default=64, help="full-search-split evaluations per strategy")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--pareto", action="store_true", help="Pareto mode: hypervolume of fronts")
    p.add_argument("--screen", type=float, default=0.25,
                   help="evolutionary multi-fidelity screening fraction (0: off)")
    p.add_argument("--options", type=json.loads, default={},
                   help='extra strategy options as JSON, e.g. \'{"evolutionary": {"partitions": ["layer", "kind"]}}\'')
    p.add_argument("--reconstruction", default="none", choices=("none", "sparsegpt"),
                   help="candidates from a level database of reconstructed weights (space.reconstruction)")
    p.add_argument("--calibration", type=int, default=256)
    p.add_argument("--search", type=int, default=128, help="search-split chunks")
    p.add_argument("--report", type=int, default=512)
    p.add_argument("--validation", type=int, default=None,
                   help="validation-split chunks (default: as many as --search)")
    p.add_argument("--score-split", default="report", choices=("report", "validation"),
                   help="where the best allocation (or the front) is scored: report for published "
                        "figures, validation for tuning decisions")
    p.add_argument("--max", type=float, default=0.95, help="per-layer sparsity cap")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/partial/<name>.json: run only the seeds it lacks "
                        "(Pareto mode: the (seed, strategy) runs)")
    return p


def recorded_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a result file records (and a resumed run must share)."""
    return {k: v for k, v in vars(args).items() if k != "resume"}


def resumed(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The partial file at ``path``, checked against this run's settings (before any work)."""
    earlier = json.loads(path.read_text())
    want = json.loads(json.dumps(recorded_args(args), default=str))  # as the file holds them
    for key in sorted(set(want) | set(earlier["args"])):
        if earlier["args"].get(key) != want.get(key):
            raise SystemExit(f"--resume: {path} was run with {key}={earlier['args'].get(key)!r}, this run has "
                             f"{key}={want.get(key)!r}; run with the same settings, or delete the file to start over")
    return earlier


def same_model(path: Path, earlier: dict[str, Any], prov: dict[str, Any]) -> None:
    """A resumed run's model and data must be the partial file's."""
    for key in ("model_fingerprint", "data_hashes"):
        if earlier["provenance"].get(key) != prov.get(key):
            raise SystemExit(f"--resume: {path} was run with {key} {earlier['provenance'].get(key)!r}, this run "
                             f"has {prov.get(key)!r} (another model or data); delete the file to start over")


def result_name(args: argparse.Namespace) -> str:
    """The stem of the run's files: ``<out>/<stem>-<start>.json`` and ``<out>/partial/<stem>.json``."""
    mode = "pareto" if args.pareto else f"s{args.sparsity}"
    if args.reconstruction != "none":
        mode += f"-{args.reconstruction}"
    # Validation runs under their own prefix: the README's tables (search_quality-*) never read them.
    stem = "search_quality" if args.score_split == "report" else "search_quality_validation"
    return f"{stem}-{mode}-b{args.budget}-n{args.seeds}"


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        p.error(f"--strategies: unknown {unknown}; allowed: {', '.join(STRATEGIES)}")
    if not isinstance(args.options, dict) or not all(
        k in STRATEGIES and isinstance(v, dict) for k, v in args.options.items()
    ):
        p.error(f"--options: a JSON object from strategy name ({', '.join(STRATEGIES)}) to options; got {args.options!r}")

    started = datetime.now(timezone.utc)
    name = result_name(args)
    out = Path(args.out)
    partial = out / "partial" / f"{name}.json"
    earlier = resumed(partial, args) if args.resume and partial.exists() else None
    bench = build_workbench(make_spec(args, "uniform", 0, args.budget, {}))
    prov = provenance(bench.spec, bench) | {"cpu": cpu()}
    sitting: dict[str, Any] = {"started": started.isoformat(), "git_commit": COMMIT_AT_START,
                               "cpu": prov["cpu"], "runs": []}
    rows: list[dict[str, Any]] = []
    sittings = [sitting]
    if earlier is not None:
        same_model(partial, earlier, prov)
        rows, sittings = earlier["runs"], [*earlier["sittings"], sitting]
        print(f"--resume: {len(rows)} runs (seed, strategy) from {partial}", flush=True)
    # A budget-mode seed is one unit (its equal-wall-time figures compare its strategies, so
    # they run in one sitting); a Pareto-mode seed can take hours, so each strategy is one.
    done = {(r["seed"], r["strategy"]) for r in rows}

    def save() -> None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"args": recorded_args(args), "provenance": prov,
                                       "sittings": sittings, "runs": rows}, indent=2, default=str))
        print(f"wrote {partial} ({len(rows)} of {args.seeds * len(strategies)} runs)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            if all((seed, s) in done for s in strategies):
                continue
            seed_rows: list[dict[str, Any]] = []
            for strategy in strategies:
                if (seed, strategy) in done:
                    continue
                if strategy in ("uniform", "owl") and seed > 0:
                    row = dict(next(r for r in rows if r["strategy"] == strategy), seed=seed)
                    # deterministic baselines (a level or a sweep of levels): one run stands for every seed
                else:
                    row = run_one(args, bench, strategy, seed, f"sqlite:///{tmp}/{strategy}-{seed}.db")
                    r1 = row.get("retrieval_at_1")
                    shown = (f"hv={row['hypervolume']:.4f}" if args.pareto else
                             f"1-fid={row['one_minus_fidelity']:.4f} ({args.score_split}) "
                             f"r@1={'-' if r1 is None else f'{r1:.3f}'} (search {1 - row['search_fidelity']:.4f})")
                    print(f"{strategy:16s} seed={seed} {shown} trials={row['trials']} cost={row['cost']} "
                          f"{row['wall_seconds']}s", flush=True)
                    sitting["runs"].append([seed, strategy])
                seed_rows.append(row)
                rows.append(row)
                if args.pareto:
                    save()
            if not args.pareto:
                equal_wall_time(seed_rows, bench, args.score_split)
                for r in seed_rows:
                    r.pop("_timeline", None)
                save()

    key = "hypervolume" if args.pareto else "one_minus_fidelity"
    summary = summarise(rows, key)
    first = sittings[0]  # the run's start and commit are its first sitting's
    cpus = list(dict.fromkeys(str(x["cpu"]) for x in sittings if x["runs"]))
    result = {
        "benchmark": "search_quality", "mode": "pareto" if args.pareto else "budget",
        "args": recorded_args(args), "score_split": args.score_split, "started": first["started"],
        "git_commit": first["git_commit"],
        "machine": f"{platform.machine()} {platform.system()} {platform.processor()}",
        "provenance": prov | {"cpu": "; ".join(cpus)}, "dense": bench.task.dense_reference(),
        "reconstruction": args.reconstruction, "levels": level_figures(bench),
        "hv_reference": HV_REFERENCE if args.pareto else None,
        "summary": summary, "retrieval": summarise(rows, "retrieval_at_1") if not args.pareto else None,
        "runs": rows,
    }
    if len(sittings) > 1:
        result["sittings"] = sittings
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{datetime.fromisoformat(first['started']):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    partial.unlink(missing_ok=True)
    print(f"wrote {path}")
    for s, v in summary.items():
        print(f"  {s:16s} {key} mean={v['mean']:.4f} ±{v['spread']:.4f} (n={v['n']:.0f})")
    prefix = "hv_" if args.pareto else ""
    print("RESULT " + " ".join(f"{prefix}{s.replace('-', '_')}={v['mean']:.4f}" for s, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
