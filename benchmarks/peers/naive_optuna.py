"""The naive alternative, side by side with prunetune: what a user would write by hand.

Naive: an Optuna TPE study over one pruning amount per prunable layer (36 on MiniLM).
Each trial projects the suggested amounts exactly onto the overall target with
``prunetune.spaces.budget.project_sparsities`` (the same projection prunetune uses),
deep-copies the model, calls ``torch.nn.utils.prune.l1_unstructured`` on every layer,
tokenises the search texts in their given order and scores embedding fidelity (mean
cosine to the dense embeddings, computed once the same way). Its best allocation is
pruned the same naive way and scored on the REPORT split by prunetune's task, so both
sides are judged by one metric on one split.

prunetune: ``run_job`` with the same data (calibration/search/report splits of
prunetune's task), the same target and the same number of evaluations, per strategy in
``--strategies`` (``bayesian`` is TPE too, so the pair isolates everything but the
sampler).

Reported per side: seconds per evaluation (wall time from the start of the search to its
last finished evaluation, divided by the evaluations; REPORT scoring excluded) and
REPORT-split ``1 - fidelity``. Writes ``benchmarks/results/naive_optuna.json``; the last
line printed is::

    RESULT naive_s_per_eval=<s> naive_one_minus_fidelity=<x> <strategy>_s_per_eval=<s> <strategy>_one_minus_fidelity=<x> ...

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/peers/naive_optuna.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import ROOT, provenance

from prunetune.engine.runner import run_job
from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.spaces.budget import project_sparsities
from prunetune.spec import SearchSpec


def make_spec(args: argparse.Namespace, strategy: str, seed: int) -> SearchSpec:
    return SearchSpec.from_dict({
        "name": f"peer-{strategy}",
        "model": {"source": "minilm"},
        "task": {"kind": "embedding", "data": "pydoc", "calibration": args.calibration,
                 "search": args.search, "report": args.report},
        "space": {"criterion": "wanda", "min": 0.0, "max": args.max, "step": 0.05},
        "budget": {"trials": args.budget},
        "target": {"sparsity": args.sparsity},
        "strategy": {"name": strategy},
        "resources": {"workers": 0, "threads": args.threads},
        "report": {"baselines": []},  # no uniform/OWL report baselines: not part of either side
        "seed": seed,
    })


def naive_embed(model: nn.Module, tokenizer: Any, texts: list[str], batch_size: int, max_length: int) -> torch.Tensor:
    """Mean-pooled, normalised embeddings, tokenised on every call, batches in given order."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1))
    return torch.cat(out)


def naive_prune(bench: Workbench, sparsities: list[float]) -> nn.Module:
    model = copy.deepcopy(bench.loaded.model)
    modules = dict(model.named_modules())
    for layer, s in zip(bench.layers, sparsities, strict=True):
        prune.l1_unstructured(modules[layer.name], "weight", amount=s)
    return model


def run_naive(args: argparse.Namespace, bench: Workbench, seed: int) -> dict[str, Any]:
    spec = bench.spec
    tok, bs, ml = bench.loaded.tokenizer, spec.task.batch_size, spec.task.max_length
    texts = list(bench.task.splits.search)  # type: ignore[attr-defined]
    dense = naive_embed(bench.loaded.model, tok, texts, bs, ml)
    numels = [layer.numel for layer in bench.layers]
    names = [layer.name for layer in bench.layers]
    lo, hi = [0.0] * len(numels), [args.max] * len(numels)

    def objective(trial: optuna.Trial) -> float:
        proposal = [trial.suggest_float(n, 0.0, args.max, step=0.05) for n in names]
        sparsities = project_sparsities(proposal, numels, args.sparsity, lo, hi)
        trial.set_user_attr("sparsities", sparsities)
        model = naive_prune(bench, sparsities)
        return float((naive_embed(model, tok, texts, bs, ml) * dense).sum(-1).mean())

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    start = time.perf_counter()
    study.optimize(objective, n_trials=args.budget)
    wall = time.perf_counter() - start
    best = study.best_trial
    report = bench.task.score(naive_prune(bench, best.user_attrs["sparsities"]), "report")
    return {
        "side": "naive", "seed": seed, "evaluations": len(study.trials), "wall_seconds": wall,
        "seconds_per_evaluation": wall / len(study.trials),
        "search_fidelity": best.value, "report_fidelity": report["fidelity"],
        "one_minus_fidelity": 1.0 - report["fidelity"], "retrieval_at_1": report.get("retrieval_at_1"),
        "allocation": dict(zip(names, best.user_attrs["sparsities"], strict=True)),
    }


