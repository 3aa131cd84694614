"""The GPU benchmark's smoke path (``benchmarks/gpu/gpu_bench.py``) where a CUDA device is:
the real MiniLM on one Ray actor holding the GPU evaluates a few candidates there.
Skipped on machines without CUDA (``pytest -m gpu`` selects it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_minilm_evaluates_on_one_gpu_actor(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
    import gpu_bench

    from prunetune.engine.workbench import build_workbench
    from prunetune.workers.ray_session import start_ray

    args = argparse.Namespace(evals=3, dtype="bf16", llama_layers=1, out=tmp_path / "gpu.json")
    session = start_ray(None, num_cpus=2, job_dir=str(tmp_path))
    try:
        bench = build_workbench(gpu_bench.make_spec({"source": "minilm"}, args, search=32))
        (row,) = gpu_bench.run_model("minilm", bench, args, f"sqlite:///{tmp_path / 'gpu.db'}", actors=(1,))
    finally:
        session.close()
    assert row["devices"] and all(d.startswith("cuda") for d in row["devices"])
    assert row["evals_per_minute"] > 0 and row["eval_seconds_median"] > 0
    assert row["peak_gpu_gib_per_actor"] > 0  # the actor's model and batches lived on the GPU
