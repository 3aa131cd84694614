"""Structured export of MiniLM: is it really smaller and faster?

On the real all-MiniLM-L6-v2, 30% of the attention heads and MLP neurons of every block
are removed (Taylor scores from the embedding task's contrastive loss on the calibration
split; 30% of 12 heads rounds to 4), the model is exported with ``prunetune.export`` and
loaded back with ``prunetune.load_pruned``. Measured:

- parameters on disk: the whole model (embeddings stay dense) and the encoder blocks
  (what structured pruning can shrink), and the safetensors file sizes;
- CPU forward time of the dense and the loaded pruned model over the same report batches,
  timed alternately round by round; the ratio is the median of per-round ratios (the
  first round warms up and is dropped);
- embedding fidelity (mean cosine to the dense model) on the report split, and the
  largest output difference between the masked and the exported model.

Writes ``benchmarks/results/structured_export.json``; the last line printed is::

    RESULT params_ratio=<pruned/dense> encoder_params_ratio=<...> file_ratio=<...> speedup=<dense/pruned> fidelity=<...>

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/structured_export.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from _common import provenance  # benchmarks/_common.py (the script's folder is on sys.path)
from safetensors import safe_open

import prunetune
from prunetune.evaluators.sources import load_model
from prunetune.evaluators.tasks import build_task
from prunetune.pruning.calibration import Calibration
from prunetune.spec import ModelSpec, TaskSpec

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep RESULT the last line


def file_params(path: Path) -> dict[str, int]:
    with safe_open(str(path), "pt") as f:
        return {k: math.prod(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def timed_forward(model: torch.nn.Module, task: Any, batches: list[Any]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            task.forward(model, b)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fraction", type=float, default=0.3, help="heads and neurons removed per block")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", type=int, default=256, help="report-split chunks")
    parser.add_argument("--model-path", default=None, help="a local HF encoder instead of MiniLM (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    source = ModelSpec(path=args.model_path) if args.model_path else ModelSpec(source="minilm")
    dense = load_model(source).model
    loaded = load_model(source)
    model = loaded.model
    task = build_task(loaded, TaskSpec.model_validate(
        {"kind": "embedding", "calibration": 64, "search": 32, "report": args.report}))
    task.prepare(model)
    prov = provenance(vars(args), loaded=loaded, task=task, seeds=[0])  # before pruning: the dense fingerprint
    calibration = Calibration(task.calibration_batches(), task.forward, task.loss, task.token_mask)
    report = prunetune.prune(model, args.fraction, criterion="taylor", granularity="heads+neurons",
                             calibration=calibration)
    fidelity_masked = task.score(model, "report")["fidelity"]

    with tempfile.TemporaryDirectory() as tmp:
        dense_dir, pruned_dir = Path(tmp) / "dense", Path(tmp) / "pruned"
        dense.save_pretrained(dense_dir)  # type: ignore[operator]
        prunetune.export(model, pruned_dir)
        pruned = prunetune.load_pruned(pruned_dir)
        dense_file, pruned_file = dense_dir / "model.safetensors", pruned_dir / "pruned.safetensors"
        dense_counts, pruned_counts = file_params(dense_file), file_params(pruned_file)
        sizes = {"dense_bytes": dense_file.stat().st_size, "pruned_bytes": pruned_file.stat().st_size}

    batches = task.split_batches("report")  # type: ignore[attr-defined]
    with torch.inference_mode():
        diff = max(float((task.forward(pruned, b) - task.forward(model, b)).abs().max()) for b in batches)
    fidelity_export = task.score(pruned, "report")["fidelity"]

    def encoder(counts: dict[str, int]) -> int:
        return sum(v for k, v in counts.items() if ".layer." in k)

    rounds = []
    for r in range(args.rounds + 1):
        order = [("dense", dense), ("pruned", pruned)] if r % 2 == 0 else [("pruned", pruned), ("dense", dense)]
        times = {name: timed_forward(m, task, batches) for name, m in order}
        if r:  # round 0 warms up
            rounds.append(times)
    speedups = [t["dense"] / t["pruned"] for t in rounds]
    heads = [r for r in report.layers if r.kind == "heads"]
    neurons = [r for r in report.layers if r.kind == "neurons"]
    result = {
        "benchmark": "structured_export",
        "provenance": prov,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": args.threads, "torch": torch.__version__},
        "model": args.model_path or "all-MiniLM-L6-v2",
        "fraction_requested": args.fraction,
        "heads_removed_fraction": statistics.mean(r.achieved for r in heads),
        "neurons_removed_fraction": statistics.mean(r.achieved for r in neurons),
        "dense_params": sum(dense_counts.values()),
        "pruned_params": sum(pruned_counts.values()),
        "params_ratio": sum(pruned_counts.values()) / sum(dense_counts.values()),
        "dense_encoder_params": encoder(dense_counts),
        "pruned_encoder_params": encoder(pruned_counts),
        "encoder_params_ratio": encoder(pruned_counts) / encoder(dense_counts),
        **sizes,
        "file_ratio": sizes["pruned_bytes"] / sizes["dense_bytes"],
        "forward_seconds": {"dense_median": statistics.median(t["dense"] for t in rounds),
                            "pruned_median": statistics.median(t["pruned"] for t in rounds),
                            "rounds": rounds},
        "speedup_median": statistics.median(speedups),
        "speedup_min": min(speedups),
        "speedup_max": max(speedups),
        "fidelity_masked": fidelity_masked,
        "fidelity_export": fidelity_export,
        "max_abs_diff_masked_vs_export": diff,
        "report_chunks": args.report,
        "per_unit": report.rows(),
    }
    name = "structured_export.json" if args.model_path is None else "structured_export-smoke.json"
    out = ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_unit", "forward_seconds")}, indent=2))
    print(
        f"RESULT params_ratio={result['params_ratio']:.4f} encoder_params_ratio={result['encoder_params_ratio']:.4f} "
        f"file_ratio={result['file_ratio']:.4f} speedup={result['speedup_median']:.3f} "
        f"fidelity={fidelity_export:.4f} max_abs_diff={diff:.2e}",
        flush=True,
    )


if __name__ == "__main__":
    main()
