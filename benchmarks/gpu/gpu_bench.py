"""GPU throughput of the Ray workers (run through ``benchmarks/gpu/run.sh``).

For each model (the real MiniLM; a Llama built from config with random weights and
MiniLM's tokenizer, ~270 M parameters) the workbench (scores, dense references) is
built once in this process on the CPU, then the real controller loop runs
``--evals`` evaluations per actor on 1 actor holding the whole GPU and on 2 actors
sharing it (0.5 GPU each), in bf16. Reported per run: evaluations per minute, median
seconds per evaluation, peak GPU memory torch allocated per actor, mean GPU utilisation
(``nvidia-smi`` sampled every 0.5 s while the clock runs). A third run puts the Llama
on reconstruction (``space.reconstruction: sparsegpt``, grid step 0.1): the level
database is built with the solves on the GPU, then one actor assembles candidates from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import measure  # noqa: E402

from prunetune.engine.sources import minilm_path  # noqa: E402
from prunetune.engine.workbench import Workbench, build_workbench  # noqa: E402
from prunetune.spec import SearchSpec  # noqa: E402
from prunetune.workers.ray_pool import RayExecutor  # noqa: E402
from prunetune.workers.ray_session import start_ray  # noqa: E402

GIB = 2**30


def build_llama(folder: Path, layers: int) -> Path:
    """A LlamaModel with random weights, saved with MiniLM's tokenizer (its vocabulary
    sizes the embedding), so the embedding task can run it from a local directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=1024, intermediate_size=4096,
        num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=4,
        max_position_embeddings=512, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def make_spec(model: dict[str, Any], args: argparse.Namespace, search: int,
              reconstruction: str | None = None) -> SearchSpec:
    return SearchSpec.from_dict({
        "name": "bench-gpu",
        "model": model,
        "task": {"kind": "embedding", "data": "pydoc", "calibration": 32, "search": search,
                 "report": 16, "batch_size": 32, "max_length": 128},
        "space": {"criterion": "wanda", "max": 0.9, "step": 0.1 if reconstruction else 0.05,
                  "reconstruction": reconstruction},
        "budget": {"trials": args.evals},
        "strategy": {"name": "random"},
        "resources": {"workers": 1, "gpus_per_worker": 1.0, "cpus_per_worker": 2, "dtype": args.dtype},
        "seed": 0,
    })


class GpuSampler:
    """Mean GPU utilisation (%) from ``nvidia-smi`` every 0.5 s while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))
            self._stop.wait(0.5)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return statistics.mean(self.samples) if self.samples else float("nan")


def run_model(label: str, bench: Workbench, args: argparse.Namespace, db: str,
              actors: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    rows = []
    for workers in actors:
        res = bench.spec.resources.model_copy(update={"workers": workers, "gpus_per_worker": 1.0 / workers})
        bench.spec = bench.spec.model_copy(update={"resources": res})
        with RayExecutor(bench, workers=workers) as executor:
            ready = executor.wait_ready()
            with GpuSampler() as gpu:
                out = measure(bench, executor, args.evals * workers, db, f"{label}-{workers}")
            mem = executor.memory()
        row = {
            "model": label,
            "params": sum(p.numel() for p in bench.loaded.model.parameters()),
            "prunable_params": bench.space.prunable_params,
            "actors": workers,
            "dtype": args.dtype,
            "evals_per_minute": out["evals_per_minute"],
            "eval_seconds_median": out["eval_seconds_median"],
            "peak_gpu_gib_per_actor": max(m.get("cuda_max_allocated_bytes", 0.0) for m in mem) / GIB,
            "peak_rss_gib_per_actor": max(m["peak_rss_bytes"] for m in mem) / GIB,
            "gpu_utilisation_mean": gpu.mean,
            "actor_build_seconds": max(d["build_seconds"] for d in ready),
            "devices": sorted({d["device"] for d in ready}),
        }
        rows.append(row)
        print(f"{label:>8} x{workers} actor(s): {row['evals_per_minute']:7.1f} evals/min, "
              f"{row['eval_seconds_median']:.3f} s/eval, peak GPU {row['peak_gpu_gib_per_actor']:.2f} GiB/actor, "
              f"GPU util {row['gpu_utilisation_mean']:.0f}%", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--evals", type=int, default=12, help="evaluations per actor per run")
    p.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--llama-layers", type=int, default=16)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pt-gpu-") as tmp:
        db = f"sqlite:///{tmp}/gpu.db"
        session = start_ray(None, num_cpus=4, job_dir=tmp)
        try:
            t = time.perf_counter()
            bench = build_workbench(make_spec({"source": "minilm"}, args, search=256))
            timings["minilm_workbench_seconds"] = time.perf_counter() - t
            rows += run_model("minilm", bench, args, db)
            del bench
            t = time.perf_counter()
            llama = build_llama(Path(tmp) / "llama", args.llama_layers)
            bench = build_workbench(make_spec({"path": str(llama)}, args, search=128))
            timings["llama_workbench_seconds"] = time.perf_counter() - t
            rows += run_model("llama", bench, args, db)
            del bench
            # Reconstruction: the level database built on the GPU (grid step 0.1), one actor.
            t = time.perf_counter()
            bench = build_workbench(make_spec({"path": str(llama)}, args, search=128, reconstruction="sparsegpt"))
            timings["llama_recon_workbench_seconds"] = time.perf_counter() - t
            timings["llama_levels_seconds"] = bench.timings.get("levels", 0.0)
            timings["llama_levels_bytes"] = float(bench.levels.nbytes) if bench.levels is not None else 0.0
            rows += run_model("llama-recon", bench, args, db, actors=(1,))
        finally:
            session.close()
    gpu_name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, check=False).stdout.strip()
    result = {
        "benchmark": "gpu",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.node()} {gpu_name}",
        "settings": vars(args) | {"out": str(args.out)},
        "timings": timings,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print("| model | params | actors | dtype | evals/min | s/eval | peak GPU GiB/actor | GPU util % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e6:.0f} M | {r['actors']} | {r['dtype']} | "
              f"{r['evals_per_minute']:.1f} | {r['eval_seconds_median']:.3f} | "
              f"{r['peak_gpu_gib_per_actor']:.2f} | {r['gpu_utilisation_mean']:.0f} |")
    models = ("minilm", "llama", "llama-recon")
    best = {m: max(r["evals_per_minute"] for r in rows if r["model"] == m) for m in models}
    peak = {m: max(r["peak_gpu_gib_per_actor"] for r in rows if r["model"] == m) for m in models}
    print(f"wrote {args.out}")
    print(f"RESULT minilm_evals_per_min={best['minilm']:.1f} llama_evals_per_min={best['llama']:.1f} "
          f"minilm_peak_gpu_gib={peak['minilm']:.2f} llama_peak_gpu_gib={peak['llama']:.2f} "
          f"recon_evals_per_min={best['llama-recon']:.1f} recon_peak_gpu_gib={peak['llama-recon']:.2f} "
          f"levels_build_s={timings['llama_levels_seconds']:.1f} levels_gib={timings['llama_levels_bytes'] / GIB:.2f}")


if __name__ == "__main__":
    main()