def run_prunetune(args: argparse.Namespace, bench: Workbench, strategy: str, seed: int, db: str) -> dict[str, Any]:
    spec = make_spec(args, strategy, seed)
    last = [0.0]

    def progress(done: int, total: int, r: Any) -> None:
        last[0] = time.perf_counter()

    # Timed like the naive loop: from the start to the last finished trial (the search),
    # not the REPORT re-scoring of the front that run_job does afterwards.
    start = time.perf_counter()
    out = run_job(spec, db=db, bench=bench, on_progress=progress)
    wall = last[0] - start
    done = [r for r in out.results if r.ok]
    best = out.front[0]
    report = out.reports[best.number]
    return {
        "side": strategy, "seed": seed, "evaluations": len(out.results), "wall_seconds": wall,
        "seconds_per_evaluation": wall / len(out.results), "job_seconds": time.perf_counter() - start,
        "eval_seconds_median": sorted(r.metrics.get("eval_seconds", 0.0) for r in done)[len(done) // 2] if done else None,
        "search_fidelity": best.quality, "report_fidelity": report["fidelity"],
        "one_minus_fidelity": 1.0 - report["fidelity"], "retrieval_at_1": report.get("retrieval_at_1"),
        "allocation": dict(zip(bench.space.names, best.candidate.sparsities, strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sparsity", type=float, default=0.7)
    p.add_argument("--budget", type=int, default=64, help="evaluations per side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategies", default="bayesian", help="prunetune strategies, comma-separated")
    p.add_argument("--calibration", type=int, default=256)
    p.add_argument("--search", type=int, default=128)
    p.add_argument("--report", type=int, default=512)
    p.add_argument("--max", type=float, default=0.95, help="per-layer sparsity cap (both sides)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "naive_optuna.json")
    args = p.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]

    bench = build_workbench(make_spec(args, strategies[0] if strategies else "bayesian", args.seed))
    rows = [run_naive(args, bench, args.seed)]
    print(f"naive            {rows[-1]['seconds_per_evaluation']:.3f} s/eval  1-fid {rows[-1]['one_minus_fidelity']:.4f}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for s in strategies:
            rows.append(run_prunetune(args, bench, s, args.seed, f"sqlite:///{tmp}/{s}.db"))
            print(f"{s:16s} {rows[-1]['seconds_per_evaluation']:.3f} s/eval  1-fid {rows[-1]['one_minus_fidelity']:.4f}",
                  flush=True)
    result = {
        "benchmark": "naive_optuna", "args": vars(args),
        "provenance": provenance(vars(args), bench=bench, seeds=[args.seed]),
        "dense": bench.task.dense_reference(), "runs": rows,
        "ratios": {r["side"]: {"seconds_per_evaluation_naive_over": rows[0]["seconds_per_evaluation"] / r["seconds_per_evaluation"]}
                   for r in rows[1:]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print("RESULT " + " ".join(
        f"{r['side'].replace('-', '_')}_s_per_eval={r['seconds_per_evaluation']:.3f} "
        f"{r['side'].replace('-', '_')}_one_minus_fidelity={r['one_minus_fidelity']:.4f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
