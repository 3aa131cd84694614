"""Structured export of MiniLM: is it really smaller and faster?

On the real all-MiniLM-L6-v2, 30% of the attention heads and MLP neurons of every block
are removed (Taylor scores from the embedding task's contrastive loss on the calibration
split; 30% of 12 heads rounds to 4), the model is exported with ``prunetune.export`` and
loaded back with ``prunetune.load_pruned``. A third model is the same pruned one exported
with its vocabulary trimmed to the bundled pydoc corpus (every chunk of it, a superset of
the task's three splits): ``prunetune.export(..., tokenizer=, vocabulary=corpus)`` keeps
only the embedding rows of the tokens that corpus uses, and it is read through the
trimmed tokenizer saved with it. Head and neuron pruning cannot shrink the word embeddings
(half of MiniLM's parameters); the third row shows what trimming them adds. Measured,
side by side for dense, pruned and pruned+trimmed:

- parameters on disk: the whole model (embeddings stay dense) and the encoder blocks
  (what structured pruning can shrink), and the safetensors file sizes;
- CPU forward time of the three models over the same report texts (the trimmed model's
  batches tokenised by its own tokenizer), in rotating order round by round; the ratio is
  the median of per-round ratios (the first round warms up and is dropped);
- embedding fidelity (mean cosine to the dense model) on the report split, and the
  largest output difference between the masked model and each export (the trimmed one
  on its own tokenizer's batches, which must be the original batches with ids remapped).

Writes ``benchmarks/results/structured_export.json``; the last line printed is::

    RESULT params_ratio=<pruned/dense> encoder_params_ratio=<...> file_ratio=<...> speedup=<dense/pruned>
           fidelity=<...> max_abs_diff=<...> trimmed_file_ratio=<...> trimmed_params_ratio=<...>
           trimmed_speedup=<...> trimmed_fidelity=<...>   (one line)

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
import torch.nn.functional as F
from _common import provenance  # benchmarks/_common.py (the script's folder is on sys.path)
from safetensors import safe_open
from transformers import AutoTokenizer

import prunetune
from prunetune.engine.sources import load_model
from prunetune.evaluators.data import text_chunks
from prunetune.evaluators.registry import build_task
from prunetune.evaluators.tasks import text_batches
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


def pooled(model: torch.nn.Module, task: Any, batches: list[Any]) -> torch.Tensor:
    """Mean-pooled, L2-normalised embeddings of every row, in batch order."""
    out = []
    with torch.inference_mode():
        for b in batches:
            hidden = task.forward(model, b).float()
            m = b["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1))
    return torch.cat(out)


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
    task_spec = TaskSpec.model_validate({"kind": "embedding", "calibration": 64, "search": 32, "report": args.report})
    task = build_task(loaded, task_spec)
    task.prepare(model)
    prov = provenance(vars(args), loaded=loaded, task=task, seeds=[0])  # before pruning: the dense fingerprint
    calibration = Calibration(task.calibration_batches(), task.forward, task.loss, task.token_mask)
    report = prunetune.prune(model, args.fraction, criterion="taylor", granularity="heads+neurons",
                             calibration=calibration)
    fidelity_masked = task.score(model, "report")["fidelity"]

    corpus = text_chunks(task_spec.data, "embedding")  # the whole corpus the splits are cut from
    with tempfile.TemporaryDirectory() as tmp:
        dense_dir, pruned_dir, trimmed_dir = Path(tmp) / "dense", Path(tmp) / "pruned", Path(tmp) / "trimmed"
        dense.save_pretrained(dense_dir)  # type: ignore[operator]
        prunetune.export(model, pruned_dir)
        prunetune.export(model, trimmed_dir, tokenizer=loaded.tokenizer, vocabulary=corpus)
        pruned, trimmed = prunetune.load_pruned(pruned_dir), prunetune.load_pruned(trimmed_dir)
        trimmed_tok = AutoTokenizer.from_pretrained(str(trimmed_dir), local_files_only=True)
        vocab = json.loads((trimmed_dir / "prunetune.json").read_text())["vocabulary"]
        dense_file, pruned_file = dense_dir / "model.safetensors", pruned_dir / "pruned.safetensors"
        trimmed_file = trimmed_dir / "pruned.safetensors"
        dense_counts, pruned_counts = file_params(dense_file), file_params(pruned_file)
        trimmed_counts = file_params(trimmed_file)
        sizes = {"dense_bytes": dense_file.stat().st_size, "pruned_bytes": pruned_file.stat().st_size}
        trimmed_bytes = trimmed_file.stat().st_size
        tokenizer_bytes = {"original": (Path(loaded.tokenizer.name_or_path) / "tokenizer.json").stat().st_size,
                           "trimmed": (trimmed_dir / "tokenizer.json").stat().st_size}

    batches = task.split_batches("report")  # type: ignore[attr-defined]
    # The same report texts through the trimmed tokenizer: the same batches, ids remapped.
    trimmed_batches = text_batches(trimmed_tok, task.splits.report, task_spec.batch_size,  # type: ignore[attr-defined]
                                   task_spec.max_length)
    new_id = torch.full((vocab["original_size"],), -1, dtype=torch.long)
    new_id[torch.tensor(vocab["kept_ids"])] = torch.arange(vocab["kept_count"])
    same_ids = all(torch.equal(new_id[a["input_ids"]], b["input_ids"]) for a, b in zip(batches, trimmed_batches, strict=True))
    with torch.inference_mode():
        diff = max(float((task.forward(pruned, b) - task.forward(model, b)).abs().max()) for b in batches)
        trimmed_diff = max(float((task.forward(trimmed, t) - task.forward(model, b)).abs().max())
                           for b, t in zip(batches, trimmed_batches, strict=True))
        exports_diff = max(float((task.forward(trimmed, t) - task.forward(pruned, b)).abs().max())
                           for b, t in zip(batches, trimmed_batches, strict=True))
    fidelity_export = task.score(pruned, "report")["fidelity"]
    dense_emb = pooled(dense, task, batches)
    fidelity_pruned_direct = float((pooled(pruned, task, batches) * dense_emb).sum(-1).mean())
    fidelity_trimmed = float((pooled(trimmed, task, trimmed_batches) * dense_emb).sum(-1).mean())

    def encoder(counts: dict[str, int]) -> int:
        return sum(v for k, v in counts.items() if ".layer." in k)

    rounds = []
    models = [("dense", dense, batches), ("pruned", pruned, batches), ("trimmed", trimmed, trimmed_batches)]
    for r in range(args.rounds + 1):
        order = models[r % 3:] + models[: r % 3]  # each model first, second and third in turn
        times = {name: timed_forward(m, task, bs) for name, m, bs in order}
        if r:  # round 0 warms up
            rounds.append(times)
    speedups = [t["dense"] / t["pruned"] for t in rounds]
    trimmed_speedups = [t["dense"] / t["trimmed"] for t in rounds]
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
                            "trimmed_median": statistics.median(t["trimmed"] for t in rounds),
                            "rounds": rounds},
        "speedup_median": statistics.median(speedups),
        "speedup_min": min(speedups),
        "speedup_max": max(speedups),
        "fidelity_masked": fidelity_masked,
        "fidelity_export": fidelity_export,
        "max_abs_diff_masked_vs_export": diff,
        "vocabulary_trim": {
            "corpus": f"{task_spec.data}: all {len(corpus)} chunks (calibration, search and report splits included)",
            "original_tokens": vocab["original_size"],
            "kept_tokens": vocab["kept_count"],
            "kept_ids_sha256": vocab["kept_ids_sha256"],
            "tokenizer_json_bytes": tokenizer_bytes,
            "report_batches_equal_after_id_remap": same_ids,
        },
        "trimmed_params": sum(trimmed_counts.values()),
        "trimmed_params_ratio": sum(trimmed_counts.values()) / sum(dense_counts.values()),
        "trimmed_encoder_params": encoder(trimmed_counts),
        "trimmed_bytes": trimmed_bytes,
        "trimmed_file_ratio": trimmed_bytes / sizes["dense_bytes"],
        "trimmed_speedup_median": statistics.median(trimmed_speedups),
        "trimmed_speedup_min": min(trimmed_speedups),
        "trimmed_speedup_max": max(trimmed_speedups),
        "fidelity_trimmed": fidelity_trimmed,
        "fidelity_pruned_same_pooling": fidelity_pruned_direct,
        "max_abs_diff_masked_vs_trimmed": trimmed_diff,
        "max_abs_diff_export_vs_trimmed_export": exports_diff,
        "rows": [
            {"model": "dense", "params": sum(dense_counts.values()), "bytes": sizes["dense_bytes"],
             "forward_seconds_median": statistics.median(t["dense"] for t in rounds), "fidelity": 1.0},
            {"model": f"heads+neurons {args.fraction:.0%}", "params": sum(pruned_counts.values()),
             "bytes": sizes["pruned_bytes"], "forward_seconds_median": statistics.median(t["pruned"] for t in rounds),
             "fidelity": fidelity_export},
            {"model": f"heads+neurons {args.fraction:.0%} + vocabulary trimmed to {task_spec.data}",
             "params": sum(trimmed_counts.values()), "bytes": trimmed_bytes,
             "forward_seconds_median": statistics.median(t["trimmed"] for t in rounds), "fidelity": fidelity_trimmed},
        ],
        "report_chunks": args.report,
        "per_unit": report.rows(),
    }
    name = "structured_export.json" if args.model_path is None else "structured_export-smoke.json"
    out = ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_unit", "forward_seconds", "rows")}, indent=2))
    print(
        f"RESULT params_ratio={result['params_ratio']:.4f} encoder_params_ratio={result['encoder_params_ratio']:.4f} "
        f"file_ratio={result['file_ratio']:.4f} speedup={result['speedup_median']:.3f} "
        f"fidelity={fidelity_export:.4f} max_abs_diff={diff:.2e} "
        f"trimmed_file_ratio={result['trimmed_file_ratio']:.4f} trimmed_params_ratio={result['trimmed_params_ratio']:.4f} "
        f"trimmed_speedup={result['trimmed_speedup_median']:.3f} trimmed_fidelity={fidelity_trimmed:.4f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
