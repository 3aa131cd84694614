"""Export one trial of a job: rebuild the job's model, apply the trial's allocation,
write the pruned model.

Uses ``prunetune.pruning.export.export`` when that module exists (issue 10, loadable
with ``prunetune.load_pruned``); until then writes ``model.safetensors`` (the masked
weights, zeros in place) and ``prunetune.json`` (job, trial, allocation, spec).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from prunetune.spec import SearchSpec


def _bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_masked_safetensors(model: Any, out: Path, meta: dict[str, Any]) -> None:
    """Fallback writer: the masked model's weights as safetensors and a JSON manifest."""
    from safetensors.torch import save_model

    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    (out / "prunetune.json").write_text(json.dumps(meta, indent=2, default=str))


def export_trial(spec: SearchSpec, allocation: dict[str, float], out: str | Path,
                 meta: dict[str, Any]) -> dict[str, Any]:
    """Write the model of ``spec`` pruned by ``allocation`` (layer -> sparsity) to ``out``.

    Returns ``{"path", "nbytes", "format"}``.
    """
    from prunetune.workbench import build_workbench

    out = Path(out).expanduser().resolve()
    bench = build_workbench(spec)
    missing = [n for n in bench.space.names if n not in allocation]
    if missing:
        raise ValueError(f"allocation lacks layers {missing[:3]}; the job's model has {len(bench.space.names)} layers")
    sparsities = [float(allocation[n]) for n in bench.space.names]
    meta = {**meta, "allocation": dict(zip(bench.space.names, sparsities, strict=True)),
            "spec": spec.to_dict(), "model": bench.loaded.name}
    try:
        module = importlib.import_module("prunetune.pruning.export")
    except ModuleNotFoundError:
        module = None
    with bench.pruner.applied(sparsities):
        if module is not None and hasattr(module, "export"):
            module.export(bench.loaded.model, out)
            (out / "prunetune-job.json").write_text(json.dumps(meta, indent=2, default=str))
            fmt = "prunetune.export"
        else:
            write_masked_safetensors(bench.loaded.model, out, meta)
            fmt = "safetensors-masked"
    return {"path": str(out), "nbytes": _bytes_under(out), "format": fmt}
