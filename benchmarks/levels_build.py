"""Build time and size of MiniLM's level database (``space.reconstruction: sparsegpt``).

Builds the database the search-quality benchmark uses (all-MiniLM-L6-v2, 256 calibration
chunks of pydoc text, grid 0 to 0.95 by 0.05) from scratch in a fresh cache folder:
the calibration pass with input Hessians, then every layer solved at every level.
Writes ``benchmarks/results/levels_build.json``; the last line printed is::

    RESULT build_seconds=<s> megabytes=<MB> levels=<n>

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/levels_build.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from _common import ROOT, provenance

from prunetune.engine.workbench import build_workbench
from prunetune.spec import SearchSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PRUNETUNE_CACHE"] = cache  # nothing cached: scores and levels built here
        spec = SearchSpec.from_dict({
            "name": "bench-levels", "model": {"source": "minilm"},
            "task": {"kind": "embedding", "data": "pydoc", "calibration": args.calibration, "search": 16,
                     "report": 16},
            "space": {"criterion": "wanda", "max": 0.95, "step": 0.05, "reconstruction": "sparsegpt"},
        })
        start = time.perf_counter()
        bench = build_workbench(spec)
        total = time.perf_counter() - start
        assert bench.levels is not None
        files = [f for f in os.listdir(cache) if f.startswith("levels-")]
        file_bytes = sum(os.path.getsize(os.path.join(cache, f)) for f in files)
        out = {
            "benchmark": "levels_build", "args": vars(args),
            "levels_seconds": bench.timings["levels"], "solve_seconds": bench.levels.build_seconds,
            "workbench_seconds": total, "nbytes": bench.levels.nbytes, "file_bytes": file_bytes,
            "layers": len(bench.levels.levels), "levels": sum(len(v) for v in bench.levels.levels.values()),
            "prunable_params": bench.space.prunable_params,
            "provenance": provenance(vars(args), bench=bench),
        }
    path = ROOT / "benchmarks" / "results" / "levels_build.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"calibration pass and solves {out['levels_seconds']:.1f} s (solves {out['solve_seconds']:.1f} s), "
          f"{out['nbytes'] / 1e6:.1f} MB in memory, {out['file_bytes'] / 1e6:.1f} MB on disk, "
          f"{out['levels']} levels over {out['layers']} layers")
    print(f"wrote {path}")
    print(f"RESULT build_seconds={out['levels_seconds']:.1f} megabytes={out['nbytes'] / 1e6:.1f} levels={out['levels']}")


if __name__ == "__main__":
    main()
