"""One-shot pruning of MiniLM at uniform sparsity: independent against sequential calibration.

``prunetune.prune`` on a fresh all-MiniLM-L6-v2 with the embedding task's calibration
split, at each sparsity, four ways: Wanda masks and SparseGPT reconstruction, each with
statistics from the dense model (independent, what a search uses) and block by block on
the outputs of the already-pruned blocks (``sequential=True``). Scored by embedding
fidelity on the search split and on REPORT. Writes ``benchmarks/results/oneshot.json``;
the last line printed is::

    RESULT wanda_0.7=<1-fid> wanda_sequential_0.7=<1-fid> sparsegpt_0.7=<1-fid> sparsegpt_sequential_0.7=<1-fid> ...

(REPORT-split ``1 - fidelity`` for every method and sparsity.)

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/oneshot.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from _common import ROOT, provenance

from prunetune.api import prune
from prunetune.engine.sources import load_model
from prunetune.engine.workbench import build_workbench
from prunetune.pruning.calibration import Calibration
from prunetune.spec import SearchSpec

METHODS: dict[str, dict[str, Any]] = {
    "wanda": {"criterion": "wanda"},
    "wanda_sequential": {"criterion": "wanda", "sequential": True},
    "sparsegpt": {"reconstruction": "sparsegpt"},
    "sparsegpt_sequential": {"reconstruction": "sparsegpt", "sequential": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsities", default="0.5,0.7")
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--search", type=int, default=128)
    ap.add_argument("--report", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = SearchSpec.from_dict({
        "name": "bench-oneshot", "model": {"source": "minilm"},
        "task": {"kind": "embedding", "data": "pydoc", "calibration": args.calibration, "search": args.search,
                 "report": args.report},
        "space": {"criterion": "wanda", "max": 0.95}, "seed": 0,
    })
    bench = build_workbench(spec)  # the task, its splits and the dense references
    task = bench.task
    cal = Calibration(list(task.calibration_batches()), forward=task.forward, token_mask=task.token_mask)
    rows: dict[str, dict[str, Any]] = {}
    for s in (float(x) for x in args.sparsities.split(",")):
        for name, kwargs in METHODS.items():
            model = load_model(spec.model).model
            start = time.perf_counter()
            prune(model, s, calibration=cal, **kwargs)
            seconds = time.perf_counter() - start
            search = task.score(model, "search")["fidelity"]
            report = task.score(model, "report")
            rows[f"{name}_{s}"] = {"method": name, "sparsity": s, "seconds": seconds,
                                   "search_one_minus_fidelity": 1 - search,
                                   "one_minus_fidelity": 1 - report["fidelity"],
                                   "retrieval_at_1": report.get("retrieval_at_1")}
            print(f"{name:22s} {s}: REPORT 1-fid {1 - report['fidelity']:.4f} (search {1 - search:.4f}) "
                  f"{seconds:.1f}s", flush=True)
    out = {"benchmark": "oneshot", "args": vars(args), "runs": rows,
           "provenance": provenance(vars(args), bench=bench)}
    path = ROOT / "benchmarks" / "results" / "oneshot.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {path}")
    print("RESULT " + " ".join(f"{k}={v['one_minus_fidelity']:.4f}" for k, v in rows.items()))


if __name__ == "__main__":
    main()
