"""Recovery with distillation on a 70%-sparse uniform-Wanda MiniLM: REPORT-split fidelity
before and after about 100 steps of fine-tuning toward the dense model's embeddings.

Recovery trains on the calibration split (disjoint from search and report), AdamW,
embedding-cosine distillation, pruned weights held at zero. Writes
``benchmarks/results/recovery.json``; the last line printed is::

    RESULT fidelity_before=<report fidelity> fidelity_after=<report fidelity>

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/recovery.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _common import provenance  # benchmarks/_common.py (the script's folder is on sys.path)

from prunetune.engine.workbench import build_workbench
from prunetune.spec import SearchSpec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sparsity", type=float, default=0.7)
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--report", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = SearchSpec.from_dict({
        "name": "bench-recovery", "model": {"source": "minilm"},
        "task": {"kind": "embedding", "calibration": args.calibration, "search": 256, "report": args.report,
                 "batch_size": 32},
        "space": {"criterion": "wanda", "max": 0.95},
        "recovery": {"steps": args.steps, "distill": True, "lr": args.lr, "batch_size": args.batch},
        "seed": 0,
    })
    bench = build_workbench(spec)
    s = [args.sparsity] * bench.space.dim
    with bench.pruner.applied(s):
        before = bench.task.score(bench.loaded.model, "report")
        before_search = bench.task.score(bench.loaded.model, "search")
    start = time.perf_counter()
    after = bench.evaluator.evaluate(s, split="report")
    seconds = time.perf_counter() - start
    after_search = bench.evaluator.evaluate(s, split="search")
    out = {
        "benchmark": "recovery",
        "provenance": provenance(vars(args), bench=bench, seeds=[0]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()}, torch threads {args.threads}",
        "model": bench.loaded.name, "allocation": f"uniform {args.sparsity} (Wanda, per-row)",
        "recovery": spec.recovery.model_dump(), "calibration_chunks": args.calibration, "report_chunks": args.report,
        "report_before": before, "report_after": {k: v for k, v in after.items()},
        "search_before": before_search["fidelity"], "search_after": after_search["fidelity"],
        "evaluation_with_recovery_s": seconds,
    }
    path = ROOT / "benchmarks" / "results" / "recovery.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"report fidelity {before['fidelity']:.4f} -> {after['fidelity']:.4f}; retrieval@1 "
          f"{before['retrieval_at_1']:.3f} -> {after['retrieval_at_1']:.3f}; search {before_search['fidelity']:.4f} -> "
          f"{after_search['fidelity']:.4f}; recovery loss {after['recovery_loss_first']:.4f} -> "
          f"{after['recovery_loss_last']:.4f} in {after['recovery_seconds']:.1f}s")
    print(f"RESULT fidelity_before={before['fidelity']:.4f} fidelity_after={after['fidelity']:.4f}")


if __name__ == "__main__":
    main()
