"""Cost of one evaluation (no recovery) against the floor: a dense forward pass.

On the real all-MiniLM-L6-v2 and the search split (length-sorted, tokenised once), each
round times, side by side:

- ``forward``: one dense forward pass over the search batches (the floor);
- ``evaluation``: ``Evaluator.evaluate`` of a random per-layer allocation (masks by top-k
  over cached Wanda scores, in place; score; size and FLOPs metrics; restore);
- ``naive``: ``copy.deepcopy`` of the model, ``torch.nn.utils.prune.l1_unstructured`` on
  every prunable layer at the same allocation, forward over the same batches;
- ``reconstructed``: ``Evaluator.evaluate`` of the same allocation on a workbench with
  ``space.reconstruction: sparsegpt`` (each layer's weights assembled from the level
  database; built once, or read from the cache);
- ``reconstructed_forward``: the forward pass of that workbench's own model.

The first round warms up and is dropped; ratios are medians of per-round ratios.
Writes ``benchmarks/results/eval_cost.json``; the last line printed is::

    RESULT eval_over_forward=<ratio> naive_over_forward=<ratio> recon_over_forward=<ratio> recon_over_own_forward=<ratio>

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/eval_cost.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import provenance  # benchmarks/_common.py (the script's folder is on sys.path)
from torch.nn.utils import prune

from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.spec import SearchSpec

ROOT = Path(__file__).resolve().parents[1]


def dense_forward(bench: Workbench) -> None:
    with torch.inference_mode():
        for b in bench.task.split_batches("search"):  # type: ignore[attr-defined]
            bench.task.forward(bench.loaded.model, b)


def naive(bench: Workbench, sparsities: list[float]) -> None:
    model = copy.deepcopy(bench.loaded.model)
    modules = dict(model.named_modules())
    for layer, s in zip(bench.layers, sparsities, strict=True):
        prune.l1_unstructured(modules[layer.name], "weight", amount=s)
    with torch.inference_mode():
        for b in bench.task.split_batches("search"):  # type: ignore[attr-defined]
            bench.task.forward(model, b)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def kept(metrics: dict[str, float], prefix: str, bench: Workbench, s: list[float]) -> None:
    """Evaluate ``s`` on ``bench`` and keep its fidelity in ``metrics`` (as ``<prefix>fidelity``)."""
    metrics[f"{prefix}fidelity"] = bench.evaluator.evaluate(s)["fidelity"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--search", type=int, default=256, help="search-split chunks")
    ap.add_argument("--rounds", type=int, default=6, help="timed rounds (plus one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = SearchSpec.from_dict({
        "name": "bench-eval-cost", "model": {"source": "minilm"},
        "task": {"kind": "embedding", "calibration": 64, "search": args.search, "report": 32, "batch_size": 32},
        "space": {"criterion": "wanda", "max": 0.9, "step": 0.05}, "seed": 0,
    })
    bench = build_workbench(spec)
    recon_spec = SearchSpec.from_dict({**spec.to_dict(), "space": {**spec.to_dict()["space"], "reconstruction": "sparsegpt"}})
    recon = build_workbench(recon_spec)
    rng = np.random.default_rng(0)
    rows = []
    for r in range(args.rounds + 1):
        s = [float(v) for v in bench.space.project(rng.uniform(0.3, 0.9, bench.space.dim), target=0.7)]
        metrics: dict[str, float] = {}
        runs: dict[str, Callable[[], object]] = {
            "forward": lambda: dense_forward(bench),
            "evaluation": partial(kept, metrics, "", bench, s),
            "naive": partial(naive, bench, s),
            "reconstructed": partial(kept, metrics, "recon_", recon, s),
            "reconstructed_forward": lambda: dense_forward(recon),
        }
        names = list(runs)
        names = names[r % 5 :] + names[: r % 5]  # rotate the order: no variant always runs first
        t = {name: timed(runs[name]) for name in names}
        t_fwd, t_eval, t_naive, t_recon = t["forward"], t["evaluation"], t["naive"], t["reconstructed"]
        row = {"round": r, "forward_s": t_fwd, "evaluation_s": t_eval, "naive_s": t_naive,
               "reconstructed_s": t_recon, "reconstructed_forward_s": t["reconstructed_forward"],
               "fidelity": metrics["fidelity"], "reconstructed_fidelity": metrics["recon_fidelity"]}
        print(f"round {r}: forward {t_fwd:.3f}s  evaluation {t_eval:.3f}s  naive {t_naive:.3f}s  "
              f"reconstructed {t_recon:.3f}s" + ("  (warm-up, dropped)" if r == 0 else ""), flush=True)
        rows.append(row)
    timed_rows = rows[1:]
    eval_ratio = statistics.median(x["evaluation_s"] / x["forward_s"] for x in timed_rows)
    naive_ratio = statistics.median(x["naive_s"] / x["forward_s"] for x in timed_rows)
    recon_ratio = statistics.median(x["reconstructed_s"] / x["forward_s"] for x in timed_rows)
    # The same pass on the reconstructed model itself (its last candidate live): the floor
    # of its evaluations, apart from the model it runs.
    recon_own = statistics.median(x["reconstructed_s"] / x["reconstructed_forward_s"] for x in timed_rows)
    # Where the overhead goes, measured apart from the pass.
    s = [0.7] * bench.space.dim
    apply_s = statistics.median(timed(lambda: bench.pruner.apply(s)) for _ in range(5))
    size_s = statistics.median(timed(bench.evaluator.size.measure) for _ in range(5))

    def restore_after_apply() -> float:
        bench.pruner.apply(s)
        return timed(bench.pruner.restore)

    restore_s = statistics.median(restore_after_apply() for _ in range(5))
    bench.pruner.restore()
    # Assembling a reconstructed candidate from scratch (every layer moved) and restoring it.
    recon_apply_s = statistics.median(timed(lambda: (recon.pruner.restore(), recon.pruner.apply(s))) for _ in range(5))
    recon.pruner.restore()
    assert recon.levels is not None
    out = {
        "benchmark": "eval_cost",
        "provenance": provenance(vars(args), bench=bench, seeds=[0]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()}, torch threads {args.threads}",
        "torch": torch.__version__,
        "model": bench.loaded.name, "search_chunks": args.search, "batches": len(bench.task.split_batches("search")),  # type: ignore[attr-defined]
        "rounds": rows,
        "median_forward_s": statistics.median(x["forward_s"] for x in timed_rows),
        "median_evaluation_s": statistics.median(x["evaluation_s"] for x in timed_rows),
        "median_naive_s": statistics.median(x["naive_s"] for x in timed_rows),
        "eval_over_forward": eval_ratio, "naive_over_forward": naive_ratio,
        "apply_s": apply_s, "restore_s": restore_s, "size_metrics_s": size_s,
        "median_reconstructed_s": statistics.median(x["reconstructed_s"] for x in timed_rows),
        "recon_over_forward": recon_ratio, "recon_over_own_forward": recon_own,
        "median_reconstructed_forward_s": statistics.median(x["reconstructed_forward_s"] for x in timed_rows),
        "recon_apply_restore_s": recon_apply_s,
        "levels_nbytes": recon.levels.nbytes, "levels_build_s": recon.levels.build_seconds,
    }
    path = ROOT / "benchmarks" / "results" / "eval_cost.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"medians over {len(timed_rows)} rounds: forward {out['median_forward_s']:.3f}s, "
          f"evaluation {out['median_evaluation_s']:.3f}s, naive {out['median_naive_s']:.3f}s; "
          f"apply {apply_s * 1e3:.1f} ms, restore {restore_s * 1e3:.1f} ms, size metrics {size_s * 1e3:.1f} ms")
    print(f"reconstructed: evaluation {out['median_reconstructed_s']:.3f}s, full assembly and restore "
          f"{recon_apply_s * 1e3:.1f} ms, level database {recon.levels.nbytes / 1e6:.1f} MB")
    print(f"RESULT eval_over_forward={eval_ratio:.3f} naive_over_forward={naive_ratio:.3f} "
          f"recon_over_forward={recon_ratio:.3f} recon_over_own_forward={recon_own:.3f}")


if __name__ == "__main__":
    main()
